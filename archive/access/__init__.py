"""Named users, roles, training, credentials and the deny-by-default access decisions.

Domain only: the Orthanc plugin calls `authenticate_headers` and `decide` from its HTTP
filter and `dicom_decision` from its DICOM callbacks, and audits the results with
`auth_event` / `decision_event` / `dicom_event`.
"""

from __future__ import annotations

from pathlib import Path

from archive.access.accounts import AccessError, Accounts, TrainingRecord, User
from archive.access.credentials import Credentials, TokenInfo
from archive.access.decide import CachedDecider, Decision, decide, split_uri
from archive.access.dicom import dicom_decision
from archive.access.events import auth_event, decision_event, dicom_event
from archive.access.facade import AccessStore
from archive.access.headers import authenticate_headers
from archive.access.nodes import DicomNode, DicomNodes, Workstation, Workstations
from archive.access.policy import (
    ROLES,
    AccountPolicy,
    PolicyError,
    RoutePolicy,
    load_account_policy,
    load_route_policy,
    parse_account_policy,
    parse_route_policy,
)
from archive.access.principal import FAILURE_REASONS, AuthFailure, Principal
from archive.config import ArchiveConfig
from archive.db import connect, open_database

__all__ = [
    "FAILURE_REASONS",
    "ROLES",
    "AccessError",
    "AccessStore",
    "AccountPolicy",
    "Accounts",
    "AuthFailure",
    "CachedDecider",
    "Credentials",
    "Decision",
    "DicomNode",
    "DicomNodes",
    "PolicyError",
    "Principal",
    "RoutePolicy",
    "TokenInfo",
    "TrainingRecord",
    "User",
    "Workstation",
    "Workstations",
    "auth_event",
    "authenticate_headers",
    "decide",
    "decision_event",
    "dicom_decision",
    "dicom_event",
    "load_account_policy",
    "load_route_policy",
    "open_access_store",
    "parse_account_policy",
    "parse_route_policy",
    "split_uri",
]


def open_access_store(db: Path | ArchiveConfig, policies_dir: Path) -> AccessStore:
    """Connect to the archive DB, migrate the access tables, load the account policy.

    `db` is the archive's configuration (SQLite or PostgreSQL, as it says) or the path
    of a SQLite archive.db."""
    conn = open_database(db) if isinstance(db, ArchiveConfig) else connect(db)
    return AccessStore(conn, load_account_policy(policies_dir))
