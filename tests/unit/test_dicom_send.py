"""The pynetdicom sender: stored bytes arrive as they are, in one association; clear errors."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification

from archive.dicom.send import SendError, send_entries, split_file
from archive.vault.ledger import entry_from_dicom
from tests.corpus import make_ct_series, make_sr_instance, to_bytes
from tests.harness import free_port


class Peer:
    """A pynetdicom Storage SCP keeping the raw data set bytes of every C-STORE."""

    def __init__(self, aet: str = "PEER", *, status: int = 0x0000, syntaxes=None) -> None:
        self.received: list[tuple[str, str, bytes]] = []
        self.associations = 0
        self.status = status
        self.port = free_port()
        ae = AE(ae_title=aet)
        all_syntaxes = [
            "1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.4.90",
            "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.70",
            "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.1.99",
            "1.2.840.10008.1.2.2",
        ]  # fmt: skip
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax, syntaxes or all_syntaxes)
        ae.add_supported_context(Verification)
        self.lock = threading.Lock()

        def on_store(event):
            with self.lock:
                self.received.append((
                    event.request.AffectedSOPInstanceUID,
                    event.context.transfer_syntax,
                    bytes(event.request.DataSet.getvalue()),
                ))  # fmt: skip
            return self.status

        def on_open(event):
            self.associations += 1

        self.server = ae.start_server(
            ("127.0.0.1", self.port),
            block=False,
            evt_handlers=[(evt.EVT_C_STORE, on_store), (evt.EVT_REQUESTED, on_open)],
        )

    def stop(self) -> None:
        self.server.shutdown()


def _entries(payloads: list[bytes]):
    return [entry_from_dicom(f"uuid-{i:04d}", p) for i, p in enumerate(payloads)]


def _send(peer_port: int, payloads: list[bytes], called: str = "PEER", **kw):
    entries = _entries(payloads)
    by_uuid = {e.uuid: p for e, p in zip(entries, payloads, strict=True)}
    return entries, send_entries(
        entries, lambda e: by_uuid[e.uuid], host="127.0.0.1", port=peer_port,
        called_aet=called, calling_aet="ARCHIVE", timeout=10, **kw,
    )  # fmt: skip


def test_stored_bytes_arrive_byte_identical_in_one_association() -> None:
    payloads = [to_bytes(ds) for ds in make_ct_series(3)]
    payloads.append(to_bytes(make_sr_instance()))
    jpeg2000 = Path(get_testdata_file("JPEG2000.dcm")).read_bytes()
    rle = Path(get_testdata_file("MR_small_RLE.dcm")).read_bytes()
    big_endian = Path(get_testdata_file("MR_small_bigendian.dcm")).read_bytes()
    implicit = Path(get_testdata_file("MR_small_implicit.dcm")).read_bytes()
    payloads += [jpeg2000, rle, big_endian, implicit]
    peer = Peer()
    try:
        seen = []
        entries, result = _send(peer.port, payloads, progress=lambda d, t: seen.append((d, t)))
    finally:
        peer.stop()
    assert result.failed == 0, result.failures
    assert result.sent == len(payloads)
    assert peer.associations == 1
    assert seen[-1] == (len(payloads), len(payloads))
    assert len(peer.received) == len(payloads)
    for entry, payload, got in zip(entries, payloads, peer.received, strict=True):
        offset, syntax = split_file(payload)
        assert syntax == entry.transfer_syntax
        assert got == (entry.sop_uid, syntax, payload[offset:]), syntax


def test_a_peer_refusing_the_stored_syntax_gets_implicit_vr() -> None:
    payloads = [to_bytes(ds) for ds in make_ct_series(2)]  # explicit VR little endian
    peer = Peer(syntaxes=["1.2.840.10008.1.2"])
    try:
        _entries_sent, result = _send(peer.port, payloads)
    finally:
        peer.stop()
    assert (result.sent, result.failed) == (2, 0)
    assert {syntax for _, syntax, _ in peer.received} == {"1.2.840.10008.1.2"}


def test_refusals_are_counted_by_sop_uid() -> None:
    payloads = [to_bytes(ds) for ds in make_ct_series(2)]
    peer = Peer(status=0xA700)
    try:
        entries, result = _send(peer.port, payloads)
    finally:
        peer.stop()
    assert result.sent == 0 and result.failed == 2
    assert result.failures == [e.sop_uid for e in entries]


def test_down_or_refusing_peer_is_one_clear_error() -> None:
    payloads = [to_bytes(make_ct_series(1)[0])]
    with pytest.raises(SendError, match="is it listening"):
        _send(free_port(), payloads)
    peer = Peer(aet="PEER")
    peer.server.ae.require_called_aet = True
    try:
        with pytest.raises(SendError, match="rejected the association"):
            _send(peer.port, payloads, called="SOMEONE_ELSE")
    finally:
        peer.stop()


def test_nothing_to_send_opens_no_association() -> None:
    result = send_entries([], lambda e: b"", host="127.0.0.1", port=free_port(),
                          called_aet="X", calling_aet="Y")  # fmt: skip
    assert (result.sent, result.failed) == (0, 0)


def test_an_association_that_breaks_is_opened_once_more_for_the_rest() -> None:
    """A peer that drops the association under the second C-STORE (as a lost answer
    does) gets the unconfirmed instances again on a new association; nothing is lost."""
    payloads = [to_bytes(ds) for ds in make_ct_series(3)]
    peer = Peer()
    dropped = []

    def drop_second(event):
        if not dropped and len(peer.received) == 1:
            dropped.append(event.request.AffectedSOPInstanceUID)
            event.assoc.abort()
            return 0xC000
        peer.received.append((event.request.AffectedSOPInstanceUID, "", b""))
        return 0x0000

    peer.server.unbind(evt.EVT_C_STORE, peer.server.get_handlers(evt.EVT_C_STORE)[0])
    peer.server.bind(evt.EVT_C_STORE, drop_second)
    try:
        entries, result = _send(peer.port, payloads)
    finally:
        peer.stop()
    assert dropped, "the peer never dropped the association"
    assert result.failed == 0, result.reasons
    assert result.sent == 3
    assert peer.associations == 2
    assert {uid for uid, _, _ in peer.received} == {e.sop_uid for e in entries}


def test_an_association_that_breaks_twice_counts_the_rest_as_failed() -> None:
    payloads = [to_bytes(ds) for ds in make_ct_series(3)]
    peer = Peer()

    def always_drop(event):
        event.assoc.abort()
        return 0xC000

    peer.server.unbind(evt.EVT_C_STORE, peer.server.get_handlers(evt.EVT_C_STORE)[0])
    peer.server.bind(evt.EVT_C_STORE, always_drop)
    try:
        _entries, result = _send(peer.port, payloads)
    finally:
        peer.stop()
    assert result.sent == 0 and result.failed == 3
    assert peer.associations == 2
    assert all("SendError" in why for why in result.reasons)
