"""Photograph consent: is a recorded level enough for a given use or archive level?

Consent is the patient's, recorded by personnel against the case; it covers only the
uses agreed, so every check compares ranks in the ordered list from
policies/consent.toml. An unknown or missing level grants nothing.
"""

from __future__ import annotations

from archive.errors import ArchiveError
from archive.pixels.policy import MaskingPolicy


def check_consent_level(policy: MaskingPolicy, level: str) -> str:
    """``level`` if the policy knows it; otherwise an error listing the valid levels."""
    if level not in policy.consent.levels:
        raise ArchiveError(
            f"unknown consent level '{level}'; use one of: {', '.join(policy.consent.levels)}"
        )
    return level


def required_level(policy: MaskingPolicy, use: str) -> str:
    """Minimum consent level a use (or an archive level) of a photograph needs."""
    rules = policy.consent
    if use in rules.uses:
        return rules.uses[use]
    if use in rules.archive_levels:
        return rules.archive_levels[use]
    known = sorted({*rules.uses, *rules.archive_levels})
    raise ArchiveError(f"unknown photograph use '{use}'; known uses: {', '.join(known)}")


def consent_allows(policy: MaskingPolicy, level: str | None, use: str) -> bool:
    """True when a photograph with consent ``level`` may be used for ``use``."""
    rules = policy.consent
    return rules.rank(level) >= 0 and rules.rank(level) >= rules.rank(required_level(policy, use))


def allowed_uses(policy: MaskingPolicy, level: str | None) -> list[str]:
    """Every use and archive level that ``level`` covers: the photograph's scope."""
    rules = policy.consent
    names = [*rules.uses, *rules.archive_levels]
    return [name for name in names if consent_allows(policy, level, name)]


def photograph_releasable(policy: MaskingPolicy, level: str | None) -> bool:
    """At least the policy's release minimum (teaching) has been recorded."""
    rules = policy.consent
    return rules.rank(level) >= 0 and rules.rank(level) >= rules.rank(
        rules.photograph_release_minimum
    )
