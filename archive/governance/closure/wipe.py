"""The irreversible wipe of a closing suite (issue 10, 25): the closure room's workflow.

Runs on a stopped archive only, and only through the governance gate
(ClosureRecords.check_wipe_allowed) with every workstation that received pulls attested
wiped. Because the audit log lives under the data directory the wipe deletes, it is
exported (with its public key) FIRST; every later step is audited to the exported copy.
The audit signing key stays in this process's memory only, to sign the certificate at
the end of the same run. Then: crypto-erase, delete the ciphertext, unmount and destroy
the volume, remove every key file (https.pem included), check that nothing remains
(saying what was checked), and sign the certificate, whose "data backed up" line states
only what a verified signed receipt says.

The CLI (`archive close wipe`) decodes its options, calls `carry_out_wipe` and encodes
the answer or the refusal; nothing here exits the process.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from archive import __version__, db
from archive.audit import AuditError, AuditEvent, AuditLog, audit_log_for, verify
from archive.closure.auditing import hash_for_audit
from archive.config import ArchiveConfig
from archive.errors import ArchiveError
from archive.governance import (
    ClosureRecords,
    Media,
    Person,
    PullInventory,
    Recipients,
    SanitizationStep,
    Tool,
    Verification,
    WipeCertificate,
    default_steps,
    load_policy,
)
from archive.serve.server import HomeLock
from archive.transfer.store import verified_receipt_statement
from archive.vault import open_keyring_for_cli
from archive.vault.dbstore import storage_for
from archive.vault.keyring import Keyring
from archive.vault.passphrase import obtain_passphrase
from archive.vault.wipe import (
    DatabaseDrop,
    check_nothing_remains,
    crypto_erase,
    database_check,
    delete_ciphertext,
    destroy_volume,
    drop_database_contents,
    key_locations,
    remove_leftovers,
    sample_headers,
    unmount_volume,
    unwrap_attempts,
)

CERT_JSON = "certificate.json"
CERT_TEXT = "certificate.txt"
PUBLIC_KEY_FILE = "audit_public_key.hex"


class WipeRefused(ArchiveError):
    """The wipe stopped (before anything was destroyed, unless the message says so)."""


def _fail(message: str):
    raise WipeRefused(message)


def _now() -> datetime:
    return datetime.now(UTC)


def carry_out_wipe(
    config: ArchiveConfig,
    export_dir: Path,
    performed_by: str,
    validated_by: str,
    title: str,
    validator_title: str,
    organisation: str,
    canaries: list[bytes],
    operator: str,
) -> dict[str, Any]:
    """The irreversible wipe (see the module doc); raises WipeRefused, saying what to do,
    at any point where it must stop. `operator` is the machine operator running it."""

    def _audit(log: AuditLog, action: str, outcome: str, target: str | None = None, **detail):
        try:
            log.append(
                AuditEvent(
                    action, outcome, operator, (), source="cli", target=target, detail=detail
                ),  # fmt: skip
                sync=True,
            )
        except AuditError as exc:
            if outcome == "success":
                raise WipeRefused(
                    f"the audit log refused the record ({exc}); nothing more was done."
                ) from None

    paths = config.home
    holder = HomeLock.holder(paths.lock_file)
    if holder is not None:
        _fail(f"`archive serve` (pid {holder}) holds this home; stop the archive, then wipe.")
    export_dir = export_dir.resolve()
    if export_dir.is_relative_to(paths.root.resolve()):
        _fail("--export-dir must be outside the home: the wipe deletes the home's data.")
    if export_dir.exists() and any(export_dir.iterdir()):
        _fail(f"{export_dir} is not empty; give a new directory for the export.")
    now = _now()
    policy = load_policy(config.policies_dir)
    shared = config.database.shared  # PostgreSQL: every node must be stopped too
    conn = db.open_database(config) if shared else db.connect(paths.db_path)
    live = audit_log_for(paths)
    try:
        records = ClosureRecords(conn, policy)
        pulls = PullInventory(conn)
        try:
            records.check_wipe_allowed(now)
        except ArchiveError as exc:
            _audit(live, "closure.wipe", "denied", reason=str(exc)[:300])
            _fail(str(exc))
        pending = pulls.workstations_needing_wipe()
        if pending:
            reason = f"workstation(s) not attested wiped: {', '.join(pending)}"
            _audit(live, "closure.wipe", "denied", reason=reason)
            _fail(f"the wipe is refused: {reason}; attest them with "
                 "`archive close attest-workstation` (the certificate needs them).")  # fmt: skip
        nodes_wiped: list[dict[str, str]] = []
        if shared:  # issue 27: every home that joined from another host is wiped first
            joined, nodes_wiped = joined_nodes(paths)
            if node_identity(config) in joined:
                _fail(
                    "this home joined the archive from another host: run `archive close "
                    "wipe-node` here, and `archive close wipe` on the archive's first home."
                )
            done = {(n["http"], n["dicom"]) for n in nodes_wiped}
            left = [f"http {h}, dicom {d}" for h, d in joined if (h, d) not in done]
            if left:
                reason = f"node home(s) on other hosts not wiped: {'; '.join(left)}"
                _audit(live, "closure.wipe", "denied", reason=reason)
                _fail(f"the wipe is refused: {reason}; run `archive close wipe-node` on each "
                      "(stopped) first: each holds a copy of the keyring.")  # fmt: skip
        try:
            ring = open_keyring_for_cli(config)
            passphrase = obtain_passphrase(config, prompt=False)
        except ArchiveError as exc:
            _fail(str(exc))
        signing_key = ring.audit_signing_key  # memory only, for the certificate
        public_hex = ring.audit_public_key_bytes.hex()
        kek_ids = ring.kek_ids()
        try:
            samples = sample_headers(storage_for(config, ring))
        except Exception:  # noqa: BLE001 - the positive control must work before we destroy
            _fail("the live keyring does not unwrap a sampled file; investigate before wiping.")
        auth = records.authorise_wipe(now)
        decision = records.current_decision()
        assert decision is not None
        recipient = (
            Recipients(conn, policy).get(decision.receiving_recipient_id)
            if decision.receiving_recipient_id is not None
            else None
        )
        # The records the certificate needs, kept in memory: the database is ciphertext's
        # neighbour under data/ and goes in step 2.
        memory = db.connect(":memory:")
        if shared:
            _copy_records(conn, memory, policy)
        else:
            conn.backup(memory.raw)
        _audit(live, "closure.wipe", "success", f"authorisation {auth.id}", stage="authorised",
               confirmers=",".join(auth.confirmers), samples=len(samples))  # fmt: skip
        # Export the audit log and its public key FIRST: they outlive the archive.
        live.checkpoint(signing_key)
        export_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if shared:
            _export_chain(paths, export_dir / "audit", public_hex)
        else:
            shutil.copytree(paths.audit_dir, export_dir / "audit")
        (export_dir / PUBLIC_KEY_FILE).write_text(public_hex + "\n")
        report = verify(export_dir / "audit", bytes.fromhex(public_hex))
        if not report.ok:
            _fail("the exported audit log does not verify; nothing was wiped: "
                 + "; ".join(report.problems)[:300])  # fmt: skip
    finally:
        conn.close()
        live.close()
    log = AuditLog(export_dir / "audit", signer=signing_key)
    _audit(log, "closure.wipe", "success", stage="audit_exported", to=str(export_dir))
    # 1. crypto-erase, 2. delete ciphertext, 3. destroy the volume.
    del ring
    wipe = crypto_erase(paths, kek_ids)
    _audit(log, "closure.wipe", "success", stage="crypto_erase",
           keys=len(kek_ids), files=len(wipe.key_files_destroyed))  # fmt: skip
    delete_ciphertext(paths, wipe)
    _audit(log, "closure.wipe", "success", stage="delete_ciphertext",
           files=wipe.files_deleted, bytes=wipe.bytes_deleted)  # fmt: skip
    dropped: DatabaseDrop | None = None
    if shared:  # the index, the archive's tables and the attachments' rows
        try:
            dropped = drop_database_contents(config)
        except Exception as exc:  # noqa: BLE001 - say it, with what to do
            _audit(log, "closure.wipe", "failure", stage="drop_database", reason=str(exc)[:300])
            _fail(f"the keys are destroyed but the database could not be emptied ({exc}); "
                  "check PostgreSQL, then run the wipe again to finish.")  # fmt: skip
        _audit(log, "closure.wipe", "success", stage="drop_database",
               relations=dropped.relations, schemas=dropped.schemas,
               large_objects=dropped.large_objects, left=sum(dropped.left.values()))  # fmt: skip
    try:  # issue 25: the mount must not stay in place over a deleted directory
        unmount_volume(paths, wipe)
    except ArchiveError as exc:
        _audit(log, "closure.wipe", "failure", stage="unmount", reason=str(exc)[:300])
        _fail(f"{exc} The keys are destroyed; unmount, then run the wipe again to finish.")
    destroy_volume(paths, wipe)
    _audit(log, "closure.wipe", "success", stage="destroy_volume", volume=wipe.volume,
           unmounted=wipe.unmounted or "not mounted")  # fmt: skip
    remove_leftovers(paths, wipe)  # https.pem and every other key file, config, logs
    _audit(log, "closure.wipe", "success", stage="remove_leftovers",
           key_files=len(wipe.key_files_destroyed))  # fmt: skip
    # Verification.
    left_keys = [str(p) for p in key_locations(paths) if p.exists()]
    reopened = []
    for p in key_locations(paths):
        try:
            reopened.append(Keyring.open(p, passphrase))
        except Exception:  # noqa: BLE001, S112 - gone or unreadable: what we want
            continue
    opened = unwrap_attempts(samples, reopened)
    checks = check_nothing_remains(paths, canaries)  # says what it checked (issue 25)
    if shared:
        checks.append(database_check(config))
    passed = not left_keys and opened == 0 and all(c.ok for c in checks) and bool(samples)
    details = (
        f"{len(samples)} sampled header(s) unwrapped by the live keyring before, by no key "
        f"after ({opened}); " + "; ".join(c.line() for c in checks)
    )
    _audit(log, "closure.wipe", "success" if passed else "failure", stage="verify",
           details=details[:500])  # fmt: skip
    if not passed:
        _fail(f"verification FAILED ({details}); no certificate was signed.")
    # Certificate (signed now: the audit key dies with this process).
    # Issue 25: only what a signed receipt this archive verified says, never our word.
    backed_up = "No: the School Board decided to destroy the archive"
    if recipient is not None:
        backed_up = verified_receipt_statement(memory) or (
            f"Not verified: a receipt from {recipient.organisation} was recorded, but no "
            "signed receipt was verified (`archive transfer receipt`)"
        )
    media = [
        Media(
            "Encrypted archive files (vault)",
            f"teaching archive home {paths.root}",
            str(paths.data_dir),
            data_backed_up=backed_up,
            backup_location=recipient.organisation if recipient else "",
        ),  # fmt: skip
        Media(
            "Key-encryption keys and keyring backups",
            "archive vault",
            ", ".join(wipe.key_files_destroyed) or "keyring",
            data_backed_up="No",
        ),  # fmt: skip
    ]
    if wipe.volume != "none":
        media.append(Media("Encrypted volume", "gocryptfs", str(paths.volume_dir),
                           data_backed_up="No"))  # fmt: skip
    steps = default_steps(
        keys_destroyed=len(kek_ids), files_deleted=wipe.files_deleted, volume=wipe.volume
    )
    notes = ""
    if dropped is not None:
        media.append(
            Media(
                f"PostgreSQL database (archive's role {config.database.user})",
                "the archive's database server",
                dropped.where,
                data_backed_up=backed_up,
                backup_location=recipient.organisation if recipient else "",
            )
        )
        steps = (*steps, database_step(dropped))
        notes = DATABASE_NOTE
    for node in nodes_wiped:
        media.append(Media("Node home on another host (keyring copy, quarantine files, logs)",
                           f"node http {node['http']}, dicom {node['dicom']}",
                           node.get("home", "") or "its home", data_backed_up="No"))  # fmt: skip
    if nodes_wiped:
        steps = (*steps, SanitizationStep(
            "Purge", "Cryptographic Erase of joined nodes' keyring copies",
            f"{len(nodes_wiped)} node home(s) on other hosts wiped first by `archive close "
            "wipe-node` (keyring copy destroyed, data, quarantine, volume and key files "
            "deleted, checked), each recorded signed in the audit chain",
        ))  # fmt: skip
    mem_pulls = PullInventory(memory)
    attestations = tuple(a.to_dict() for a in mem_pulls.latest_attestations().values())
    certificate = WipeCertificate(
        certificate_id=f"closure-{decision.id}-{auth.id}",
        performed_by=Person(performed_by, title, organisation),
        media=tuple(media),
        steps=steps,
        notes=notes,
        **({"post_sanitization_classification": DATABASE_CLASSIFICATION} if dropped else {}),
        tool=Tool("teaching-archive `archive close wipe`", __version__),
        verification=Verification("Quick Sampling", "passed", details),
        sanitized_at=_now(),
        validated_by=Person(validated_by, validator_title, organisation),
        decision_reference=f"School Board minute {decision.minute_reference} ({decision.outcome})",
        workstation_attestations=_json_safe(attestations),
    )
    try:
        signed = ClosureRecords(memory, policy).finalise_certificate(
            certificate, signing_key.sign, pulls=mem_pulls, now=_now()
        )
    except ArchiveError as exc:
        _audit(log, "closure.certificate", "failure", reason=str(exc)[:300])
        _fail(f"the data is wiped but the certificate was refused: {exc}")
    (export_dir / CERT_JSON).write_text(signed.to_json())
    (export_dir / CERT_TEXT).write_text(signed.text)
    _audit(log, "closure.certificate", "success", certificate.certificate_id,
           sha256=hash_for_audit(signed.sha256))  # fmt: skip
    log.checkpoint(signing_key)  # the certificate's hash is covered by the last checkpoint
    del signing_key
    return {
        "keys_destroyed": len(kek_ids),
        "key_files_destroyed": wipe.key_files_destroyed,
        "files_deleted": wipe.files_deleted,
        "bytes_deleted": wipe.bytes_deleted,
        "volume": wipe.volume,
        "database": dropped.as_dict() if dropped is not None else None,
        "nodes_wiped": nodes_wiped,
        "verification": "passed",
        "verification_details": details,
        "certificate": str(export_dir / CERT_JSON),
        "certificate_sha256": signed.sha256,
        "export_dir": str(export_dir),
    }


def _json_safe(items: tuple[dict, ...]) -> tuple[dict, ...]:
    return tuple(json.loads(json.dumps(a, default=str)) for a in items)


def _export_chain(paths: Any, target: Path, public_hex: str) -> None:
    """The audit chain in PostgreSQL written out as a file chain (audit/FORMAT.md
    sections 2 and 8: the same lines), with its head and public key."""
    from archive.audit import home_chain  # noqa: PLC0415
    from archive.audit.log import FORMAT_VERSION, HEAD_NAME, LOG_NAME, PUBLIC_KEY_NAME

    chain = home_chain(paths)
    assert chain is not None
    read = chain.read()
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    (target / LOG_NAME).write_bytes(b"".join(line + b"\n" for line in read.lines))
    head: dict[str, Any] = {"format": FORMAT_VERSION, "seq": 0, "hash": "0" * 64}
    if read.head is not None:
        head.update(seq=read.head.seq, hash=read.head.hash)
        if read.head.checkpoint:
            head["checkpoint"] = read.head.checkpoint
    (target / HEAD_NAME).write_text(json.dumps(head, sort_keys=True))
    (target / PUBLIC_KEY_NAME).write_text(public_hex + "\n")


def _copy_records(conn: Any, memory: Any, policy: Any) -> None:
    """The records the certificate needs, from PostgreSQL into `memory` (the database is
    dropped before the certificate is made): the closure, pulls and transfer rooms'
    tables, created there by the rooms themselves (then read back by reflection), rows
    copied column by column from the tables of the same names."""
    from sqlalchemy import MetaData, column, func, select  # noqa: PLC0415
    from sqlalchemy import table as table_of  # noqa: PLC0415
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert  # noqa: PLC0415

    from archive.transfer.store import ensure_schema as transfer_schema  # noqa: PLC0415

    ClosureRecords(memory, policy)
    PullInventory(memory)
    transfer_schema(memory)
    created = MetaData()
    created.reflect(bind=memory._sa)  # the in-memory SQLite file the rooms just set up
    for table in created.sorted_tables:
        if table.name == "schema_steps":
            continue
        if conn.execute(select(func.to_regclass(table.name))).scalar() is None:
            continue  # that room never wrote on this archive
        names = [c.name for c in table.columns]
        source = table_of(table.name, *[column(n) for n in names])
        rows = conn.execute(select(*[source.c[n] for n in names])).fetchall()
        if rows:
            memory.execute(
                sqlite_insert(table).prefix_with("OR REPLACE"),
                [dict(zip(names, row, strict=True)) for row in rows],
            )


# -- PostgreSQL (issue 27): what the certificate says, and the homes on other hosts ------
DATABASE_NOTE = (
    "PostgreSQL: the archive's role's objects were dropped (DROP OWNED ... CASCADE), so "
    "PostgreSQL unlinked their files; they were not overwritten. Copies of the dropped "
    "rows may remain in the server's WAL (pg_wal and any WAL archive), its replicas and "
    "base backups, and the free blocks of its disk: the attachments there are ciphertext "
    "under the destroyed keys; the de-identified index, catalogue and audit rows are not "
    "encrypted. Their sanitization is the database operator's step (drop the cluster, "
    "Purge or Destroy its storage and backups), certified separately."
)


# "No recoverable data" would overclaim while the server's WAL may hold dropped rows.
DATABASE_CLASSIFICATION = (
    "Unclassified (no recoverable data) for the archive's home, keys and volume; the "
    "database server's storage stays OFFICIAL-SENSITIVE until its operator's step (Notes)"
)


def database_step(dropped: DatabaseDrop) -> SanitizationStep:
    """The certificate's line for the database: what was counted, dropped and left."""
    rows = ", ".join(f"{name} {count}" for name, count in sorted(dropped.rows.items()))
    return SanitizationStep(
        "Clear",
        "Drop the database role's objects",
        f"DROP OWNED BY the archive's role CASCADE in the {dropped.where}: "
        f"{dropped.relations} relation(s), {dropped.schemas} schema(s), "
        f"{dropped.large_objects} large object(s) dropped; rows before: {rows or 'none'}; "
        f"left after: {sum(dropped.left.values())}; files unlinked by PostgreSQL, not "
        f"overwritten ({dropped.checkpoint})",
    )


def node_identity(config: ArchiveConfig) -> tuple[str, str]:
    """A home's node as `archive node join` records it: its HTTP and DICOM addresses."""
    return (f"{config.http.host}:{config.http.port}", f"{config.dicom.host}:{config.dicom.port}")


def joined_nodes(paths: Any) -> tuple[list[tuple[str, str]], list[dict[str, str]]]:
    """From the shared audit chain: the homes that joined from other hosts (node.join),
    and those whose wipe-node finished and verified (closure.node_wipe, stage wiped)."""
    from archive.audit import audit_source  # noqa: PLC0415
    from archive.audit.query import iter_records  # noqa: PLC0415

    joined: list[tuple[str, str]] = []
    wiped: list[dict[str, str]] = []
    for record in iter_records(audit_source(paths)):
        detail = record.get("detail") or {}
        if record.get("outcome") != "success":
            continue
        if record.get("action") == "node.join":
            node = (str(detail.get("http", "")), str(detail.get("dicom", "")))
            if node not in joined:
                joined.append(node)
        elif record.get("action") == "closure.node_wipe" and detail.get("stage") == "wiped":
            wiped.append({k: str(detail.get(k, "")) for k in ("http", "dicom", "home")})
    return joined, wiped


def carry_out_node_wipe(config: ArchiveConfig, operator: str) -> dict[str, Any]:
    """Wipe a home that joined the archive from another host (issue 27), before the
    archive's own wipe: its keyring copy (and known backups), its data directory
    (quarantine files, head.json, lost+found), its volume, its key files and logs. The
    shared database is left for `archive close wipe` on the first home. Allowed only
    through the same gate as the wipe (a Board decision in force, the receipt, two
    confirmations), on a stopped node; the result, checks included, is appended, signed,
    to the shared audit chain, where the final wipe looks for it."""
    import tempfile  # noqa: PLC0415

    from archive.audit.pgchain import PgAuditLog  # noqa: PLC0415

    paths = config.home
    holder = HomeLock.holder(paths.lock_file)
    if holder is not None:
        _fail(f"`archive serve` (pid {holder}) holds this home; stop this node, then wipe it.")
    if not config.database.shared:
        _fail("this home is not on PostgreSQL: it joined no archive. Use `archive close wipe`.")
    node = node_identity(config)
    identity = {"http": node[0], "dicom": node[1], "home": str(paths.root)}

    def _refuse(reason: str, message: str):
        """A refused wipe-node is recorded too (unsigned, as the wipe's own refusals)."""
        try:
            live = audit_log_for(paths)
            try:
                live.append(AuditEvent("closure.node_wipe", "denied", operator, (), source="cli",
                                       detail={**identity, "reason": reason[:300]}),
                            sync=True)  # fmt: skip
            finally:
                live.close()
        except Exception:  # noqa: BLE001, S110 - the refusal stands whether or not it is logged
            pass
        _fail(message)

    joined, wiped = joined_nodes(paths)
    if node not in joined:
        _refuse(
            "not a joined node",
            f"no node joined the archive as http {node[0]}, dicom {node[1]}: this is the "
            "archive's first home (or another); wipe it last with `archive close wipe`.",
        )
    now = _now()
    conn = db.open_database(config)
    try:
        ClosureRecords(conn, load_policy(config.policies_dir)).check_wipe_allowed(now)
    except ArchiveError as exc:
        conn.close()
        _refuse(str(exc), str(exc))
    else:
        conn.close()
    try:
        ring = open_keyring_for_cli(config)
        passphrase = obtain_passphrase(config, prompt=False)
    except ArchiveError as exc:
        _fail(str(exc))
    signing_key, kek_ids = ring.audit_signing_key, ring.kek_ids()
    del ring
    head_dir = Path(tempfile.mkdtemp(prefix="node-wipe-"))  # its head.json: not in the home
    log = PgAuditLog(head_dir, lambda: db.open_database(config), signer=signing_key)
    try:

        def _audit(outcome: str, **detail: Any) -> None:
            try:
                log.append(AuditEvent("closure.node_wipe", outcome, operator, (), source="cli",
                                      detail={**identity, **detail}), sync=True)  # fmt: skip
            except AuditError as exc:
                raise WipeRefused(
                    f"the audit chain refused the record ({exc}); "
                    "check PostgreSQL, then run wipe-node again."
                ) from None

        _audit("success", stage="authorised")
        wipe = crypto_erase(paths, kek_ids)
        delete_ciphertext(paths, wipe)  # quarantine files, head.json, lost+found
        try:
            unmount_volume(paths, wipe)
        except ArchiveError as exc:
            _audit("failure", stage="unmount", reason=str(exc)[:300])
            _fail(f"{exc} The keyring copy is destroyed; unmount, then run wipe-node again.")
        destroy_volume(paths, wipe)
        remove_leftovers(paths, wipe)
        reopened = 0
        for location in key_locations(paths):
            try:
                Keyring.open(location, passphrase)
                reopened += 1
            except Exception:  # noqa: BLE001, S112 - gone or unreadable: what we want
                continue
        checks = check_nothing_remains(paths)
        passed = reopened == 0 and all(c.ok for c in checks)
        details = f"keyrings still opening: {reopened}; " + "; ".join(c.line() for c in checks)
        _audit("success" if passed else "failure", stage="wiped" if passed else "verify",
               keys=len(kek_ids), files=wipe.files_deleted, details=details[:500])  # fmt: skip
        if not passed:
            _fail(f"verification FAILED ({details}); run wipe-node again after fixing it.")
    finally:
        log.close()
        shutil.rmtree(head_dir, ignore_errors=True)
    return {
        "node": identity,
        "keys_destroyed": len(kek_ids),
        "key_files_destroyed": wipe.key_files_destroyed,
        "files_deleted": wipe.files_deleted,
        "volume": wipe.volume,
        "verification": "passed",
        "verification_details": details,
    }
