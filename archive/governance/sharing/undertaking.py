"""The written undertaking a third party signs before any share (seed 002, item 6).

The text comes from policies/governance (its clauses are checked when the policy loads);
this module only fills in the names, so what the recipient signs is reviewed like code.
"""

from __future__ import annotations

from collections.abc import Sequence
from string import Template
from typing import Protocol

from archive.governance.errors import GovernancePolicyError


class _RecipientLike(Protocol):
    organisation: str
    kind: str
    contact: str


class _ProposalLike(Protocol):
    id: int
    purpose: str
    case_ids: Sequence[str]

    @property
    def reference(self) -> str: ...


def render_undertaking(
    template: str,
    recipient: _RecipientLike,
    proposal: _ProposalLike,
    school_name: str,
    *,
    kind_label: str | None = None,
    decision_reference: str | None = None,
) -> str:
    """Fill the undertaking template for one proposal; a missing placeholder is an error,
    never a blank in a document someone signs."""
    values = {
        "school_name": school_name,
        "recipient_organisation": recipient.organisation,
        "recipient_kind_label": kind_label or recipient.kind,
        "recipient_contact": recipient.contact,
        "proposal_reference": proposal.reference,
        "purpose": proposal.purpose.replace("_", " "),
        "case_count": str(len(proposal.case_ids)),
        "case_list": ", ".join(proposal.case_ids),
        "decision_reference": decision_reference or "to be decided by the School Board",
    }
    try:
        return Template(template).substitute(values)
    except (KeyError, ValueError) as exc:
        raise GovernancePolicyError(
            f"the undertaking template has a placeholder the archive cannot fill ({exc}); "
            "fix policies/governance/undertaking.md."
        ) from None
