"""The decision functions: may this principal call this route, may this AE do this?

Order of an HTTP decision, so that no rule can ever undo a stronger one:
1. a URI that is not plainly spelled (percent-encoding, "..", "//", backslash, control
   characters) is denied – the filter and Orthanc must not be able to read it differently;
2. a [never] route is denied to everyone;
3. no principal: only the anonymous allow-list;
4. a rule of one of the principal's roles allows it, provided the principal has valid
   training when the role or the route (an image route) requires it;
5. the anonymous allow-list (what anyone may do, a signed-in user may do too);
6. anything else is denied.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from archive.access.policy import RoutePolicy, Rule
from archive.access.principal import Principal

_UNSAFE = re.compile(r"[%\\\x00-\x20\x7f]|//|/\.\.?(/|$)")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    rule: str | None = None


@lru_cache(maxsize=4096)
def split_uri(uri: str) -> tuple[str, ...] | None:
    """The path segments of a request URI, or None if it is not plainly spelled."""
    path = uri.split("?", 1)[0]
    if not path.startswith("/") or _UNSAFE.search(path):
        return None
    return tuple(s for s in path.split("/") if s)


def _first(rules: tuple[Rule, ...], method: str, path: tuple[str, ...]) -> Rule | None:
    for rule in rules:
        if rule.matches(method, path):
            return rule
    return None


def decide(policy: RoutePolicy, principal: Principal | None, method: str, uri: str) -> Decision:
    """Allow or deny one HTTP request; deny unless a rule allows it (see module doc)."""
    method = method.upper()
    path = split_uri(uri)
    if path is None:
        return Decision(False, "malformed or encoded URI refused")
    # Case-folded for the never list, in case a server matches routes case-insensitively.
    never = _first(policy.never, method, tuple(s.lower() for s in path))
    if never is not None:
        return Decision(False, "image-egress or control route: never allowed directly", never.text)
    if principal is None:
        rule = _first(policy.anonymous, method, path)
        if rule is not None:
            return Decision(True, "anonymous route", f"anonymous:{rule.text}")
        return Decision(False, "authentication required")
    touches_images = _first(policy.image_routes, method, path) is not None
    needed_training = False
    for role in sorted(set(principal.roles)):
        rule = _first(policy.roles.get(role, ()), method, path)
        if rule is None:
            continue
        if not principal.trained and (touches_images or role in policy.roles_requiring_training):
            needed_training = True
            continue
        return Decision(True, "allowed by role", f"{role}:{rule.text}")
    rule = _first(policy.anonymous, method, path)
    if rule is not None:
        return Decision(True, "anonymous route", f"anonymous:{rule.text}")
    if needed_training:
        return Decision(False, "valid familiarisation and suite-use training required")
    return Decision(False, "no rule allows this route for the caller's roles")


class CachedDecider:
    """`decide` for one policy, remembered per (roles, trained, method, URI).

    A decision depends only on those (and the policy, fixed for the decider's life), so
    the HTTP filter need not walk the rule lists again for a repeated request. Bounded:
    the memory is dropped whole when it reaches `maxsize` entries.
    """

    def __init__(self, policy: RoutePolicy, maxsize: int = 8192) -> None:
        self.policy = policy
        self.maxsize = maxsize
        self._memo: dict[tuple[tuple[str, ...] | None, bool, str, str], Decision] = {}

    def __call__(self, principal: Principal | None, method: str, uri: str) -> Decision:
        key = (
            principal.roles if principal is not None else None,
            principal.trained if principal is not None else False,
            method,
            uri,
        )
        decision = self._memo.get(key)
        if decision is None:
            decision = decide(self.policy, principal, method, uri)
            if len(self._memo) >= self.maxsize:
                self._memo.clear()
            self._memo[key] = decision
        return decision
