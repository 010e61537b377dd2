"""The face hold at the REST edge (issue 24): exports and shares of limited-access cases
whose series cover a face (found from the pixels at ingest) are held, as
policies/masking/policy.toml [facial_features] says, until a reviewer decides the flag
or the case is reviewed to publication (defaced or refused there).

One call per governance route, after the cases' levels are known; the decision itself
is the domain's (archive.ingest.flags.face_holds).
"""

from __future__ import annotations

from archive.ingest.flags import face_holds
from archive.pixels import load_masking_policy
from plugins.rest import HttpError


def check_face_holds(services, catalogue, levels: dict[str, str], use: str) -> None:
    """Refuse (409) when any limited-access case in ``levels`` is held for ``use``."""
    rules = load_masking_policy(services.config.policies_dir).facial
    limited = {c: catalogue.get(c).study_uid for c, lv in levels.items() if lv != "publication"}
    held = face_holds(services.db(), limited, rules, use) if limited else []
    if held:
        raise HttpError(
            409,
            f"case(s) {', '.join(held)} hold a series that covers the patient's face (found "
            f"from the pixels); the policy holds their {use} at limited-access level.",
            "Have the case reviewed to publication (defaced), or a reviewer decide the "
            "facial-surface flag in the quarantine review, then try again.",
        )
