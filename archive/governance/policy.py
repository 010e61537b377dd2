"""The governance policy (policies/governance): loaded, validated, and fail-closed.

A policy that cannot be read, or whose undertaking template drops a clause the school
requires, raises GovernancePolicyError: nothing may leave the suite under a policy the
archive does not fully understand.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path
from string import Template

from archive.core.authorise import ActionPolicy, ActionPolicyError, load_action_policy
from archive.governance.errors import GovernancePolicyError
from archive.paths import POLICIES_DIR

POLICY_FILE = "governance.toml"


@dataclass(frozen=True)
class GovernancePolicy:
    """Everything the governance rules read from policy, with its version and hash."""

    version: str
    sha256: str
    school_name: str
    level_limited_access: str
    level_publication: str
    removal_purposes: tuple[str, ...]
    educational_purposes: frozenset[str]
    publication_purposes: frozenset[str]
    refused_removal_purposes: frozenset[str]
    removal_allowed_levels: dict[str, frozenset[str]]
    default_expiry_days: int
    max_expiry_days: int
    default_max_downloads: int
    max_downloads_limit: int
    recipient_kinds: tuple[str, ...]
    refused_recipient_kinds: frozenset[str]
    kind_labels: dict[str, str]
    share_purposes: tuple[str, ...]
    refused_share_purposes: frozenset[str]
    quorum: int
    levels_with_agreement: frozenset[str]
    levels_without_agreement: frozenset[str]
    undertaking_template: str
    undertaking_required_clauses: tuple[str, ...]
    export_terms_template: str
    transfer_recipient_kinds: frozenset[str]
    wipe_confirmations_required: int
    wipe_confirmation_valid_hours: int
    # Who may do what: policies/access/actions.toml (issue 21), the one place role names
    # live. The governance rules ask it by action (removal.approve, share.vote, ...).
    actions: ActionPolicy

    def holders(self, action: str) -> frozenset[str]:
        """The roles that may do `action`, as actions.toml says."""
        return self.actions.holders(action)

    @property
    def known_levels(self) -> frozenset[str]:
        return frozenset({self.level_limited_access, self.level_publication})


def _get(table: dict, key: str, kind: type, where: str):
    value = table.get(key)
    if kind is int and isinstance(value, bool):
        value = None
    if not isinstance(value, kind):
        raise GovernancePolicyError(
            f"{where}.{key} must be a {kind.__name__} in policies/governance/{POLICY_FILE}."
        )
    return value


def _strs(table: dict, key: str, where: str) -> tuple[str, ...]:
    value = _get(table, key, list, where)
    if not value or not all(isinstance(v, str) and v for v in value):
        raise GovernancePolicyError(
            f"{where}.{key} must be a non-empty list of names in policies/governance/{POLICY_FILE}."
        )
    return tuple(value)


def _positive(table: dict, key: str, where: str) -> int:
    value = _get(table, key, int, where)
    if value < 1:
        raise GovernancePolicyError(f"{where}.{key} must be at least 1, not {value}.")
    return value


def _read(directory: Path, name: str) -> str:
    path = directory / name
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise GovernancePolicyError(
            f"cannot read {path} ({exc.strerror}); restore it from the repository."
        ) from None


def load_policy(policies_dir: Path = POLICIES_DIR) -> GovernancePolicy:
    """Read and validate policies/governance/ under `policies_dir`."""
    directory = Path(policies_dir) / "governance"
    raw_text = _read(directory, POLICY_FILE)
    try:
        raw = tomllib.loads(raw_text)
    except tomllib.TOMLDecodeError as exc:
        raise GovernancePolicyError(
            f"policies/governance/{POLICY_FILE} is not valid TOML: {exc}."
        ) from None
    version = raw.get("version")
    if not isinstance(version, int | str) or isinstance(version, bool) or str(version) == "":
        raise GovernancePolicyError(f"policies/governance/{POLICY_FILE} needs a `version` field.")
    school = _get(raw, "school_name", str, "top level").strip()
    levels = _get(raw, "levels", dict, "top level")
    rem = _get(raw, "removals", dict, "top level")
    sharing = _get(raw, "sharing", dict, "top level")
    exports = _get(raw, "exports", dict, "top level")
    closure = _get(raw, "closure", dict, "top level")

    limited = _get(levels, "limited_access", str, "levels")
    publication = _get(levels, "publication", str, "levels")
    known = {limited, publication}

    purposes = _strs(rem, "purposes", "removals")
    educational = frozenset(_strs(rem, "educational_purposes", "removals"))
    pub_purposes = frozenset(_strs(rem, "publication_purposes", "removals"))
    refused = frozenset(p.casefold() for p in _strs(rem, "refused_purposes", "removals"))
    if not set(purposes) <= educational:
        raise GovernancePolicyError(
            "every removal purpose must be educational (seed 002, item 2); "
            f"not educational: {sorted(set(purposes) - educational)}."
        )
    if not pub_purposes <= set(purposes):
        raise GovernancePolicyError("removals.publication_purposes must be listed in purposes.")
    if refused & {p.casefold() for p in purposes}:
        raise GovernancePolicyError("a purpose cannot be both allowed and refused.")
    allowed_raw = _get(rem, "allowed_levels", dict, "removals")
    allowed: dict[str, frozenset[str]] = {}
    for purpose in purposes:
        lv = frozenset(_strs(allowed_raw, purpose, "removals.allowed_levels"))
        if not lv <= known:
            raise GovernancePolicyError(
                f"removals.allowed_levels.{purpose} names unknown levels {sorted(lv - known)}."
            )
        if purpose in pub_purposes and lv != {publication}:
            raise GovernancePolicyError(
                f"removals.allowed_levels.{purpose} must be only [{publication!r}]: "
                "publication needs cases de-identified to the point of publication."
            )
        allowed[purpose] = lv

    kinds = _strs(sharing, "recipient_kinds", "sharing")
    refused_raw = _strs(sharing, "refused_recipient_kinds", "sharing")
    refused_kinds = frozenset(k.casefold() for k in refused_raw)
    if "commercial" not in refused_kinds or refused_kinds & {k.casefold() for k in kinds}:
        raise GovernancePolicyError(
            "sharing.refused_recipient_kinds must include 'commercial' and no allowed kind."
        )
    labels_raw = sharing.get("kind_labels", {})
    labels = {k: str(labels_raw.get(k, k)) for k in kinds}
    with_dsa = frozenset(_strs(sharing, "levels_with_agreement", "sharing"))
    without_dsa = frozenset(_strs(sharing, "levels_without_agreement", "sharing"))
    if not (with_dsa | without_dsa) <= known or limited in without_dsa:
        raise GovernancePolicyError(
            "sharing.levels_without_agreement may hold only the publication level "
            "(RCR: key-coded data only under the same contractual arrangements)."
        )
    share_purposes = _strs(sharing, "purposes", "sharing")
    refused_share = frozenset(p.casefold() for p in _strs(sharing, "refused_purposes", "sharing"))
    template_name = _get(sharing, "undertaking_template", str, "sharing")
    template = _read(directory, template_name)
    clauses = _strs(sharing, "undertaking_required_clauses", "sharing")
    flat = " ".join(template.split())
    missing = [c for c in clauses if " ".join(c.split()) not in flat]
    if missing:
        raise GovernancePolicyError(
            f"policies/governance/{template_name} no longer says {missing!r}; "
            "restore the clause (seed 002, item 6) before any share."
        )
    _check_template(template, template_name, UNDERTAKING_FIELDS)
    terms_name = _get(exports, "terms_file", str, "exports")
    terms = _read(directory, terms_name)
    _check_template(terms, terms_name, EXPORT_TERMS_FIELDS)

    transfer_kinds = frozenset(_strs(closure, "transfer_recipient_kinds", "closure"))
    if not transfer_kinds <= set(kinds):
        raise GovernancePolicyError("closure.transfer_recipient_kinds must be recipient kinds.")
    confirmations = _positive(closure, "wipe_confirmations_required", "closure")
    if confirmations < 2:
        raise GovernancePolicyError(
            "closure.wipe_confirmations_required must be at least 2: a wipe needs two people."
        )
    quorum = _positive(sharing, "quorum", "sharing")
    valid_hours = _positive(closure, "wipe_confirmation_valid_hours", "closure")

    digest = hashlib.sha256()
    for part in (raw_text, template, terms):
        digest.update(hashlib.sha256(part.encode()).digest())
    return GovernancePolicy(
        version=str(version),
        sha256=digest.hexdigest(),
        school_name=school,
        level_limited_access=limited,
        level_publication=publication,
        removal_purposes=purposes,
        educational_purposes=educational,
        publication_purposes=pub_purposes,
        refused_removal_purposes=refused,
        removal_allowed_levels=allowed,
        default_expiry_days=_positive(rem, "default_expiry_days", "removals"),
        max_expiry_days=_positive(rem, "max_expiry_days", "removals"),
        default_max_downloads=_positive(rem, "default_max_downloads", "removals"),
        max_downloads_limit=_positive(rem, "max_downloads_limit", "removals"),
        recipient_kinds=kinds,
        refused_recipient_kinds=refused_kinds,
        kind_labels=labels,
        share_purposes=share_purposes,
        refused_share_purposes=refused_share,
        quorum=quorum,
        levels_with_agreement=with_dsa,
        levels_without_agreement=without_dsa,
        undertaking_template=template,
        undertaking_required_clauses=clauses,
        export_terms_template=terms,
        transfer_recipient_kinds=transfer_kinds,
        wipe_confirmations_required=confirmations,
        wipe_confirmation_valid_hours=valid_hours,
        actions=_actions(policies_dir),
    )


# The actions the governance rules ask about; each must be in actions.toml (fail closed).
GOVERNANCE_ACTIONS = (
    "removal.request",
    "removal.approve",
    "removal.refuse",
    "share.propose",
    "share.vote",
    "closure.vote",
    "closure.confirm_wipe",
)


def _actions(policies_dir: Path) -> ActionPolicy:
    try:
        actions = load_action_policy(Path(policies_dir))
    except ActionPolicyError as exc:
        raise GovernancePolicyError(f"{exc} The governance rules ask it who may act.") from None
    missing = [a for a in GOVERNANCE_ACTIONS if not actions.holders(a)]
    if missing:
        raise GovernancePolicyError(
            f"policies/access/actions.toml gives no role the action(s) {missing}; "
            "the governance rules need them."
        )
    return actions


UNDERTAKING_FIELDS = frozenset(
    {
        "school_name",
        "recipient_organisation",
        "recipient_kind_label",
        "recipient_contact",
        "proposal_reference",
        "purpose",
        "case_count",
        "case_list",
        "decision_reference",
    }
)
EXPORT_TERMS_FIELDS = frozenset({"school_name", "approval_reference", "purpose"})


def _check_template(template: str, name: str, allowed: frozenset[str]) -> None:
    """Refuse templates with placeholders the code cannot fill (they would stay blank)."""
    t = Template(template)
    if not t.is_valid():
        raise GovernancePolicyError(f"policies/governance/{name} has a malformed $placeholder.")
    unknown = set(t.get_identifiers()) - allowed
    if unknown:
        raise GovernancePolicyError(
            f"policies/governance/{name} uses unknown placeholders {sorted(unknown)}; "
            f"allowed: {sorted(allowed)}."
        )
