"""Direct I/O on a retrieving association (archive/dicom/send.py): the sending thread
writes the C-STORE's PDUs and reads the answer itself, byte for byte as pynetdicom would,
and anything else the peer sends still reaches pynetdicom."""

from __future__ import annotations

import threading
from io import BytesIO

import pytest
from pynetdicom import AE, evt
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_CANCEL, C_STORE
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.pdu_primitives import P_DATA

from archive.dicom.send import (
    IMPLICIT,
    enable_direct,
    install_direct_io,
    install_prepared_store,
    patch_head,
    pdata_pdus,
    pending_command,
    prepared_dataset,
    prepared_instance,
    split_file,
    store_answer,
    store_command,
)
from tests.corpus import make_ct_series, to_bytes
from tests.unit.test_dicom_send import Peer

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"


def _pynetdicom_bytes(primitive: C_STORE, context_id: int, max_pdu: int) -> bytes:
    message = C_STORE_RQ()
    message.primitive_to_message(primitive)
    out = b""
    for pdata in message.encode_msg(context_id, max_pdu):
        assert isinstance(pdata, P_DATA)
        out += P_DATA_TF(pdata).encode()
    return out


@pytest.mark.parametrize("max_pdu", [16384, 4096, 1000, 0])
def test_pdus_are_the_bytes_pynetdicom_would_send(max_pdu: int) -> None:
    from pynetdicom.dsutils import encode

    data = to_bytes(make_ct_series(1, rows=64, columns=64)[0])
    offset, _ = split_file(data)
    req = C_STORE()
    req.MessageID = 7
    req.Priority = 2
    req.AffectedSOPClassUID = CT
    req.AffectedSOPInstanceUID = "1.2.3.4"
    req.MoveOriginatorApplicationEntityTitle = "WS"
    req.MoveOriginatorMessageID = 3
    req.DataSet = BytesIO(data[offset:])
    expected = _pynetdicom_bytes(req, 5, max_pdu)
    message = C_STORE_RQ()
    message.primitive_to_message(req)
    command = encode(message.command_set, True, True)
    assert pdata_pdus(5, command, data[offset:], max_pdu) == expected


@pytest.fixture(scope="module")
def direct_io():
    install_prepared_store()
    install_direct_io()


def _associate(port: int, received_by: list):
    ae = AE("FRONT")
    ae.add_requested_context(CT, [EXPLICIT])
    handlers = [(evt.EVT_DIMSE_RECV, lambda e: received_by.append(threading.current_thread()))]
    assoc = ae.associate("127.0.0.1", port, ae_title="PEER", evt_handlers=handlers)
    assert assoc.is_established
    assoc._archive_hold_pause = True  # as the front's C-MOVE sub-association  # noqa: SLF001
    return assoc


def _prepared(payload: bytes):
    syntax, body = prepared_dataset(payload, {"PatientID": "NSR-2026-00001"})
    sop_uid = _sop_uid(payload)
    return prepared_instance(CT, sop_uid, syntax, body, None), body


def _sop_uid(payload: bytes) -> str:
    from pydicom import dcmread

    return str(dcmread(BytesIO(payload), stop_before_pixels=True).SOPInstanceUID)


def test_the_sending_thread_reads_the_answer_and_the_bytes_arrive_as_prepared(direct_io) -> None:
    payloads = [to_bytes(ds) for ds in make_ct_series(4, rows=128, columns=128)]
    peer = Peer()
    received_by: list = []
    assoc = _associate(peer.port, received_by)
    try:
        assert enable_direct(assoc)
        bodies = []
        for number, payload in enumerate(payloads, start=1):
            ds, body = _prepared(payload)
            bodies.append(body)
            status = assoc.send_c_store(ds, msg_id=number)
            assert status.Status == 0x0000
    finally:
        assoc.release()
        peer.stop()
    # pynetdicom's own path hands the answer over from its DUL thread
    assert received_by == [threading.main_thread()] * len(payloads)
    assert [got for _, _, got in peer.received] == bodies


def test_without_direct_mode_the_dul_thread_reads_the_answer(direct_io) -> None:
    payload = to_bytes(make_ct_series(1, rows=64, columns=64)[0])
    peer = Peer()
    received_by: list = []
    assoc = _associate(peer.port, received_by)
    assoc._archive_hold_pause = False  # noqa: SLF001
    try:
        ds, _ = _prepared(payload)
        assert assoc.send_c_store(ds, msg_id=1).Status == 0x0000
    finally:
        assoc.release()
        peer.stop()
    assert received_by and received_by[0] is not threading.main_thread()


def test_a_cancel_arriving_before_the_answer_still_reaches_pynetdicom(direct_io) -> None:
    payload = to_bytes(make_ct_series(1, rows=64, columns=64)[0])
    peer = Peer()

    def cancel_then_answer(event):
        cancel = C_CANCEL()
        cancel.MessageIDBeingRespondedTo = 41
        event.assoc.dimse.send_msg(cancel, event.context.context_id)
        return 0x0000

    peer.server.unbind(evt.EVT_C_STORE, peer.server.get_handlers(evt.EVT_C_STORE)[0])
    peer.server.bind(evt.EVT_C_STORE, cancel_then_answer)
    assoc = _associate(peer.port, [])
    try:
        assert enable_direct(assoc)
        ds, _ = _prepared(payload)
        assert assoc.send_c_store(ds, msg_id=1).Status == 0x0000
        assert 41 in assoc.dimse.cancel_req
    finally:
        assoc.release()
        peer.stop()


def test_a_peer_that_aborts_instead_of_answering_ends_the_association(direct_io) -> None:
    payload = to_bytes(make_ct_series(1, rows=64, columns=64)[0])
    peer = Peer()

    def abort(event):
        event.assoc.abort()
        return 0xC000

    peer.server.unbind(evt.EVT_C_STORE, peer.server.get_handlers(evt.EVT_C_STORE)[0])
    peer.server.bind(evt.EVT_C_STORE, abort)
    assoc = _associate(peer.port, [])
    try:
        assert enable_direct(assoc)
        ds, _ = _prepared(payload)
        status = assoc.send_c_store(ds, msg_id=1)
        assert "Status" not in status  # no answer: pynetdicom's empty status
        done = threading.Event()
        for _ in range(600):  # the DUL's state machine takes the abort (generous: load)
            if assoc.is_aborted:
                done.set()
                break
            done.wait(0.05)
        assert assoc.is_aborted
    finally:
        if assoc.is_established:
            assoc.abort()
        peer.stop()


def test_a_silent_peer_times_out(direct_io) -> None:
    """No answer within the DIMSE timeout: no status, the association is aborted."""
    payload = to_bytes(make_ct_series(1, rows=32, columns=32)[0])
    peer = Peer()
    assoc = _associate(peer.port, [])
    assoc.dimse_timeout = 0.5
    gate = threading.Event()

    def hang(event):
        gate.wait(30)
        return 0x0000

    peer.server.unbind(evt.EVT_C_STORE, peer.server.get_handlers(evt.EVT_C_STORE)[0])
    peer.server.bind(evt.EVT_C_STORE, hang)
    try:
        assert enable_direct(assoc)
        ds, _ = _prepared(payload)
        status = assoc.send_c_store(ds, msg_id=1)
        assert "Status" not in status
    finally:
        gate.set()
        if assoc.is_established:
            assoc.abort()
        peer.stop()


# -- the per-image encodings, against pynetdicom's and pydicom's ---------------------------


def _command_bytes(primitive, message_class) -> bytes:
    from pynetdicom.dsutils import encode

    message = message_class()
    message.primitive_to_message(primitive)
    return encode(message.command_set, True, True)


@pytest.mark.parametrize(
    ("sop_uid", "originator"), [("1.2.3.4", None), ("1.2.3.45", "WS"), ("1.2.3", "ODD")]
)
def test_store_command_is_pynetdicoms(sop_uid: str, originator: str | None) -> None:
    req = C_STORE()
    req.MessageID = 513
    req.Priority = 2
    req.AffectedSOPClassUID = CT
    req.AffectedSOPInstanceUID = sop_uid
    if originator:
        req.MoveOriginatorApplicationEntityTitle = originator
        req.MoveOriginatorMessageID = 7
    req.DataSet = BytesIO(b"\x00\x00")
    expected = _command_bytes(req, C_STORE_RQ)
    got = store_command(513, CT, sop_uid, 2, req.MoveOriginatorApplicationEntityTitle,
                        req.MoveOriginatorMessageID)  # fmt: skip
    assert got == expected


@pytest.mark.parametrize("kind", ["C_MOVE", "C_GET"])
def test_pending_command_is_pynetdicoms(kind: str) -> None:
    from pynetdicom import dimse_messages, dimse_primitives

    rsp = getattr(dimse_primitives, kind)()
    rsp.MessageIDBeingRespondedTo = 3
    rsp.Status = 0xFF00
    rsp.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.2.2.2"
    rsp.NumberOfRemainingSuboperations = 198
    rsp.NumberOfCompletedSuboperations = 2
    rsp.NumberOfFailedSuboperations = 0
    rsp.NumberOfWarningSuboperations = 0
    assert pending_command(rsp) == _command_bytes(rsp, getattr(dimse_messages, kind + "_RSP"))
    rsp.Status = 0x0000  # the final answer: pynetdicom encodes it
    assert pending_command(rsp) is None


def _store_rsp_body(**extra) -> bytes:
    from pynetdicom.dimse_messages import C_STORE_RSP

    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo = 9
    rsp.Status = 0xB000
    rsp.AffectedSOPClassUID = CT
    rsp.AffectedSOPInstanceUID = "1.2.3.4"
    for key, value in extra.items():
        setattr(rsp, key, value)
    message = C_STORE_RSP()
    message.primitive_to_message(rsp)
    (pdata,) = list(message.encode_msg(3, 16384))
    return P_DATA_TF(pdata).encode()[6:]


def test_a_plain_store_answer_is_read_without_pydicom_decoding() -> None:
    context_id, status = store_answer(_store_rsp_body())
    assert context_id == 3
    assert (status.Status, status.MessageIDBeingRespondedTo) == (0xB000, 9)
    # anything more (a comment, an offending element): pynetdicom decodes it
    assert store_answer(_store_rsp_body(ErrorComment="disk full")) is None
    body = _store_rsp_body()
    assert store_answer(body[:-2]) is None  # cut short
    assert store_answer(body[:5] + b"\x01" + body[6:]) is None  # not the last fragment


def _pydicom_head(data: bytes, keys: dict[str, str]) -> bytes:
    """What the archive sent before patch_head: pydicom rewrites the head."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import read_dataset
    from pydicom.filewriter import write_dataset

    offset, syntax = split_file(data)
    implicit = syntax == IMPLICIT
    fp = BytesIO(data)
    fp.seek(offset)
    head = read_dataset(fp, implicit, True, stop_when=lambda tag, vr, length: tag > 0x0010FFFF)
    cut = fp.tell()
    for keyword, value in keys.items():
        setattr(head, keyword, value)
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, implicit
    write_dataset(out, head)
    return out.getvalue() + data[cut:]


KEYS = {
    "PatientID": "NSR-2026-00042",
    "PatientName": "NSR-2026-00042",
    "AccessionNumber": "NSR202600042",
    "StudyDescription": "Odd-length title",
}


@pytest.mark.parametrize(
    "name",
    [
        "JPEG2000.dcm",  # sequences of undefined length before the patient group
        "MR_small_RLE.dcm",
        "MR_small_implicit.dcm",
        "CT_small.dcm",
        "rtplan.dcm",
        "MR_small.dcm",
    ],
)
def test_the_head_is_patched_on_the_bytes_as_pydicom_would_write_it(name: str) -> None:
    from pathlib import Path

    from pydicom.data import get_testdata_file

    data = Path(get_testdata_file(name)).read_bytes()
    offset, syntax = split_file(data)
    patched = patch_head(data, offset, syntax == IMPLICIT, KEYS)
    assert patched is not None
    assert patched == _pydicom_head(data, KEYS)


def test_absent_keys_are_inserted_in_tag_order() -> None:
    ds = make_ct_series(1, rows=16, columns=16)[0]
    for keyword in ("AccessionNumber", "StudyDescription", "PatientName"):
        if keyword in ds:
            delattr(ds, keyword)
    data = to_bytes(ds)
    offset, syntax = split_file(data)
    patched = patch_head(data, offset, syntax == IMPLICIT, KEYS)
    assert patched == _pydicom_head(data, KEYS)
