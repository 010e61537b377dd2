"""Consent withdrawal and objection as use cases (issue 21), by the authenticated person.

    register_objection  withdrawal.carry_out  the pseudonym goes on the opt-out register
                                              first (a study arriving meanwhile is
                                              discarded at ingest)
    record_withdrawal   withdrawal.carry_out  the withdrawn cases are recorded, and every
                                              share, export and workstation that carried
                                              them is listed for deletion requests

The studies themselves are crypto-shredded and deleted by the running archive between
the two (plugins/closure_routes.py, the same person's credentials). Neither the issuer,
the patient ID nor the pseudonym is ever audited: only counts and case ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from archive.access.principal import Principal
from archive.core import Permit, Ports, Refusal, Resource
from archive.governance.optout.register import OptOutRegister, Withdrawal
from archive.governance.usecase import now, run

ACTION = "withdrawal.carry_out"


@dataclass(frozen=True)
class Registered:
    new: bool

    def audit(self) -> dict[str, Any]:
        return {"new": self.new}


def register_objection(ports: Ports, principal: Principal | None, pseudonym: str):
    """Put the patient on the opt-out register, as this person."""
    register = OptOutRegister(ports.db)

    def act(tx, permit: Permit) -> Registered:
        return Registered(register.add(pseudonym, added_by=principal.user, now=now(ports)))

    return run(ports, principal, ACTION, Resource("opt-out register"), act,
               event="withdrawal.optout")  # fmt: skip


@dataclass(frozen=True)
class Recorded:
    withdrawal: Withdrawal
    exposures: list[dict[str, object]]

    def audit(self) -> dict[str, Any]:
        return {
            "kind": self.withdrawal.kind,
            "withdrawal_id": self.withdrawal.id,
            "cases": ",".join(self.withdrawal.case_ids),
            "exposures": ",".join(f"{e['kind']}:{e['reference']}" for e in self.exposures),
        }


def record_withdrawal(
    ports: Ports, principal: Principal | None, pseudonym: str, case_ids: Sequence[str], *,
    kind: str, requested_by: str,
) -> Recorded | Refusal:  # fmt: skip
    """Record the withdrawn cases and list who already holds them, as this person."""
    register = OptOutRegister(ports.db)

    def act(tx, permit: Permit) -> Recorded:
        done = register.record_withdrawal(pseudonym, list(case_ids), kind=kind,
                                          requested_by=requested_by,
                                          recorded_by=principal.user, now=now(ports))  # fmt: skip
        return Recorded(done, register.exposures(list(case_ids)) if case_ids else [])

    return run(ports, principal, ACTION, Resource("withdrawal"), act,
               event="withdrawal.record")  # fmt: skip
