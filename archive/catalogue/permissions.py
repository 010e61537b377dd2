"""Who may change the catalogue. Enforcement is the access room's job; this is the rule.

The school's policy admits personnel, approved trainers, registrars and other
specialities to the suite; only trainers (who author teaching content) and personnel
(who run the archive) may edit cases and collections. Registrars search and view.
"""

from __future__ import annotations

from collections.abc import Iterable

EDITOR_ROLES = frozenset({"trainer", "personnel"})


def can_edit(roles: Iterable[str]) -> bool:
    """True if any of the roles may edit teaching metadata and collections."""
    return any(str(role).strip().lower() in EDITOR_ROLES for role in roles)


# Roles that browse the catalogue (policies/access/routes.toml grants them
# GET /teaching/cases/**); the School Board decides on sharing but sees no images.
VIEWER_ROLES = EDITOR_ROLES | {"registrar", "other_speciality", "head_of_school", "tpd"}


def can_view(roles: Iterable[str]) -> bool:
    """True if any of the roles may search and view cases and collections."""
    return any(str(role).strip().lower() in VIEWER_ROLES for role in roles)
