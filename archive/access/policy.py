"""Loading the access policy (policies/access/*.toml) into checked, compiled rules.

A policy that cannot be understood, or whose allow rule could open a [never] route,
raises PolicyError: the archive then refuses to start rather than guess (fail closed).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from archive.errors import ArchiveError


class _Roles(Sequence[str]):
    """The roles the archive knows, as policies/access/actions.toml lists them (issue 21:
    role names live in the policy, not in code). Read on first use, not at import, so
    that archive.core (which imports this package) can load first."""

    def _names(self) -> tuple[str, ...]:
        from archive.core import load_action_policy
        from archive.paths import POLICIES_DIR

        return load_action_policy(POLICIES_DIR).roles

    def __getitem__(self, index):  # type: ignore[override]
        return self._names()[index]

    def __len__(self) -> int:
        return len(self._names())

    def __repr__(self) -> str:
        return repr(self._names())


ROLES: Sequence[str] = _Roles()


def application_role(policies_dir: Path | None = None) -> str:
    """The role only an approved application grants ([applications].grants in
    actions.toml; one of its roles)."""
    from archive.core import load_action_policy
    from archive.paths import POLICIES_DIR

    where = Path(policies_dir or POLICIES_DIR)
    path = where / "access" / "actions.toml"
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        raise PolicyError(f"{path} is missing; the archive refuses to guess.") from None
    role = _granted(path, stamp)
    if role not in load_action_policy(where).roles:
        raise PolicyError(f"{path}: [applications].grants must name one of its roles.")
    return role


@lru_cache(maxsize=8)
def _granted(path: Path, stamp: int) -> str:  # noqa: ARG001 - the cache key
    role = (_read_toml(path).get("applications") or {}).get("grants")
    return role if isinstance(role, str) else ""


def application_approvers(policies_dir: Path | None = None) -> frozenset[str]:
    """The roles that may approve an application (application.approve)."""
    from archive.core import load_action_policy
    from archive.paths import POLICIES_DIR

    return load_action_policy(Path(policies_dir or POLICIES_DIR)).holders("application.approve")


METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH"})
_SEGMENT = re.compile(r"^[A-Za-z0-9._~-]+$")


class PolicyError(ArchiveError):
    """The access policy is missing, malformed or unsafe; fix the file named."""


@dataclass(frozen=True)
class RoutePattern:
    """A path pattern: literal segments, "*" for one segment, a final "**" for any rest."""

    text: str
    segments: tuple[str, ...]

    @classmethod
    def parse(cls, text: str, where: str) -> RoutePattern:
        if not text.startswith("/"):
            raise PolicyError(f"{where}: route {text!r} must start with '/'.")
        segments = tuple(s for s in text.split("/") if s)
        for i, segment in enumerate(segments):
            if segment == "**" and i != len(segments) - 1:
                raise PolicyError(f"{where}: '**' may only end a route ({text!r}).")
            if segment not in ("*", "**") and not _SEGMENT.match(segment):
                raise PolicyError(f"{where}: route {text!r} has an invalid segment {segment!r}.")
        return cls(text=text, segments=segments)

    def matches(self, path: tuple[str, ...]) -> bool:
        pat = self.segments
        if pat and pat[-1] == "**":
            head = pat[:-1]
            if len(path) < len(head):
                return False
        else:
            head = pat
            if len(path) != len(head):
                return False
        return all(p == "*" or p == s for p, s in zip(head, path, strict=False))

    def overlaps(self, other: RoutePattern) -> bool:
        """Could one concrete path match both patterns?"""
        return _overlap(self.segments, other.segments)


def _overlap(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    if (a and a[0] == "**") or (b and b[0] == "**"):
        return True
    if not a or not b:
        return not a and not b
    if a[0] != "*" and b[0] != "*" and a[0] != b[0]:
        return False
    return _overlap(a[1:], b[1:])


@dataclass(frozen=True)
class Rule:
    """One allow (or never) rule: a set of methods and a route pattern."""

    methods: frozenset[str]  # empty = any method
    pattern: RoutePattern
    text: str

    @classmethod
    def parse(cls, text: object, where: str) -> Rule:
        if not isinstance(text, str) or len(text.split()) != 2:
            raise PolicyError(f"{where}: rule {text!r} must be 'METHODS /route'.")
        methods_text, route = text.split()
        if methods_text == "*":
            methods: frozenset[str] = frozenset()
        else:
            methods = frozenset(m.strip().upper() for m in methods_text.split(","))
            unknown = methods - METHODS
            if unknown:
                raise PolicyError(f"{where}: unknown method(s) {sorted(unknown)} in {text!r}.")
        return cls(methods=methods, pattern=RoutePattern.parse(route, where), text=text)

    def matches(self, method: str, path: tuple[str, ...]) -> bool:
        return (not self.methods or method in self.methods) and self.pattern.matches(path)

    def overlaps(self, other: Rule) -> bool:
        shared = not self.methods or not other.methods or bool(self.methods & other.methods)
        return shared and self.pattern.overlaps(other.pattern)


@dataclass(frozen=True)
class RoutePolicy:
    """The compiled policies/access/routes.toml."""

    version: int
    roles: dict[str, tuple[Rule, ...]]
    anonymous: tuple[Rule, ...]
    never: tuple[Rule, ...]
    image_routes: tuple[Rule, ...]
    roles_requiring_training: frozenset[str]
    source: str = ""


@dataclass(frozen=True)
class AccountPolicy:
    """The checked policies/access/accounts.toml."""

    version: int = 1
    training_valid_days: int = 365
    # [throttle]: failed sign-ins back off per (account, address) and per address;
    # nothing locks an account (archive/access/throttle.py says why).
    throttle_free_per_account_address: int = 3
    throttle_free_per_address: int = 10
    throttle_initial_delay_seconds: int = 1
    throttle_max_delay_seconds: int = 900
    throttle_forget_after_minutes: int = 60
    throttle_account_alert_failures: int = 50
    password_min_length: int = 12
    credential_cache_seconds: int = 60
    token_default_days: int = 90
    token_max_days: int = 365
    token_last_used_resolution_seconds: int = 60


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolicyError(
            f"access policy {path} is missing; restore it from the repository."
        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PolicyError(f"access policy {path} is not valid TOML ({exc}).") from None


def _version(raw: dict, path: Path) -> int:
    version = raw.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise PolicyError(f"{path}: 'version' must be a positive integer.")
    return version


def _rules(value: object, where: str) -> tuple[Rule, ...]:
    if not isinstance(value, list):
        raise PolicyError(f"{where} must be a list of 'METHODS /route' strings.")
    return tuple(Rule.parse(item, where) for item in value)


def parse_route_policy(
    raw: dict, source: str = "routes.toml", known: Sequence[str] | None = None
) -> RoutePolicy:
    """Check and compile a decoded routes.toml; refuse any rule that opens a never route.
    `known`: the roles of the action policy beside it (default: the shipped one's)."""
    version = _version(raw, Path(source))
    known = tuple(ROLES if known is None else known)
    never = _rules(raw.get("never", {}).get("routes"), f"{source} [never].routes")
    if not never:
        raise PolicyError(f"{source}: [never].routes must list the image-egress routes.")
    roles_raw = raw.get("roles")
    if not isinstance(roles_raw, dict):
        raise PolicyError(f"{source}: [roles.<name>] tables are missing.")
    unknown = set(roles_raw) - set(known)
    if unknown:
        raise PolicyError(
            f"{source}: unknown role(s) {sorted(unknown)}; known: {', '.join(known)}."
        )
    roles = {
        role: _rules(roles_raw.get(role, {}).get("allow", []), f"{source} [roles.{role}].allow")
        for role in known
    }
    anonymous = _rules(raw.get("anonymous", {}).get("allow", []), f"{source} [anonymous].allow")
    training = raw.get("training", {})
    image_routes = _rules(training.get("image_routes", []), f"{source} [training].image_routes")
    requiring = training.get("roles_requiring_training", [])
    if not isinstance(requiring, list) or set(requiring) - set(known):
        raise PolicyError(f"{source}: [training].roles_requiring_training must list known roles.")
    for where, rules in [("anonymous", anonymous), *roles.items()]:
        for rule in rules:
            for forbidden in never:
                if rule.overlaps(forbidden):
                    raise PolicyError(
                        f"{source}: rule {rule.text!r} for {where} could open the never-allowed "
                        f"route {forbidden.text!r}; images leave only through approval-gated "
                        "/teaching routes. Remove or narrow the rule."
                    )
    for rule in anonymous:
        for image in image_routes:
            if rule.overlaps(image):
                raise PolicyError(f"{source}: anonymous rule {rule.text!r} touches images.")
    return RoutePolicy(
        version=version,
        roles=roles,
        anonymous=anonymous,
        never=never,
        image_routes=image_routes,
        roles_requiring_training=frozenset(requiring),
        source=source,
    )


def load_route_policy(policies_dir: Path) -> RoutePolicy:
    """routes.toml, checked against the roles of actions.toml in the same directory."""
    from archive.core import ActionPolicyError, load_action_policy

    path = Path(policies_dir) / "access" / "routes.toml"
    try:
        known = load_action_policy(Path(policies_dir)).roles
    except ActionPolicyError as exc:
        raise PolicyError(str(exc)) from None
    return parse_route_policy(_read_toml(path), str(path), known)


def _positive(section: dict, key: str, where: str, default: int) -> int:
    value = section.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise PolicyError(f"{where}.{key} must be a positive integer.")
    return value


def parse_account_policy(raw: dict, source: str = "accounts.toml") -> AccountPolicy:
    version = _version(raw, Path(source))
    d = AccountPolicy()
    if "lockout" in raw:
        raise PolicyError(
            f"{source}: [lockout] is replaced by [throttle] (failed sign-ins back off per "
            "address; no account lockout): see policies/access/accounts.toml in the repository."
        )
    t, th, pw, tok = (raw.get(k, {}) for k in ("training", "throttle", "passwords", "tokens"))
    policy = AccountPolicy(
        version=version,
        training_valid_days=_positive(t, "valid_days", "training", d.training_valid_days),
        throttle_free_per_account_address=_positive(
            th, "free_per_account_address", "throttle", d.throttle_free_per_account_address
        ),
        throttle_free_per_address=_positive(
            th, "free_per_address", "throttle", d.throttle_free_per_address
        ),
        throttle_initial_delay_seconds=_positive(
            th, "initial_delay_seconds", "throttle", d.throttle_initial_delay_seconds
        ),
        throttle_max_delay_seconds=_positive(
            th, "max_delay_seconds", "throttle", d.throttle_max_delay_seconds
        ),
        throttle_forget_after_minutes=_positive(
            th, "forget_after_minutes", "throttle", d.throttle_forget_after_minutes
        ),
        throttle_account_alert_failures=_positive(
            th, "account_alert_failures", "throttle", d.throttle_account_alert_failures
        ),
        password_min_length=_positive(pw, "min_length", "passwords", d.password_min_length),
        credential_cache_seconds=_positive(
            pw, "cache_seconds", "passwords", d.credential_cache_seconds
        ),
        token_default_days=_positive(tok, "default_days", "tokens", d.token_default_days),
        token_max_days=_positive(tok, "max_days", "tokens", d.token_max_days),
        token_last_used_resolution_seconds=_positive(
            tok, "last_used_resolution_seconds", "tokens", d.token_last_used_resolution_seconds
        ),
    )
    if policy.token_default_days > policy.token_max_days:
        raise PolicyError(f"{source}: tokens.default_days exceeds tokens.max_days.")
    if policy.password_min_length < 8:
        raise PolicyError(f"{source}: passwords.min_length must be at least 8.")
    return policy


def load_account_policy(policies_dir: Path) -> AccountPolicy:
    path = Path(policies_dir) / "access" / "accounts.toml"
    return parse_account_policy(_read_toml(path), str(path))
