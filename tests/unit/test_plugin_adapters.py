"""The non-route adapters on tests/fake_orthanc.py: storage, ingest, catalogue sync,
services, vault files and the per-thread notes. Each takes `orthanc` as a parameter."""

from __future__ import annotations

import json
import threading

import pytest

from archive.vault.errors import TamperError
from plugins import catalogue_sync, ingest, storage, uploaders, vault_files
from tests.corpus import make_ct_series, to_bytes
from tests.unit.plugin_fixtures import fake, runtime, services  # noqa: F401

SECRET_NAME = "SECRETFAMILY^GIVEN"


def _dicom() -> bytes:
    return to_bytes(make_ct_series(1, patient=SECRET_NAME, patient_id="PIDSECRET77")[0])


# -- storage ------------------------------------------------------------------------------
def test_storage_encrypts_reads_back_and_forgets(fake, services) -> None:  # noqa: F811
    storage.register(fake, services)
    create, read, remove = fake.storage
    data = _dicom()
    create("0123456789abcdef", 1, data)
    on_disk = services.storage.path_for("0123456789abcdef", 1).read_bytes()
    assert SECRET_NAME.encode() not in on_disk and read("0123456789abcdef", 1) == data
    assert services.ledger().counts()["instances"] == 1
    remove("0123456789abcdef", 1)
    assert services.ledger().counts()["instances"] == 0
    with pytest.raises(FileNotFoundError):
        read("0123456789abcdef", 1)


def test_storage_alerts_on_tampering(fake, services) -> None:  # noqa: F811
    storage.register(fake, services)
    create, read, _ = fake.storage
    create("fedcba9876543210", 2, b'{"summary": true}')
    path = services.storage.path_for("fedcba9876543210", 2)
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(TamperError):
        read("fedcba9876543210", 2)
    assert any("SECURITY ALERT" in line for line in fake.errors)


def test_storage_refuses_a_dicom_file_the_ledger_cannot_read(fake, services) -> None:  # noqa: F811
    storage.register(fake, services)
    create, _, _ = fake.storage
    with pytest.raises(Exception):  # noqa: B017, PT011 - Orthanc answers the sender an error
        create("00112233445566ff", 1, b"not dicom at all")
    assert not services.storage.path_for("00112233445566ff", 1).exists()


# -- ingest -------------------------------------------------------------------------------
def test_ingest_de_identifies_before_anything_is_stored(fake, services) -> None:  # noqa: F811
    ingest.register(fake, services)
    action, data = fake.received(_dicom(), fake.InstanceOrigin.REST_API)
    assert action == fake.ReceivedInstanceAction.MODIFY
    assert data and SECRET_NAME.encode() not in data and b"PIDSECRET77" not in data


def test_ingest_refuses_bad_input_without_raising(fake, services) -> None:  # noqa: F811
    ingest.register(fake, services)
    action, data = fake.received(b"\x00" * 300, fake.InstanceOrigin.DICOM_PROTOCOL)
    assert action == fake.ReceivedInstanceAction.MODIFY  # never KeepAsIs
    assert data in (b"", ingest.REFUSED, b"refused by the teaching archive: not de-identifiable")
    assert fake.errors and "\n" not in fake.errors[-1]


def test_ingest_credits_the_uploader_the_filter_noted(fake, services, monkeypatch) -> None:  # noqa: F811
    from archive.ingest.service import IngestService

    seen = []
    real = IngestService.process
    monkeypatch.setattr(
        IngestService, "process", lambda self, data, **kw: seen.append(kw) or real(self, data, **kw)
    )
    ingest.register(fake, services)
    uploaders.note_uploader("pat")
    fake.received(_dicom(), fake.InstanceOrigin.REST_API)
    uploaders.note_dicom_front("PACS")
    fake.received(_dicom(), fake.InstanceOrigin.REST_API)  # the front's C-STORE
    assert [(k["intake"], k["actor"]) for k in seen] == [("rest", "rest:pat"), ("dicom", None)]
    assert uploaders.take_uploader() is None  # taken by that instance


# -- catalogue sync -----------------------------------------------------------------------
def test_catalogue_sync_fans_out_and_never_raises(fake, services) -> None:  # noqa: F811
    hooks = []
    services.change_hooks.append(lambda *change: hooks.append(change))
    catalogue_sync.register(fake, services)
    fake.rest_api[("Get", "/studies?expand")] = b"[]"
    fake.on_change(fake.ChangeType.ORTHANC_STARTED, 0, "")
    fake.on_change(fake.ChangeType.STABLE_STUDY, 0, "nope")  # RestApiGet refused: logged
    assert [h[0] for h in hooks] == [fake.ChangeType.ORTHANC_STARTED, fake.ChangeType.STABLE_STUDY]
    assert any("study not catalogued" in line for line in fake.errors)


# -- services, vault files, per-thread notes ----------------------------------------------
def test_services_carry_orthanc_and_share_one_credential_cache(fake, services) -> None:  # noqa: F811
    assert services.orthanc is fake
    mine = services.access_store()
    theirs = []
    thread = threading.Thread(target=lambda: theirs.append(services.access_store()))
    thread.start()
    thread.join()
    assert theirs[0] is not mine and theirs[0].conn is not mine.conn
    assert theirs[0].credentials._cache is mine.credentials._cache


def test_vault_files_read_what_storage_wrote(fake, services) -> None:  # noqa: F811
    storage.register(fake, services)
    data = _dicom()
    fake.storage[0]("aaaabbbbccccdddd", 1, data)
    (entry,) = services.ledger().study_files(_study(services))
    assert vault_files.read_entry(services, entry) == data
    assert vault_files.study_files(services, entry.orthanc_study_id) == [(entry, data)]


def _study(services) -> str:  # noqa: F811
    row = services.db().execute("SELECT orthanc_study_id FROM vault_instances").fetchone()
    return row[0]


def test_thread_notes_are_taken_once() -> None:
    uploaders.note_dicom_front("PACS")
    assert uploaders.take_dicom_front() == "PACS"
    assert uploaders.take_dicom_front() is None
    uploaders.note_uploader(None)
    assert uploaders.take_uploader() is None


def test_rest_api_stays_refused_unless_the_test_provides_it(fake) -> None:  # noqa: F811
    with pytest.raises(AssertionError, match="unexpected orthanc.RestApiGet"):
        fake.RestApiGet("/studies")
    fake.rest_api[("Get", "/studies")] = json.dumps([]).encode()
    assert json.loads(fake.RestApiGet("/studies")) == []
