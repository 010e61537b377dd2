"""The raw-element de-identification path gives exactly the full path's output (issue 26).

archive/deid/raw.py copies kept elements byte for byte and hands the others to the
engine's own code; archive/deid/engine.deidentify_full is the pydicom read-walk-write it
replaces. On every corpus the tests use - tests/corpus.py's generators, every DICOM file
that ships with pydicom, the MIDI-B-like corpus of tests/midib.py, and variants (implicit
VR, undefined-length sequences, burnt-in risks) - the comparison is **byte for byte** on
the bytes released or held, and field by field on the rest of the result (reason,
pseudonym, UIDs, modality, flags, the learned identifiers): nothing is only
"dataset-equal". Whatever the raw path refuses (`Unsupported`) must go to the full path
through `deidentify`, and the raw path must actually handle the ordinary cases (checked
too, so the equality cannot hold vacuously). The last tests change one entry of the
compiled table and see the equality fail.
"""

from __future__ import annotations

import glob
import os
from io import BytesIO

import pydicom
import pytest
from pydicom import dcmread
from pydicom.sequence import Sequence
from pydicom.uid import ImplicitVRLittleEndian

from archive.deid import DeidInputError, DeidSecrets, deidentify, load_policy
from archive.deid import raw as raw_mod
from archive.deid.engine import deidentify_full
from archive.paths import POLICIES_DIR
from tests import corpus, midib

KEY = bytes(range(32))
FIELDS = (
    "released",
    "quarantined_bytes",
    "quarantine_reason",
    "patient_pseudonym",
    "study_uid",
    "series_uid",
    "sop_instance_uid",
    "modality",
    "level",
    "policy_version",
    "flags",
    "sop_class_uid",
    "identifiers",
)


@pytest.fixture(scope="module")
def policy():
    return load_policy(POLICIES_DIR)


def _implicit(ds) -> bytes:
    ds = ds.copy()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    buf = BytesIO()
    ds.save_as(buf, implicit_vr=True, little_endian=True, enforce_file_format=True)
    return buf.getvalue()


def _undefined_lengths(ds) -> bytes:
    """Sequences and items of undefined length, as many scanners write them."""
    ds = ds.copy()
    item = pydicom.Dataset()
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.ReferencedSOPInstanceUID = corpus.SRC_ROOT + "77.1"
    item.is_undefined_length_sequence_item = True
    ds.ReferencedImageSequence = Sequence([item])
    ds["ReferencedImageSequence"].is_undefined_length = True
    return corpus.to_bytes(ds)


def generated() -> dict[str, bytes]:
    """tests/corpus.py's instances and variants."""
    out: dict[str, bytes] = {}
    for i, ds in enumerate(corpus.make_ct_series(2, rows=32, columns=32)):
        out[f"ct-plain-{i}"] = corpus.to_bytes(ds)
    vendor = corpus.make_ct_series(2, rows=32, columns=32, vendor_header=True, issuer="ISS")
    for i, ds in enumerate(vendor):
        out[f"ct-vendor-{i}"] = corpus.to_bytes(ds)
    out["ct-vendor-implicit"] = _implicit(vendor[0])
    out["ct-undefined-length-sequences"] = _undefined_lengths(vendor[1])
    burnt = vendor[0].copy()
    burnt.BurnedInAnnotation = "YES"
    out["ct-burnt-in"] = corpus.to_bytes(burnt)
    no_id = vendor[1].copy()
    del no_id.PatientID
    out["ct-no-patient-id"] = corpus.to_bytes(no_id)
    planted, _ = corpus.make_planted_instance()
    out["planted"] = corpus.to_bytes(planted)
    out["planted-implicit"] = _implicit(planted)
    out["sr"] = corpus.to_bytes(corpus.make_sr_instance())
    out["nm-j2k"] = corpus.to_bytes(corpus.make_nm_j2k(frames=2))
    out["rt-plan"] = corpus.to_bytes(corpus.make_rt_plan())
    return out


def pydicom_files() -> dict[str, bytes]:
    """Every DICOM file that ships with pydicom (no download), up to 3 MB."""
    root = os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files")
    out = {}
    for path in sorted(glob.glob(os.path.join(root, "**", "*"), recursive=True)):
        if os.path.isfile(path) and os.path.getsize(path) < 3_000_000:
            with open(path, "rb") as f:
                out["pydicom:" + os.path.relpath(path, root)] = f.read()
    return out


@pytest.fixture(scope="module")
def corpora() -> dict[str, dict[str, bytes]]:
    return {
        "generated": generated(),
        "pydicom": pydicom_files(),
        "midib": {"midib:" + p.name: p.data for p in midib.build_corpus(patients=2).instances},
    }


def _outcome(fn, data, policy):
    try:
        return fn(data, policy, DeidSecrets(KEY))
    except DeidInputError as exc:
        return ("refused", str(exc))
    except raw_mod.Unsupported:
        return None


def differences(data: bytes, policy) -> tuple[list[str] | None, str]:
    """(fields where raw and full differ, or None if the raw path declined; path taken
    by deidentify)."""
    full = _outcome(deidentify_full, data, policy)
    via = _outcome(deidentify, data, policy)
    # whatever deidentify does must be what the full path does
    if isinstance(full, tuple) or isinstance(via, tuple):
        assert via == full
        path = "refused"
    else:
        assert [getattr(via, f) for f in FIELDS] == [getattr(full, f) for f in FIELDS]
        path = via.path
    raw = _outcome(raw_mod.deidentify_raw, data, policy)
    if raw is None:
        return None, path
    if isinstance(full, tuple):
        return ["refused by the full path, released by the raw path"], path
    return [f for f in FIELDS if getattr(raw, f) != getattr(full, f)], path


@pytest.mark.parametrize("group", ["generated", "pydicom", "midib"])
def test_raw_path_output_is_byte_identical_to_full_path(policy, corpora, group):
    declined, handled = [], []
    for name, data in corpora[group].items():
        diff, path = differences(data, policy)
        if diff is None:
            declined.append(name)
            assert path in ("full", "refused"), name
            continue
        assert diff == [], (name, diff)
        assert path == "raw", name
        handled.append(name)
    print(f"\n{group}: raw path {len(handled)}, full path {len(declined)}: {declined}")
    if group == "generated":  # only the structured report goes to the full path
        assert declined == ["sr"]
    elif group == "midib":
        assert declined == []
    else:  # big endian, deflated, no meta, truncated, SR...: about a quarter of them
        assert len(handled) >= 120, len(handled)


def test_raw_path_copies_pixel_data_and_keeps_it_identical(policy, corpora):
    data = corpora["generated"]["ct-vendor-0"]
    result = deidentify(data, policy, DeidSecrets(KEY))
    assert result.path == "raw" and result.released is not None
    src, out = dcmread(BytesIO(data)), dcmread(BytesIO(result.released))
    assert out.PixelData == src.PixelData
    assert out.PatientName != src.PatientName


def test_declined_cases_go_to_the_full_path(policy, corpora):
    for name in ("sr",):
        result = deidentify(corpora["generated"][name], policy, DeidSecrets(KEY))
        assert result.path == "full"
    big = corpora["pydicom"]["pydicom:MR_small_bigendian.dcm"]
    with pytest.raises(raw_mod.Unsupported):
        raw_mod.deidentify_raw(big, policy, DeidSecrets(KEY))
    assert deidentify(big, policy, DeidSecrets(KEY)).path == "full"


def test_an_error_inside_the_raw_path_goes_to_the_full_path(policy, corpora, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(raw_mod, "_encode_raw", broken)
    data = corpora["generated"]["ct-vendor-0"]
    result = deidentify(data, policy, DeidSecrets(KEY))
    assert result.path == "full" and result.released is not None


def _present(data: bytes, code: int, policy) -> int:
    """A tag of this instance whose compiled code is `code` (top level)."""
    ds = dcmread(BytesIO(data))
    table = raw_mod.raw_table(policy)
    for tag in ds._dict:
        if table.get(int(tag)) == code and ds._dict[tag].VR != "SQ":
            return int(tag)
    raise AssertionError(f"no element with code {code}")


@pytest.mark.parametrize(
    "source, target",
    [
        (raw_mod.DROP, raw_mod.COPY),  # an element the policy removes would be kept
        (raw_mod.COPY, raw_mod.DROP),  # an element the policy keeps would be lost
        (raw_mod.ENGINE, raw_mod.COPY),  # a name or ID would be copied, not replaced
        (raw_mod.ENGINE, raw_mod.DROP),  # an identifier would not be learned or replaced
    ],
)
def test_equivalence_check_fails_when_one_table_entry_is_wrong(
    policy, corpora, monkeypatch, source, target
):
    data = corpora["generated"]["planted"]
    assert differences(data, policy)[0] == []
    tag = _present(data, source, policy)
    if source == raw_mod.ENGINE:
        tag = 0x00100010  # PatientName: an identity source, replaced by the pseudonym
    mutated = dict(raw_mod.raw_table(policy))
    mutated[tag] = target
    monkeypatch.setattr(raw_mod, "raw_table", lambda p: mutated)
    raw = raw_mod.deidentify_raw(data, policy, DeidSecrets(KEY))
    full = deidentify_full(data, policy, DeidSecrets(KEY))
    assert [f for f in FIELDS if getattr(raw, f) != getattr(full, f)] != []


# --- one parse: the header the engine wrote goes to the pixel step -------------------
def _same_header(header, data: bytes) -> list[str]:
    ref = dcmread(BytesIO(data), stop_before_pixels=True)
    problems = []
    if sorted(header._dict) != sorted(ref._dict):
        return [f"tags differ: {sorted(set(header._dict) ^ set(ref._dict))}"]
    for tag in ref._dict:
        a, b = header[tag], ref[tag]
        if a.VR != b.VR or a.value != b.value:
            problems.append(f"{tag} {a.VR}/{b.VR}")
    if header.file_meta.TransferSyntaxUID != ref.file_meta.TransferSyntaxUID:
        problems.append("transfer syntax")
    return problems


@pytest.mark.parametrize("group", ["generated", "pydicom", "midib"])
def test_handed_header_is_the_written_header(policy, corpora, group):
    """Dataset-equal element by element (values converted by pydicom), not byte-equal:
    the header is a Dataset, and a sequence the engine walked is handed over as pydicom's
    items rather than re-read from the bytes it wrote."""
    checked = 0
    for name, data in corpora[group].items():
        try:
            result = raw_mod.deidentify_raw(data, policy, DeidSecrets(KEY))
        except raw_mod.Unsupported:
            continue
        out = result.released or result.quarantined_bytes
        assert _same_header(result.header, out) == [], name
        checked += 1
    assert checked >= 10


def test_pixel_step_decides_the_same_from_the_handed_header(policy, corpora, monkeypatch):
    from archive.ingest import pixelstep
    from archive.pixels import load_masking_policy

    masking = load_masking_policy(POLICIES_DIR)
    thin = corpus.make_ct_series(1, rows=64, columns=64, vendor_header=True)[0]
    thin.SliceThickness = "1"
    thin.BodyPartExamined = "HEAD"
    cases = dict(corpora["generated"])
    cases["thin-head-ct"] = corpus.to_bytes(thin)
    compared = 0
    for name, data in cases.items():
        result = deidentify(data, policy, DeidSecrets(KEY))
        out = result.released or result.quarantined_bytes
        if result.header is None or out is None:
            continue
        a = pixelstep.check_pixels(out, masking, header=result.header)
        b = pixelstep.check_pixels(out, masking)
        assert (a.action, a.reasons, a.flags, a.face, a.data == b.data) == (
            b.action,
            b.reasons,
            b.flags,
            b.face,
            True,
        ), name
        compared += 1
    assert compared >= 8

    # a CT slice with no burnt-in indicator: the pixel step parses nothing at all
    def no_parse(*args, **kwargs):
        raise AssertionError("parsed again")

    monkeypatch.setattr(pixelstep, "dcmread", no_parse)
    result = deidentify(cases["ct-vendor-0"], policy, DeidSecrets(KEY))
    outcome = pixelstep.check_pixels(result.released, masking, header=result.header)
    assert outcome.action == "release", outcome.reasons


# --- the storage area's ledger row, read from the raw elements ------------------------
def test_ledger_row_from_raw_elements_equals_pydicom_reading(policy, corpora, monkeypatch):
    from archive.vault import ledger

    files = dict(corpora["pydicom"])
    for name, data in corpora["generated"].items():
        files[name] = data
        result = deidentify(data, policy, DeidSecrets(KEY))
        files[name + " (released)"] = result.released or result.quarantined_bytes or data
    fast = {}
    taken = sum(ledger._entry_from_raw("u-1234", data) is not None for data in files.values())
    assert taken >= 100  # the raw reading, not pydicom's, for the ordinary files
    for name, data in files.items():
        try:
            fast[name] = ledger.entry_from_dicom("u-1234", data)
        except ledger.LedgerError:
            fast[name] = "refused"
    monkeypatch.setattr(ledger, "_entry_from_raw", lambda uuid, data: None)
    raw_read = 0
    for name, data in files.items():
        try:
            slow = ledger.entry_from_dicom("u-1234", data)
        except ledger.LedgerError:
            slow = "refused"
        assert fast[name] == slow, name
        raw_read += slow != "refused"
    assert raw_read >= 100


def test_raw_path_copies_the_pixel_data_once(policy):
    """Fewer copies (issue 26): the output is the only copy of a CT slice's pixel data
    the engine makes (the full path reads the pixels into pydicom, writes them into a
    buffer and copies that: ~3x the file in memory at its peak)."""
    import tracemalloc

    data = corpus.to_bytes(corpus.make_ct_series(1, rows=512, columns=512)[0])
    deidentify(data, policy, DeidSecrets(KEY))  # warm caches
    tracemalloc.start()
    try:
        result = deidentify(data, policy, DeidSecrets(KEY))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.path == "raw" and result.released is not None
    assert peak < 1.6 * len(data), peak / len(data)
