"""`archive transfer identity|peers|export|receipt|mapping` and `archive import PACKAGE`.

Archive-to-archive transfer without loss (issue 25; the format is
archive/transfer/FORMAT.md). The sender builds one signed package, encrypted to the
receiving collection the School Board named; the receiver imports it in one command
(verify, check against its own policy, store unchanged, answer with a signed receipt);
the sender verifies the receipt, which is what the closure certificate then states.
Every act is a person's own (--as NAME with their password, or --token-file),
authorised by archive.core against policies/access/actions.toml and audited once.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from archive.audit import audit_log_for
from archive.cli.api import (
    AsOption,
    PasswordFileOption,
    TokenFileOption,
    api_client,
    authenticated_person,
)
from archive.cli.common import HomeOption, JsonOption, emit_json, fail, load
from archive.core import Ports, Refusal, Refused, Resource, authorise, perform
from archive.errors import ArchiveError
from archive.transfer import store as tstore
from archive.transfer.keys import transfer_keys

PackageArg = Annotated[Path, typer.Argument(help="The transfer package (.tatp).")]


def _now() -> datetime:
    return datetime.now(UTC)


class _Session:
    """The home's database, audit log, keyring and the authenticated person."""

    def __init__(self, home: Path, user, password_file, token_file, *, person: bool = True):
        from archive.access import open_access_store
        from archive.vault import open_keyring_for_cli

        self.home = home
        self.config = load(home)
        if not self.config.home.data_dir.is_dir():
            fail(f"{self.config.home.data_dir} does not exist; run archive init first.")
        try:
            self.store = open_access_store(self.config, self.config.policies_dir)
            self.log = audit_log_for(self.config.home)
        except ArchiveError as exc:
            fail(str(exc))
        self.conn = self.store.conn
        self.principal = None
        if person:
            self.principal = authenticated_person(
                home, self.store, user, password_file, token_file, record=self.log.append
            )
        try:
            self.ring = open_keyring_for_cli(self.config, prompt=False)
        except ArchiveError as exc:
            self.close()
            fail(str(exc))
        self.keys = transfer_keys(self.ring)
        tstore.ensure_schema(self.conn)
        self.ports = Ports(
            db=self.conn, audit=self.log, policies_dir=self.config.policies_dir, source="cli"
        )

    def allow(self, action: str, resource: Resource | None = None) -> None:
        """Refuse before any work is done (perform re-checks when it records)."""
        verdict = authorise(self.ports.actions, self.principal, action, resource)
        if not verdict:
            perform(self.ports, self.principal, action, resource, lambda tx, p: None)
            fail(f"{verdict.reason}. Next: {verdict.next}")

    def perform(self, action: str, act, *, target: str | None = None, **detail) -> Any:
        outcome = perform(
            self.ports, self.principal, action, None, act, target=target, detail=detail
        )
        if isinstance(outcome, Refusal):
            fail(f"{outcome.reason}. Next: {outcome.next}")
        return outcome

    def close(self) -> None:
        self.conn.close()


def _progress(label: str, quiet: bool):
    def show(done: int, total: int) -> None:
        if quiet:
            return
        text = f"{label}: {done}" + (f"/{total}" if total else "")
        sys.stderr.write(f"\r{text}   ")
        if total and done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


class _Done:
    def __init__(self, audit: dict) -> None:
        self._audit = audit

    def audit(self) -> dict:
        return self._audit


def register(app: typer.Typer) -> None:
    sub = typer.Typer(
        help="Archive-to-archive transfer: keys, registered peers, package, signed receipt."
    )
    app.add_typer(sub, name="transfer")
    peers_app = typer.Typer(help="The other archives whose signing keys this one trusts.")
    sub.add_typer(peers_app, name="peers")

    @sub.command("identity")
    def identity_cmd(home: HomeOption, as_json: JsonOption = False) -> None:
        """Print this archive's transfer public keys, for the other archive to register:
        the Ed25519 signing key (and its fingerprint) and the age recipient."""
        session = _Session(home, None, None, None, person=False)
        try:
            out = {
                "signing_key": session.keys.signing_public_hex,
                "fingerprint": session.keys.fingerprint,
                "recipient": session.keys.recipient,
            }
        finally:
            session.close()
        if as_json:
            emit_json(out)
        else:
            typer.echo(f"signing key: {out['signing_key']}\nfingerprint: {out['fingerprint']}")
            typer.echo(f"age recipient: {out['recipient']}")

    @peers_app.command("add")
    def peers_add_cmd(
        organisation: Annotated[str, typer.Argument(help="The other archive's organisation.")],
        home: HomeOption,
        signing_key: Annotated[
            str, typer.Option("--signing-key", help="Its key, from its `transfer identity`.")
        ],
        user: AsOption = None,
        password_file: PasswordFileOption = None,
        token_file: TokenFileOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Register another archive's signing key (compare the fingerprint by telephone)."""
        session = _Session(home, user, password_file, token_file)
        try:

            def act(tx, permit):
                try:
                    peer = tstore.add_peer(tx, organisation, signing_key, session.principal.user)
                except ArchiveError as exc:
                    next_step = "Copy the key from the other archive's `archive transfer identity`."
                    raise Refused(
                        Refusal("transfer.peer.manage", str(exc), next_step, "invalid")
                    ) from None
                return _Done({"fingerprint": peer.fingerprint, "organisation": peer.organisation})

            done = session.perform("transfer.peer.manage", act, target=organisation[:100])
        finally:
            session.close()
        if as_json:
            emit_json(done.audit())
        else:
            typer.echo(f"{done.audit()['organisation']}: key {done.audit()['fingerprint']}")

    @peers_app.command("list")
    def peers_list_cmd(home: HomeOption, as_json: JsonOption = False) -> None:
        """The registered peers and their key fingerprints."""
        from archive import db as dbm

        conn = dbm.open_database(load(home))
        try:
            found = [p.__dict__ for p in tstore.peers(conn)]
        finally:
            conn.close()
        if as_json:
            emit_json(found)
        else:
            for p in found:
                typer.echo(f"{p['organisation']}: {p['fingerprint']}")

    @sub.command("export")
    def export_cmd(
        home: HomeOption,
        out: Annotated[Path, typer.Option("--out", help="New file for the package (.tatp).")],
        user: AsOption = None,
        password_file: PasswordFileOption = None,
        token_file: TokenFileOption = None,
        quiet: Annotated[bool, typer.Option("--quiet", help="No progress on stderr.")] = False,
        as_json: JsonOption = False,
    ) -> None:
        """Build the signed transfer package for the collection the Board named."""
        result = export_package(home, out, user, password_file, token_file, quiet=quiet)
        if as_json:
            emit_json(result)
        else:
            typer.echo(
                f"transfer {result['transfer_id']}: {result['instance_count']} instance(s) of "
                f"{result['case_count']} case(s) packaged for {result['organisation']} in "
                f"{result['package']}; manifest sha256 {result['manifest_sha256']}"
            )

    @sub.command("receipt")
    def receipt_cmd(
        receipt: Annotated[Path, typer.Argument(help="The receiver's signed receipt (JSON).")],
        home: HomeOption,
        user: AsOption = None,
        password_file: PasswordFileOption = None,
        token_file: TokenFileOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Verify the receiver's signed receipt and record it for the closure."""
        result = verify_and_record_receipt(home, receipt, user, password_file, token_file)
        if as_json:
            emit_json(result)
        else:
            typer.echo(result["statement"])

    @sub.command("mapping")
    def mapping_cmd(home: HomeOption, as_json: JsonOption = False) -> None:
        """On a receiving archive: every imported instance, sender case id -> case id."""
        from archive import db as dbm

        conn = dbm.open_database(load(home))
        try:
            rows = tstore.case_mapping(conn)
        finally:
            conn.close()
        if as_json:
            emit_json(rows)
        else:
            for r in rows:
                typer.echo(f"{r['sender_case_id']} -> {r['case_id']} {r['outcome']} {r['reason']}")

    @app.command("import")
    def import_cmd(
        package: PackageArg,
        home: HomeOption,
        receipt_out: Annotated[
            Path, typer.Option("--receipt-out", help="New file for the signed receipt.")
        ],
        organisation: Annotated[
            str, typer.Option("--organisation", help="This (receiving) archive's organisation.")
        ],
        user: AsOption = None,
        password_file: PasswordFileOption = None,
        token_file: TokenFileOption = None,
        quiet: Annotated[bool, typer.Option("--quiet", help="No progress on stderr.")] = False,
        as_json: JsonOption = False,
    ) -> None:
        """Import a transfer package into this running archive: verify, check, store
        unchanged, and write the signed receipt to send back to the sender."""
        result = import_into(
            home, package, receipt_out, organisation, user, password_file, token_file, quiet
        )
        if as_json:
            emit_json(result)
        else:
            typer.echo(
                f"imported {result['stored']} instance(s), held {result['held']} for review "
                f"(listed in the receipt), {len(result['cases'])} case(s), "
                f"{len(result['collections'])} collection(s); signed receipt: {result['receipt']}"
            )
            for item in result["held_items"]:
                typer.echo(f"  held {item['case_id']} {item['sop_instance_uid']}: {item['reason']}")
            for item in result["text_held"]:
                typer.echo(f"  not imported: {item['field']} of {item['sender_case_id']}: "
                           f"{item['reason']}")  # fmt: skip


# -- the sender ----------------------------------------------------------------------------
def export_package(
    home: Path, out: Path, user, password_file, token_file, *, quiet: bool = True
) -> dict[str, Any]:
    from archive.catalogue import Catalogue, load_vocabulary
    from archive.governance import ClosureRecords, Recipients, load_policy
    from archive.transfer.export import gather, instance_reader
    from archive.transfer.package import TransferError, write_package
    from archive.vault.dbstore import storage_for

    session = _Session(home, user, password_file, token_file)
    try:
        session.allow("transfer.export")
        config = session.config
        try:
            policy = load_policy(config.policies_dir)
            records = ClosureRecords(session.conn, policy)
            decision = records.current_decision()
            if decision is None or decision.outcome != "transfer":
                fail(
                    "no School Board decision to transfer the archive is in force; a member "
                    "records it (`archive close decide --outcome transfer`) and enough members "
                    "vote (`archive close vote`)."
                )
            recipient = Recipients(session.conn, policy).get(decision.receiving_recipient_id)
        except ArchiveError as exc:
            fail(str(exc))
        if not (recipient.public_key or "").startswith("age1"):
            fail(
                f"{recipient.organisation} has no age public key (age1...) on record; ask them "
                "for `archive transfer identity` and record it with `archive recipients`."
            )
        peer = tstore.peer_for(session.conn, recipient.organisation)
        if peer is None:
            fail(
                f"{recipient.organisation}'s signing key is not registered, so its receipt could "
                "not be verified; register it: `archive transfer peers add ORGANISATION "
                "--signing-key HEX`."
            )
        from archive.deid import load_policy as load_deid

        deid = load_deid(config.policies_dir)
        catalogue = Catalogue(
            session.conn, config.school_prefix, vocabulary=load_vocabulary(config.policies_dir)
        )
        cases, collections = gather(session.conn, catalogue)
        reader = instance_reader(session.conn, storage_for(config, session.ring))
        try:
            written = write_package(
                out,
                keys=session.keys,
                sender_organisation=config.school_prefix,
                receiver_organisation=recipient.organisation,
                receiver_recipient=recipient.public_key,
                deid={"policy_version": deid.version, "level": deid.level},
                cases=cases,
                collections=collections,
                read_instances=reader,
                progress=_progress("packaging instances", quiet),
            )
        except (TransferError, OSError) as exc:
            fail(f"the package was not written ({exc}); nothing was recorded.")
        try:
            transfer = records.record_transfer(
                [list(r) for r in written.rows],
                "package",
                executed_by=session.principal.user,
                now=_now(),
            )
        except ArchiveError as exc:
            out.unlink(missing_ok=True)
            fail(f"{exc} The package was removed.")

        def act(tx, permit):
            tstore.record_package(
                tx, written, transfer.id, recipient.organisation, session.principal.user
            )
            return _Done(
                {
                    "transfer": transfer.id,
                    "instances": len(written.rows),
                    "envelope_sha256": written.envelope_sha256,
                }
            )

        session.perform("transfer.export", act, target=f"transfer {transfer.id}")
        return {
            "transfer_id": transfer.id,
            "package": str(out),
            "organisation": recipient.organisation,
            "instance_count": len(written.rows),
            "case_count": len(cases),
            "collection_count": len(collections),
            "envelope_sha256": written.envelope_sha256,
            "manifest_sha256": transfer.manifest_sha256,
        }
    finally:
        session.close()


def verify_and_record_receipt(
    home: Path, receipt: Path, user, password_file, token_file
) -> dict[str, Any]:
    from archive.governance import ClosureRecords, load_policy
    from archive.transfer.receipt import read_receipt, verify_receipt

    session = _Session(home, user, password_file, token_file)
    try:
        session.allow("transfer.receipt")
        try:
            document, raw = read_receipt(receipt)
            envelope = str((document.get("receipt") or {}).get("envelope_sha256", ""))
            package = tstore.package_for(session.conn, envelope)
            if package is None:
                fail("this receipt is about no package this archive made; check the file.")
            peer = tstore.peer_for(session.conn, package["organisation"])
            if peer is None:
                fail(f"{package['organisation']}'s signing key is not registered.")
            verified = verify_receipt(
                document,
                raw,
                peer=peer,
                envelope_sha256=package["envelope_sha256"],
                manifest_sha256=str(document["receipt"].get("manifest_sha256", "")),
                sent=package["rows"],
            )
            records = ClosureRecords(session.conn, load_policy(session.config.policies_dir))
            closure_receipt = records.record_receipt(
                package["transfer_id"],
                received_manifest=[list(r) for r in verified.rows],
                received_by=str(verified.body["receiver"].get("organisation", "")),
                organisation=package["organisation"],
                received_on=datetime.fromisoformat(verified.body["issued_at"]).date(),
                signed_document_sha256=verified.receipt_sha256,
                stored_ref=str(receipt),
                recorded_by=session.principal.user,
                now=_now(),
            )
        except ArchiveError as exc:
            _refuse(session, "transfer.receipt", str(exc), "Reconcile with the receiver.",
                    receipt.name[:100])  # fmt: skip
            fail(str(exc))

        def act(tx, permit):
            tstore.record_receipt(
                tx, verified, package["transfer_id"], package["organisation"],
                session.principal.user,
            )  # fmt: skip
            return _Done(
                {"receipt": verified.receipt_sha256, "stored": verified.stored,
                 "held": len(verified.held), "closure_receipt": closure_receipt.id}
            )  # fmt: skip

        session.perform("transfer.receipt", act, target=f"transfer {package['transfer_id']}")
        return {
            "transfer_id": package["transfer_id"],
            "receipt_sha256": verified.receipt_sha256,
            "stored": verified.stored,
            "held": verified.held,
            "cases": verified.body.get("cases", {}),
            "collections": verified.body.get("collections", {}),
            "statement": verified.statement(package["organisation"]),
            "closure_receipt_id": closure_receipt.id,
        }
    finally:
        session.close()


def _refuse(session: _Session, action: str, reason: str, next_step: str, target: str) -> None:
    """Audit a refused act once, through the core (the act raises the refusal)."""

    def act(tx, permit):
        raise Refused(Refusal(action, reason[:300], next_step, "invalid"))

    perform(session.ports, session.principal, action, None, act, target=target)


# -- the receiver --------------------------------------------------------------------------
def import_into(
    home: Path,
    package: Path,
    receipt_out: Path,
    organisation: str,
    user,
    password_file,
    token_file,
    quiet: bool,
) -> dict[str, Any]:
    import hashlib

    from archive.catalogue import Catalogue, load_vocabulary
    from archive.deid import load_policy as load_deid
    from archive.ingest import tickets
    from archive.ingest.pixelstep import check_pixels
    from archive.pixels import load_masking_policy
    from archive.quarantine import QuarantineStore
    from archive.transfer.importer import Receiver, import_package, receipt_body
    from archive.transfer.package import PackageRefused, TransferError, open_package
    from archive.transfer.receipt import sign_receipt
    from archive.vault.dbstore import storage_for
    from archive.vault.ledger import InstanceLedger, read_dicom

    if receipt_out.exists():
        fail(f"{receipt_out} already exists; give a new file for the receipt.")
    session = _Session(home, user, password_file, token_file)
    try:
        session.allow("transfer.import")
        config = session.config
        try:
            opened = open_package(package, session.keys, tstore.peers(session.conn))
        except (PackageRefused, TransferError) as exc:
            _refuse(session, "transfer.import", str(exc), "Ask the sender for a new package.",
                    package.name[:100])  # fmt: skip
            fail(f"the package is refused, nothing was stored: {exc}")
        deid = load_deid(config.policies_dir)
        masking = load_masking_policy(config.policies_dir)
        catalogue = Catalogue(
            session.conn, config.school_prefix, vocabulary=load_vocabulary(config.policies_dir)
        )
        vault = storage_for(config, session.ring)
        ledger = InstanceLedger(session.conn)
        quarantine = QuarantineStore(config.home, session.ring, session.conn)
        key = tickets.derive_ticket_key(session.ring.pseudonym_key)
        user_name = session.principal.user
        envelope = opened.envelope_sha256
        stamp = _now().isoformat(timespec="seconds")
        client = api_client(home, user, password_file, token_file)
        try:  # before anything is written: the instances go through the running archive
            client.get("/teaching/health", timeout=10).raise_for_status()
        except Exception:  # noqa: BLE001
            client.close()
            fail(
                f"the archive at {client.base_url} is not answering; start it with "
                "`archive serve`, then import again (nothing was stored)."
            )

        def pixel_check(data: bytes, consent: str | None) -> str:
            outcome = check_pixels(data, masking, consent_level=consent)
            if outcome.action == "release":
                return ""
            why = "; ".join(outcome.reasons) or "pixel check"
            return f"this archive's pixel check would {outcome.action}: {why}"[:300]

        def upload(data: bytes) -> None:
            try:
                answer = client.post(
                    "/instances", content=data, headers={"Content-Type": "application/dicom"}
                )
            except Exception:  # noqa: BLE001
                raise TransferError(
                    f"the archive at {client.base_url} is not answering; start it with "
                    "`archive serve`, then import again (what is stored stays stored)."
                ) from None
            if answer.status_code != 200:
                raise TransferError(
                    f"the archive refused an instance (HTTP {answer.status_code}); see its log, "
                    "then import again (what is stored stays stored)."
                )

        def stored_sha256(study_uid: str, sop: str) -> str | None:
            for entry in ledger.by_study_uid(study_uid):
                if entry.sop_uid == sop:
                    return hashlib.sha256(read_dicom(vault, entry)).hexdigest()
            return None

        def hold(data: bytes, reason: str, **meta) -> str:
            return quarantine.hold(
                data, reason[:500], raw=False, intake="rest", ingested_by=user_name, **meta
            )

        def record(item: dict) -> None:
            tstore.record_import(
                session.conn,
                {
                    "envelope_sha256": envelope,
                    "sender_fingerprint": opened.sender.fingerprint,
                    "sender_case_id": item["sender_case_id"],
                    "case_id": item["case_id"],
                    "sop_instance_uid": item["sop_instance_uid"],
                    "sha256": item["sha256"],
                    "outcome": item["outcome"],
                    "reason": item["reason"],
                    "review": json.dumps(item["review"], sort_keys=True)
                    if item.get("review")
                    else "",
                    "imported_by": user_name,
                    "imported_at": stamp,
                },
            )

        receiver = Receiver(
            catalogue=catalogue,
            prefix=config.school_prefix,
            level=deid.level,
            pixel_check=pixel_check,
            mint_ticket=lambda sop, data: tickets.mint(
                session.conn,
                key,
                item_id=f"{tickets.IMPORT_PREFIX}{envelope[:24]}",
                sop_uid=sop,
                data=data,
                reviewer=user_name,
            ),  # fmt: skip
            upload=upload,
            stored_sha256=stored_sha256,
            hold=hold,
            held_sha256=lambda item: hashlib.sha256(quarantine.read(item)).hexdigest(),
            record=record,
            editor=user_name,
            progress=_progress("importing instances", quiet),
            record_consent=lambda study, level: quarantine.record_consent(
                study, level, user_name, f"transfer from {opened.sender.organisation}"[:200]
            ),
        )
        try:
            try:
                result = import_package(opened, receiver)
            finally:
                client.close()
        except (ArchiveError, OSError) as exc:
            _refuse(session, "transfer.import", str(exc), "Ask the sender for a new package.",
                    package.name[:100])  # fmt: skip
            fail(str(exc))
        signed = sign_receipt(
            receipt_body(opened, result, session.keys, organisation), session.keys
        )
        data = json.dumps(signed, indent=2, sort_keys=True).encode()
        fd = os.open(receipt_out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)

        def act(tx, permit):
            return _Done(
                {"sender": opened.sender.organisation[:100], "stored": result.stored,
                 "held": result.held, "cases": len(result.cases),
                 "receipt_sha256": hashlib.sha256(data).hexdigest()}
            )  # fmt: skip

        session.perform("transfer.import", act, target=f"package {envelope[:16]}")
        return {
            "stored": result.stored,
            "held": result.held,
            "held_items": [i for i in result.items if i["outcome"] == "held"],
            "cases": result.cases,
            "collections": result.collections,
            "text_held": result.text_held,
            "receipt": str(receipt_out),
            "receipt_sha256": hashlib.sha256(data).hexdigest(),
            "sender": opened.sender.organisation,
        }
    finally:
        session.close()
