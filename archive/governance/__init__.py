"""Governance: the rules for images leaving the suite, sharing, closure and withdrawal.

Plain domain code (no Orthanc), one package per workflow, each owning its tables and
answering the others through functions (tests/unit/test_governance_rooms.py):

  removals/   requests, written approvals and refusals, downloads (records, usecases)
  sharing/    recipients, proposals, undertakings, executions, the register
  closure/    the one closure plan, transfer and receipt, the wipe gate, the certificate
  optout/     the opt-out register and withdrawals
  board.py    School Board decisions and each member's own vote (shares and closure)
  pulls.py    the pull inventory and workstation wipe attestations

Every act is a use case (`<workflow>/usecases.py`, on archive.core through `usecase.run`):
authorised against policies/access/actions.toml, one transaction, one audit record, a
result or a Refusal. Policy lives in policies/governance (`policy.load_policy`).
"""

from archive.governance.board import BoardVote
from archive.governance.closure.certificate import (
    Media,
    Person,
    SanitizationStep,
    SignedCertificate,
    Tool,
    Verification,
    WipeCertificate,
    default_steps,
    sign_certificate,
)
from archive.governance.closure.records import (
    ClosureInputs,
    ClosurePlan,
    ClosureRecords,
    closure_plan,
)
from archive.governance.errors import GovernanceError
from archive.governance.optout.register import OptOutRegister
from archive.governance.policy import GovernancePolicy, load_policy
from archive.governance.pulls import PullInventory
from archive.governance.removals.records import ExportTicket, RemovalRequest, RemovalRequests
from archive.governance.sharing.recipients import DicomNode, Recipient, Recipients
from archive.governance.sharing.records import Shares, ShareTicket, share_log_csv, share_log_json
from archive.governance.sharing.undertaking import render_undertaking

__all__ = [
    "BoardVote",
    "ClosureInputs",
    "ClosurePlan",
    "ClosureRecords",
    "DicomNode",
    "ExportTicket",
    "GovernanceError",
    "GovernancePolicy",
    "Media",
    "OptOutRegister",
    "Person",
    "PullInventory",
    "Recipient",
    "Recipients",
    "RemovalRequest",
    "RemovalRequests",
    "SanitizationStep",
    "ShareTicket",
    "Shares",
    "SignedCertificate",
    "Tool",
    "Verification",
    "WipeCertificate",
    "closure_plan",
    "default_steps",
    "load_policy",
    "render_undertaking",
    "share_log_csv",
    "share_log_json",
    "sign_certificate",
]
