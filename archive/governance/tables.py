"""The governance room's tables (prefix `governance_`) as SQLAlchemy Core, both dialects.

Declared as homes made by _store.SCHEMA_STEPS have them (before issue 27 those steps
were SQL scripts giving the same tables); step 2 added the Board members' own votes, step 3 the `position` of each case in
its request, proposal or withdrawal (the order given; it used to be SQLite's rowid). The room's converted modules (pulls,
the Board) write and read them through these declarations. One declaration for the whole room: removals, pulls, sharing, the Board,
closure and opt-out keep their records side by side and some read each other's (a
share's proposal, a closure's decision), as they always did within the room.
"""

# ruff: noqa: E501 - one column per line reads better than wrapped declarations

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()
# BIGINT on PostgreSQL; INTEGER on SQLite, where an INTEGER PRIMARY KEY is the rowid.
Int = BigInteger().with_variant(Integer(), "sqlite")

removal_requests = Table(
    "governance_removal_requests",
    metadata,
    Column("id", Int, Identity(), primary_key=True),
    Column("purpose", Text, nullable=False),
    Column("destination", Text, nullable=False),
    Column("requester", Text, nullable=False),
    Column("requester_roles", Text, nullable=False),
    Column("status", Text, nullable=False),
    CheckConstraint("status IN ('pending','approved','refused','exported','expired')"),
    Column("created_at", Text, nullable=False),
    Column("policy_version", Text, nullable=False),
    sqlite_autoincrement=True,
)

removal_cases = Table(
    "governance_removal_cases",
    metadata,
    Column(
        "request_id",
        Int,
        ForeignKey("governance_removal_requests.id"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("case_id", Text, primary_key=True),
    Column("level_at_request", Text, nullable=False),
    Column("position", Int, nullable=False, server_default="0"),  # step 3: the order given
)

removal_approvals = Table(
    "governance_removal_approvals",
    metadata,
    Column(
        "request_id",
        Int,
        ForeignKey("governance_removal_requests.id"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("approver", Text, nullable=False),
    Column("approver_role", Text, nullable=False),
    Column("approved_at", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("expires_at", Text, nullable=False),
    Column("max_downloads", Int, nullable=False),
    CheckConstraint("max_downloads >= 1"),
    Column("downloads_used", Int, nullable=False, server_default="0"),
    CheckConstraint("downloads_used <= max_downloads"),
    Column("policy_version", Text, nullable=False),
)

removal_refusals = Table(
    "governance_removal_refusals",
    metadata,
    Column(
        "request_id",
        Int,
        ForeignKey("governance_removal_requests.id"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("approver", Text, nullable=False),
    Column("approver_role", Text, nullable=False),
    Column("refused_at", Text, nullable=False),
    Column("reason", Text, nullable=False),
)

removal_downloads = Table(
    "governance_removal_downloads",
    metadata,
    Column(
        "request_id",
        Int,
        ForeignKey("governance_removal_requests.id"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("download_number", Int, primary_key=True, autoincrement=False),
    Column("authorised_at", Text, nullable=False),
)

pulls = Table(
    "governance_pulls",
    metadata,
    Column("id", Int, Identity(), primary_key=True),
    Column("case_id", Text, nullable=False),
    Column("workstation", Text, nullable=False),
    Column("user", Text, nullable=False),
    Column("pulled_at", Text, nullable=False),
    sqlite_autoincrement=True,
)

workstation_wipes = Table(
    "governance_workstation_wipes",
    metadata,
    Column("id", Int, Identity(), primary_key=True),
    Column("workstation", Text, nullable=False),
    Column("attested_by", Text, nullable=False),
    Column("wiped_at", Text, nullable=False),
    Column("method", Text, nullable=False),
    Column("notes", Text, nullable=False, server_default=""),
    Column("recorded_at", Text, nullable=False),
    sqlite_autoincrement=True,
)

recipients = Table(
    "governance_recipients",
    metadata,
    Column("id", Int, Identity(), primary_key=True),
    Column("organisation", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("contact", Text, nullable=False),
    Column("dicom_aet", Text),
    Column("dicom_host", Text),
    Column("dicom_port", Int),
    Column("public_key", Text),
    Column("data_sharing_agreement", Int, nullable=False),
    Column("added_by", Text, nullable=False),
    Column("added_at", Text, nullable=False),
    Column("active", Int, nullable=False, server_default="1"),
    sqlite_autoincrement=True,
)

share_proposals = Table(
    "governance_share_proposals",
    metadata,
    Column("id", Int, Identity(), primary_key=True),
    Column("recipient_id", Int, ForeignKey("governance_recipients.id"), nullable=False),
    Column("purpose", Text, nullable=False),
    Column("proposer", Text, nullable=False),
    Column("status", Text, nullable=False),
    CheckConstraint("status IN ('proposed','approved','rejected','shared','revoked')"),
    Column("created_at", Text, nullable=False),
    Column("policy_version", Text, nullable=False),
    sqlite_autoincrement=True,
)

share_proposal_cases = Table(
    "governance_share_proposal_cases",
    metadata,
    Column(
        "proposal_id",
        Int,
        ForeignKey("governance_share_proposals.id"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("case_id", Text, primary_key=True),
    Column("position", Int, nullable=False, server_default="0"),  # step 3: the order given
)

board_decisions = Table(
    "governance_board_decisions",
    metadata,
    Column("id", Int, Identity(), primary_key=True),
    Column("subject", Text, nullable=False),
    CheckConstraint("subject IN ('share','closure')"),
    Column("proposal_id", Int, ForeignKey("governance_share_proposals.id")),
    Column("outcome", Text, nullable=False),
    Column("meeting_date", Text, nullable=False),
    Column("minute_reference", Text, nullable=False),
    Column("decision_text", Text, nullable=False),
    Column("receiving_recipient_id", Int, ForeignKey("governance_recipients.id")),
    Column("quorum_required", Int, nullable=False),
    Column("quorum_counted", Int, nullable=False),
    Column("recorded_by", Text, nullable=False),
    Column("recorded_at", Text, nullable=False),
    Column("policy_version", Text, nullable=False),
    sqlite_autoincrement=True,
)

board_votes = Table(
    "governance_board_votes",
    metadata,
    Column(
        "decision_id",
        Int,
        ForeignKey("governance_board_decisions.id"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("member", Text, primary_key=True),
    Column("counted", Int, nullable=False),
    Column("note", Text, nullable=False, server_default=""),
)

undertakings = Table(
    "governance_undertakings",
    metadata,
    Column("id", Int, Identity(), primary_key=True),
    Column("proposal_id", Int, ForeignKey("governance_share_proposals.id"), nullable=False),
    Column("signed_sha256", Text, nullable=False),
    Column("signatory_name", Text, nullable=False),
    Column("signatory_role", Text, nullable=False),
    Column("organisation", Text, nullable=False),
    Column("signed_on", Text, nullable=False),
    Column("stored_ref", Text, nullable=False),
    Column("recorded_by", Text, nullable=False),
    Column("recorded_at", Text, nullable=False),
    sqlite_autoincrement=True,
)

share_executions = Table(
    "governance_share_executions",
    metadata,
    Column("id", Int, Identity(), primary_key=True),
    Column("proposal_id", Int, ForeignKey("governance_share_proposals.id"), nullable=False),
    Column("decision_id", Int, ForeignKey("governance_board_decisions.id"), nullable=False),
    Column("undertaking_id", Int, ForeignKey("governance_undertakings.id"), nullable=False),
    Column("method", Text, nullable=False),
    CheckConstraint("method IN ('cstore','package')"),
    Column("destination", Text, nullable=False),
    Column("manifest_sha256", Text, nullable=False),
    Column("executed_by", Text, nullable=False),
    Column("executed_at", Text, nullable=False),
    sqlite_autoincrement=True,
)

share_items = Table(
    "governance_share_items",
    metadata,
    Column(
        "share_id",
        Int,
        ForeignKey("governance_share_executions.id"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("case_id", Text, nullable=False),
    Column("sop_instance_uid", Text, primary_key=True),
    Column("sha256", Text, nullable=False),
)

share_requests = Table(
    "governance_share_requests",
    metadata,
    Column("id", Int, Identity(), primary_key=True),
    Column("share_id", Int, ForeignKey("governance_share_executions.id"), nullable=False),
    Column("kind", Text, nullable=False),
    CheckConstraint("kind IN ('revocation','deletion')"),
    Column("reason", Text, nullable=False),
    Column("requested_by", Text, nullable=False),
    Column("requested_at", Text, nullable=False),
    sqlite_autoincrement=True,
)

share_confirmations = Table(
    "governance_share_confirmations",
    metadata,
    Column("id", Int, Identity(), primary_key=True),
    Column("request_id", Int, ForeignKey("governance_share_requests.id"), nullable=False),
    Column("confirmed_by", Text, nullable=False),
    Column("confirmed_on", Text, nullable=False),
    Column("evidence_ref", Text, nullable=False),
    Column("recorded_at", Text, nullable=False),
    sqlite_autoincrement=True,
)

closure_transfers = Table(
    "governance_closure_transfers",
    metadata,
    Column("id", Int, Identity(), primary_key=True),
    Column("decision_id", Int, ForeignKey("governance_board_decisions.id"), nullable=False),
    Column("method", Text, nullable=False),
    CheckConstraint("method IN ('cstore','package')"),
    Column("manifest_sha256", Text, nullable=False),
    Column("instance_count", Int, nullable=False),
    Column("executed_by", Text, nullable=False),
    Column("executed_at", Text, nullable=False),
    sqlite_autoincrement=True,
)

closure_transfer_items = Table(
    "governance_closure_transfer_items",
    metadata,
    Column(
        "transfer_id",
        Int,
        ForeignKey("governance_closure_transfers.id"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("case_id", Text, nullable=False),
    Column("sop_instance_uid", Text, primary_key=True),
    Column("sha256", Text, nullable=False),
)

closure_receipts = Table(
    "governance_closure_receipts",
    metadata,
    Column("id", Int, Identity(), primary_key=True),
    Column("transfer_id", Int, ForeignKey("governance_closure_transfers.id"), nullable=False),
    Column("manifest_sha256", Text, nullable=False),
    Column("signed_document_sha256", Text, nullable=False, server_default=""),
    Column("stored_ref", Text, nullable=False, server_default=""),
    Column("received_by", Text, nullable=False),
    Column("organisation", Text, nullable=False),
    Column("received_on", Text, nullable=False),
    Column("recorded_by", Text, nullable=False),
    Column("recorded_at", Text, nullable=False),
    sqlite_autoincrement=True,
)

wipe_confirmations = Table(
    "governance_wipe_confirmations",
    metadata,
    Column("id", Int, Identity(), primary_key=True),
    Column("decision_id", Int, ForeignKey("governance_board_decisions.id"), nullable=False),
    Column("user", Text, nullable=False),
    Column("user_key", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("confirmed_at", Text, nullable=False),
    sqlite_autoincrement=True,
)

wipe_authorisations = Table(
    "governance_wipe_authorisations",
    metadata,
    Column("id", Int, Identity(), primary_key=True),
    Column("decision_id", Int, ForeignKey("governance_board_decisions.id"), nullable=False),
    Column("confirmers", Text, nullable=False),
    Column("authorised_at", Text, nullable=False),
    sqlite_autoincrement=True,
)

wipe_certificates = Table(
    "governance_wipe_certificates",
    metadata,
    Column("id", Int, Identity(), primary_key=True),
    Column(
        "authorisation_id", Int, ForeignKey("governance_wipe_authorisations.id"), nullable=False
    ),
    Column("certificate_sha256", Text, nullable=False),
    Column("signature_hex", Text, nullable=False),
    Column("finalised_at", Text, nullable=False),
    sqlite_autoincrement=True,
)

optout = Table(
    "governance_optout",
    metadata,
    Column("pseudonym_sha256", Text, primary_key=True),
    Column("added_by", Text, nullable=False),
    Column("added_at", Text, nullable=False),
)

withdrawals = Table(
    "governance_withdrawals",
    metadata,
    Column("id", Int, Identity(), primary_key=True),
    Column("pseudonym_sha256", Text, nullable=False),
    Column("kind", Text, nullable=False),
    CheckConstraint("kind IN ('withdrawal','objection')"),
    Column("requested_by", Text, nullable=False),
    Column("recorded_by", Text, nullable=False),
    Column("recorded_at", Text, nullable=False),
    sqlite_autoincrement=True,
)

withdrawn_cases = Table(
    "governance_withdrawn_cases",
    metadata,
    Column(
        "withdrawal_id",
        Int,
        ForeignKey("governance_withdrawals.id"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("case_id", Text, primary_key=True),
    Column("position", Int, nullable=False, server_default="0"),  # step 3: the order given
)

board_member_votes = Table(
    "governance_board_member_votes",
    metadata,
    Column("id", Int, Identity(), primary_key=True),
    Column("decision_id", Int, ForeignKey("governance_board_decisions.id"), nullable=False),
    Column("member", Text, nullable=False),
    Column("member_key", Text, nullable=False),
    Column("counted", Int, nullable=False),
    Column("self_cast", Int, nullable=False),
    Column("note", Text, nullable=False, server_default=""),
    Column("cast_at", Text, nullable=False),
    UniqueConstraint("decision_id", "member_key"),
    sqlite_autoincrement=True,
)

Index("governance_pulls_ws", pulls.c.workstation, pulls.c.pulled_at)

Index("governance_pulls_case", pulls.c.case_id)

Index("governance_withdrawn_case", withdrawn_cases.c.case_id)


# The tables of schema step 1 (step 2 added the members' votes).
STEP_1_TABLES = tuple(t for t in metadata.sorted_tables if t is not board_member_votes)
