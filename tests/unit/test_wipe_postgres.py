"""The closing wipe of an archive on PostgreSQL (issue 27): headers sampled from the
database store unwrap before, the chain is exported as a file chain that verifies, the
certificate's records are copied out, and every object of the archive's role is dropped
(checked). Runs in its own role and database: DROP OWNED must not touch other tests."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from archive import db
from archive.audit import AuditEvent, audit_log_for, verify
from archive.governance import PullInventory, load_policy
from archive.governance.closure.wipe import _copy_records, _export_chain
from archive.vault import KdfParams, Keyring
from archive.vault.dbstore import storage_for
from archive.vault.keyring import keyring_path
from archive.vault.wipe import (
    crypto_erase,
    database_check,
    drop_database_contents,
    sample_headers,
    unwrap_attempts,
)
from tests.unit.conftest import pg_home_config

FAST = KdfParams(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture
def config(pg_server, tmp_path: Path):
    return pg_home_config(pg_server, tmp_path, "wipe", '[storage]\nkind = "postgresql"\n')


def test_wipe_on_postgresql_erases_exports_and_drops_everything(config, tmp_path):
    home = config.home
    ring = Keyring.create(keyring_path(home.keys_dir), "pass phrase x", kdf=FAST)
    store = storage_for(config, ring)
    for i in range(5):
        store.write(f"{i:08x}-aaaa-bbbb-cccc-dddddddddddd", 1, b"\0" * 128 + b"DICM" + b"x" * 99)
    log = audit_log_for(home, signer=ring.audit_signing_key)
    for i in range(3):
        log.append(AuditEvent("case.edit", "success", "alice", target=f"NSR-{i:06d}"))
    log.checkpoint(ring.audit_signing_key)
    log.close()
    conn = db.open_database(config)
    PullInventory(conn).record_pull("NSR-000001", "ws-01", "alice", datetime.now(UTC))

    samples = sample_headers(store, 3, seed=1)
    assert len(samples) == 3 and unwrap_attempts(samples, [ring]) == 3  # control
    public_hex = ring.audit_public_key_bytes.hex()
    _export_chain(home, tmp_path / "export" / "audit", public_hex)
    exported = verify(tmp_path / "export" / "audit", bytes.fromhex(public_hex))
    assert exported.ok and exported.last_seq == 4, exported.problems
    memory = db.connect(":memory:")
    _copy_records(conn, memory, load_policy(config.policies_dir))
    assert [p["workstation"] for p in PullInventory(memory).pulls()] == ["ws-01"]
    conn.close()
    store.close()

    crypto_erase(home, ring.kek_ids())
    assert not database_check(config).ok  # the check fails while anything is left
    dropped = drop_database_contents(config)
    assert dropped.relations >= 6 and dropped.schemas == 1  # vault_blob, audit_chain, pulls...
    assert dropped.left == {"relations": 0, "schemas": 0, "large_objects": 0}
    assert dropped.rows[f"{config.database.schema}.vault_blob"] == 5
    assert dropped.rows[f"{config.database.schema}.audit_chain"] == 4  # 3 and a checkpoint
    assert config.database.database in dropped.where
    assert "may not CHECKPOINT" in dropped.checkpoint  # a plain role: said, not hidden
    check = database_check(config)
    assert check.ok, check.line()
    assert not keyring_path(home.keys_dir).exists()
