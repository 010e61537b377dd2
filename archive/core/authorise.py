"""The one authorisation of the archive: may this principal do this action to this thing?

Every use case calls `authorise(principal, action, resource)` first. The rules are data,
in `policies/access/actions.toml` (see the comments there): which roles may do an action,
whether it needs valid training, whether the principal may act on their own request,
whether only the owner may, and in which states of the resource. Role names live in
that file, never in code: code speaks of actions.

A permit is truthy and says which role allowed it; a refusal is falsy and carries the
reason and what to do next, for the person refused and for the audit record.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from archive.access.principal import Principal
from archive.errors import ArchiveError

ACTIONS_FILE = Path("access") / "actions.toml"
_KEYS = frozenset({"roles", "training", "not_own", "owner", "owner_override", "states", "next"})


class ActionPolicyError(ArchiveError):
    """policies/access/actions.toml is missing, malformed or names an unknown role."""


@dataclass(frozen=True)
class Resource:
    """What an action is done to, as far as the rules need to know it."""

    kind: str = ""
    id: str = ""
    state: str | None = None  # e.g. a case's "available", a removal's "pending"
    owner: str | None = None  # who owns it (a collection's owner)
    requester: str | None = None  # who asked for it (a removal, an upload)
    shared_with: frozenset[str] = frozenset()  # who else may edit it


@dataclass(frozen=True)
class Rule:
    action: str
    roles: frozenset[str]
    training: bool = False
    not_own: bool = False
    owner: bool = False
    owner_override: frozenset[str] = frozenset()
    states: frozenset[str] | None = None
    next: str = ""


@dataclass(frozen=True)
class ActionPolicy:
    version: int
    roles: tuple[str, ...]
    roles_requiring_training: frozenset[str]
    rules: dict[str, Rule] = field(default_factory=dict)
    # Roles that rules may name but no person holds (`devices` in actions.toml: a
    # registered suite workstation retrieving with nobody signed in, issue 23). They
    # are not in `roles`, the list the account store accepts for people.
    devices: tuple[str, ...] = ()

    def holders(self, action: str) -> frozenset[str]:
        """The roles that may do `action` (empty for an unknown action)."""
        rule = self.rules.get(action)
        return rule.roles if rule else frozenset()


@dataclass(frozen=True)
class Permit:
    action: str
    role: str

    def __bool__(self) -> bool:
        return True


@dataclass(frozen=True)
class Refusal:
    """Why an act was refused and what the person can do about it."""

    action: str
    reason: str
    next: str = ""
    code: str = "forbidden"  # forbidden | training | state | not_found | invalid | conflict

    def __bool__(self) -> bool:
        return False

    def as_dict(self) -> dict[str, str]:
        return {"error": self.reason, "next": self.next, "code": self.code, "action": self.action}


class Refused(ArchiveError):
    """A refusal raised out of a use case's body (the transaction is rolled back)."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.reason)
        self.refusal = refusal


def _strs(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ActionPolicyError(f"{where} must be a list of names.")
    return tuple(value)


def parse_action_policy(data: dict, source: str = "actions.toml") -> ActionPolicy:
    if data.get("version") != 1:
        raise ActionPolicyError(f"{source}: version must be 1.")
    roles = _strs(data.get("roles"), f"{source}: roles")
    devices = _strs(data.get("devices", []), f"{source}: devices") if data.get("devices") else ()
    if set(devices) & set(roles):
        both = sorted(set(devices) & set(roles))
        raise ActionPolicyError(f"{source}: {both} cannot be both people's roles and devices.")
    known = set(roles) | set(devices)
    requiring = frozenset(_strs(data.get("roles_requiring_training", []), f"{source}: training"))
    if requiring - known:
        raise ActionPolicyError(f"{source}: unknown role(s) {sorted(requiring - known)}.")
    rules: dict[str, Rule] = {}
    for name, raw in (data.get("actions") or {}).items():
        where = f"{source}: actions.{name}"
        if not isinstance(raw, dict) or set(raw) - _KEYS:
            raise ActionPolicyError(f"{where}: unknown key(s) {sorted(set(raw) - _KEYS)}.")
        rule_roles = frozenset(_strs(raw.get("roles"), f"{where}.roles"))
        override = frozenset(_strs(raw.get("owner_override", []), f"{where}.owner_override"))
        if (rule_roles | override) - known:
            raise ActionPolicyError(
                f"{where}: unknown role(s) {sorted((rule_roles | override) - known)}."
            )
        states = raw.get("states")
        rules[name] = Rule(
            action=name,
            roles=rule_roles,
            training=bool(raw.get("training", False)),
            not_own=bool(raw.get("not_own", False)),
            owner=bool(raw.get("owner", False)),
            owner_override=override,
            states=frozenset(_strs(states, f"{where}.states")) if states is not None else None,
            next=str(raw.get("next", "")),
        )
    return ActionPolicy(int(data["version"]), roles, requiring, rules, devices)


@lru_cache(maxsize=8)
def _load(path: Path, mtime_ns: int) -> ActionPolicy:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ActionPolicyError(f"{path}: cannot be read ({exc}); fix it and start again.") from exc
    return parse_action_policy(data, str(path))


def load_action_policy(policies_dir: Path) -> ActionPolicy:
    """The action policy under `policies_dir` (cached until the file changes)."""
    path = Path(policies_dir) / ACTIONS_FILE
    try:
        mtime = path.stat().st_mtime_ns
    except OSError as exc:
        raise ActionPolicyError(f"{path} is missing; the archive refuses to guess.") from exc
    return _load(path, mtime)


def authorise(
    policy: ActionPolicy,
    principal: Principal | None,
    action: str,
    resource: Resource | None = None,
) -> Permit | Refusal:
    """Permit or refuse one act. Unknown actions and anonymous callers are refused."""
    rule = policy.rules.get(action)
    if rule is None:
        return Refusal(
            action, f"unknown action {action!r}", "Report this to personnel.", "forbidden"
        )
    if principal is None:
        return Refusal(action, "sign in first", "Sign in with your own account.", "unauthenticated")
    held = sorted(set(principal.roles) & rule.roles)
    if not held:
        return Refusal(action, f"your role does not allow {action}", rule.next)
    needs_training = rule.training or any(r in policy.roles_requiring_training for r in held)
    if needs_training and not principal.trained:
        return Refusal(
            action,
            "valid familiarisation and suite-use training required",
            "Ask personnel to record your training.",
            "training",
        )
    resource = resource or Resource()
    if rule.states is not None and resource.state not in rule.states:
        allowed = ", ".join(sorted(rule.states))
        return Refusal(
            action,
            f"{resource.kind or 'it'} is {resource.state or 'unknown'}, not {allowed}",
            rule.next,
            "state",
        )
    if rule.not_own and resource.requester is not None and resource.requester == principal.user:
        return Refusal(action, "you cannot decide on your own request", rule.next)
    if rule.owner and not (set(principal.roles) & rule.owner_override):
        if principal.user != resource.owner and principal.user not in resource.shared_with:
            return Refusal(
                action, f"only the owner of {resource.kind or 'it'} may change it", rule.next
            )
    return Permit(action, held[0])
