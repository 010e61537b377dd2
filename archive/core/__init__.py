"""The archive's use-case core (issue 21): one authorisation, one shape for every act.

- `authorise(policy, principal, action, resource)` reads policies/access/actions.toml;
- `perform(ports, principal, action, resource, act)` authorises, acts in one
  transaction, audits once and returns the result or a `Refusal` (reason and next step).

Each workflow room (catalogue, pulls, removals, sharing, closure, quarantine, users,
withdrawal) writes its use cases on these; the adapters (plugins/, archive/web,
archive/cli) decode, call a use case and encode its answer.
"""

from archive.core.authorise import (
    ActionPolicy,
    ActionPolicyError,
    Permit,
    Refusal,
    Refused,
    Resource,
    authorise,
    load_action_policy,
    parse_action_policy,
)
from archive.core.usecase import Ports, perform, transaction

__all__ = [
    "ActionPolicy",
    "ActionPolicyError",
    "Permit",
    "Ports",
    "Refusal",
    "Refused",
    "Resource",
    "authorise",
    "load_action_policy",
    "parse_action_policy",
    "perform",
    "transaction",
]
