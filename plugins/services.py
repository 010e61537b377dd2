"""What the adapters share inside Orthanc: the runtime and the domain services built on it.

Built once at plugin start; every adapter's `register(orthanc, services)` takes it, and
it carries the `orthanc` module too (`services.orthanc`) for the shared glue that
registers callbacks (plugins/rest.py `route`). Properties are lazy so an adapter only
pays for what it uses, and per-thread database connections come from the runtime
(Orthanc calls back from many threads).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from archive.runtime import Runtime

# Audit appends inside Orthanc are queued and written (one write, one fsync, one head
# update) at most this many seconds later, so auditing every HTTP request and every
# instance stays cheap; see archive.audit.log.AuditLog for the crash window.
AUDIT_GROUP_COMMIT_SECONDS = 0.05


@dataclass
class Services:
    runtime: Runtime
    # The orthanc module (or tests/fake_orthanc.FakeOrthanc), handed in by the bootstrap.
    orthanc: Any = None
    # Called with (change_type, level, resource_id) for every Orthanc change; the single
    # OnChange callback (plugins/catalogue_sync.py) fans out to them.
    change_hooks: list = field(default_factory=list)

    _connections: dict = field(default_factory=dict, repr=False)
    _access_stores: dict = field(default_factory=dict, repr=False)
    _ledgers: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.runtime.audit.enable_group_commit(AUDIT_GROUP_COMMIT_SECONDS)

    @property
    def config(self):
        return self.runtime.config

    @property
    def home(self):
        return self.runtime.config.home

    def record(self, event) -> int:
        return self.runtime.record(event)

    def db(self):
        """This OS thread's connection to the archive DB, kept for the thread's life.

        Not threading.local: orthanc-python creates a fresh Python thread state for each
        callback and drops it afterwards, so thread-local data (and a connection kept
        there) would be lost after every request - measured: a new sqlite connection per
        HTTP request. The OS thread id survives across callbacks on Orthanc's pooled
        threads. (A dead thread's id may be reused by a new thread: it then inherits an
        idle connection, which is harmless - connections are made with
        check_same_thread=False, and PostgreSQL connections lock per statement.)
        SQLite or PostgreSQL as [database] says (archive.db.open_database); on
        PostgreSQL that is one server connection per Orthanc thread using the archive
        DB, which ops/SCALE-OUT.md sizes max_connections for.
        """
        ident = threading.get_ident()
        conn = self._connections.get(ident)
        if conn is None:
            from archive import db

            conn = db.open_database(self.config)
            self._connections[ident] = conn
        return conn

    @cached_property
    def deid_policy(self):
        from archive.deid import load_policy

        return load_policy(self.config.policies_dir)

    @cached_property
    def deid_secrets(self):
        from archive.deid import DeidSecrets

        return DeidSecrets(pseudonym_key=self.runtime.keyring.pseudonym_key)

    def ledger(self):
        """The vault's instance ledger on this thread's connection."""
        ident = threading.get_ident()
        ledger = self._ledgers.get(ident)
        if ledger is None:
            from archive.vault.ledger import InstanceLedger

            ledger = InstanceLedger(self.db())
            self._ledgers[ident] = ledger
        return ledger

    def quarantine(self):
        """A quarantine store on this thread's connection."""
        from archive.quarantine import QuarantineStore

        return QuarantineStore(self.home, self.runtime.keyring, self.db())

    @cached_property
    def storage(self):
        from archive.vault.dbstore import storage_for

        return storage_for(self.config, self.runtime.keyring, connection=self.db)

    @cached_property
    def _access_root(self):
        """One AccessStore built once (migrations, account policy, credential cache)."""
        from archive.access import open_access_store
        from archive.access.watch import ChangeWatch

        store = open_access_store(self.config, self.config.policies_dir)
        store.watch_changes(ChangeWatch(self.config))
        return store

    @cached_property
    def route_policy(self):
        from archive.access import load_route_policy

        return load_route_policy(self.config.policies_dir)

    def access_store(self):
        """The access room's store on this thread's connection, sharing one credential
        cache across threads (so a verified password is not re-hashed per request)."""
        ident = threading.get_ident()
        store = self._access_stores.get(ident)
        if store is None:
            store = self._access_root.bind(self.db())
            self._access_stores[ident] = store
        return store
