"""AccessStore: the access room's stores behind the one object older callers hold.

The room is split by what it holds (archive.access.accounts, .credentials, .nodes,
.watch); new code takes the store it needs (`store.accounts`, `store.credentials`,
`store.nodes`, `store.workstations`). This facade forwards the old method names to them
and goes once its callers do.
"""

from __future__ import annotations

from typing import Any

from argon2 import PasswordHasher

from archive.access.accounts import Accounts
from archive.access.credentials import Credentials
from archive.access.nodes import DicomNodes, Workstations
from archive.access.policy import AccountPolicy
from archive.access.schema import AccessDb


class AccessStore:
    """Accounts, credentials and DICOM nodes over one archive DB connection."""

    def __init__(
        self,
        conn: Any,
        policy: AccountPolicy | None = None,
        hasher: PasswordHasher | None = None,
    ) -> None:
        self.db = AccessDb(conn)
        self.accounts = Accounts(self.db, policy, hasher)
        self.credentials = Credentials(self.accounts)
        self.nodes = DicomNodes(self.db)

    def bind(self, conn: Any) -> AccessStore:
        """The same store on another connection (one per thread), sharing the verified-
        credential cache, its key, the dummy hash and the write lock (Credentials)."""
        other = object.__new__(AccessStore)
        other.db = self.db.bind(conn)
        other.accounts = self.accounts.bind(other.db)
        other.credentials = self.credentials.bind(other.accounts)
        other.nodes = self.nodes.bind(other.db)
        return other

    @property
    def workstations(self) -> Workstations:
        return Workstations(self.db)

    @property
    def conn(self) -> Any:
        return self.db.conn

    def __getattr__(self, name: str) -> Any:
        # Only called for names not found on the facade itself: the old API.
        for part in ("accounts", "credentials", "nodes"):
            target = self.__dict__.get(part)
            if target is not None and hasattr(target, name):
                return getattr(target, name)
        raise AttributeError(f"AccessStore has no attribute {name!r}")
