"""Synthetic DICOM test data with planted identifiers (unit, integration and benchmarks).

    series = make_ct_series(3, patient="DOE^JANE", patient_id="PID123")
    ds, planted = make_planted_instance()   # planted: values that must not survive
    data = to_bytes(ds)

Nothing here is real patient data: names, IDs and dates are invented tokens chosen so
that a byte search of the output finds them unambiguously.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import json
from io import BytesIO
from pathlib import Path

import numpy as np
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

PROFILE = Path(__file__).resolve().parent.parent / "policies" / "deid" / "profile_e1_1_2024b.json"
SRC_ROOT = "1.2.826.0.1.3680043.10.999."  # invented source-site root for planted UIDs
PATIENT_NAME = "PLANTFAMILY^PLANTGIVEN"
PATIENT_ID = "PIDPLANT7781"
BIRTH_DATE = "19580317"
# Rows kept by the options this archive enables (patient characteristics) and times of
# day (whole-day date shifts keep them): planted there, but allowed to survive.
SURVIVES = {
    0x00100040, 0x00101020, 0x00101030, 0x00102160, 0x001021A0, 0x001021C0, 0x00102203,
    0x0072005F,
}  # fmt: skip


def to_bytes(ds: Dataset) -> bytes:
    """Part-10 bytes of a dataset built here."""
    buf = BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def _meta(sop_class: str, sop_uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = SRC_ROOT + "1"
    return meta


def make_ct_series(
    n: int,
    patient: str = "DOE^JANE",
    patient_id: str = "PID123",
    *,
    rows: int = 64,
    columns: int = 64,
    study_uid: str | None = None,
    study_date: str = "20240105",
    series_number: int = 1,
    issuer: str = "",
    seed: int = 0,
    vendor_header: bool = False,
) -> list[Dataset]:
    """n CT slices of one series (one frame of reference), 16-bit, random pixels.

    vendor_header=True adds the rest of a real scanner's header (pydicom's CT_small.dcm,
    a GE CT with ~200 standard and private elements) for realistic benchmarks."""
    rng = np.random.default_rng(seed)
    study_uid = study_uid or generate_uid(prefix=SRC_ROOT)
    series_uid = generate_uid(prefix=SRC_ROOT)
    frame_uid = generate_uid(prefix=SRC_ROOT)
    out = []
    for i in range(n):
        ds = Dataset()
        sop_uid = generate_uid(prefix=SRC_ROOT)
        ds.file_meta = _meta(CTImageStorage, sop_uid)
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop_uid
        ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = study_date
        ds.StudyTime = ds.SeriesTime = "101500"
        ds.AcquisitionTime = ds.ContentTime = f"1016{i % 60:02d}"
        ds.AccessionNumber = f"ACC{patient_id}"
        ds.Modality = "CT"
        ds.Manufacturer = "ACME MEDICAL"
        ds.InstitutionName = "St Elsewhere General"
        ds.ReferringPhysicianName = "REFERRER^ROBERT"
        ds.StationName = "CTSTATION9"
        ds.StudyDescription = f"CT chest {patient.split('^')[0]}"
        ds.SeriesDescription = "Axial 1mm"
        ds.OperatorsName = "OPERATOR^OLIVIA"
        ds.PatientName = patient
        ds.PatientID = patient_id
        if issuer:
            ds.IssuerOfPatientID = issuer
        ds.PatientBirthDate = "19700101"
        ds.PatientSex = "F"
        ds.PatientAge = "054Y"
        ds.SliceThickness = "1.0"
        ds.KVP = "120"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.StudyID = "STUDY42"
        ds.SeriesNumber = series_number
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [0, 0, -i * 1.0]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.FrameOfReferenceUID = frame_uid
        ds.PositionReferenceIndicator = ""
        ds.SliceLocation = -i * 1.0
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = rows, columns
        ds.PixelSpacing = [0.7, 0.7]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        ds.PixelRepresentation = 0
        ds.RescaleIntercept, ds.RescaleSlope = "-1024", "1"
        ds.PixelData = rng.integers(0, 4096, size=rows * columns, dtype=np.uint16).tobytes()
        if vendor_header:
            for elem in _vendor_template():
                if elem.tag not in ds and elem.tag.group != 0x7FE0:
                    ds.add(copy.deepcopy(elem))
        out.append(ds)
    return out


@functools.lru_cache(maxsize=1)
def _vendor_template() -> Dataset:
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    return dcmread(get_testdata_file("CT_small.dcm"))


def _token(i: int, kind: str = "P") -> str:
    return f"{kind}LNT{i:04d}Q"  # CS/AE/SH-safe, unique, no digit run of 10


def _value_for(vr: str, i: int, kind: str, planted: set[str], name_family: str):
    """A distinct planted value fitting the VR; records what must not survive."""
    tok = _token(i, kind)
    if vr in ("LO", "SH", "CS", "AE", "ST", "LT", "UT", "UC"):
        planted.add(tok)
        return tok
    if vr == "PN":
        planted.update({tok, f"G{tok}"})
        return f"{tok}^G{tok}"
    if vr == "UR":
        planted.add(tok.lower())
        return f"http://example.org/{tok.lower()}"
    if vr == "DA":
        d = (dt.date(1991, 3, 1) + dt.timedelta(days=i % 200)).strftime("%Y%m%d")
        planted.add(d)
        return d
    if vr == "DT":
        d = (dt.date(1991, 3, 1) + dt.timedelta(days=i % 200)).strftime("%Y%m%d")
        planted.add(d)
        return d + "101112.5"
    if vr == "TM":
        return "101112"
    if vr == "UI":
        uid = f"{SRC_ROOT}{7000 + i}.{i}"
        planted.add(uid)
        return uid
    if vr == "IS":
        return str(900000 + i)
    if vr == "DS":
        return f"{900000 + i}.5"
    if vr == "AS":
        planted.add("047Y")
        return "047Y"
    if vr in ("OB", "OW", "UN"):
        planted.add(tok)
        return tok.encode()
    if vr == "SQ":
        item = Dataset()
        item.PatientID = f"SQ{tok}"
        item.PersonName = f"SQ{tok}^SQNAME"
        planted.update({f"SQ{tok}"})
        return Sequence([item])
    return None  # binary numbers: absence is checked through the element itself


def _profile_rows() -> list[dict]:
    return json.loads(PROFILE.read_text(encoding="utf-8"))


def _plant_table(ds: Dataset, kind: str, planted: set[str], name_family: str) -> None:
    """Every Table E.1-1 attribute with a distinct value; descriptions carry the name."""
    for i, row in enumerate(_profile_rows()):
        ident = row["id"]
        if len(ident) != 8 or not all(c in "0123456789abcdef" for c in ident):
            continue
        tag = int(ident, 16)
        if tag >> 16 < 0x0008:
            continue  # command set and file meta rows: the meta is planted separately
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            continue
        if tag in (
            0x00100010,
            0x00100020,
            0x00100030,
            0x00100040,
            0x00080018,
            0x0020000D,
            0x0020000E,
        ):
            continue  # set explicitly by the caller
        cleaned = "C" in (row.get("cleanDescOpt"), row.get("rtnPatCharsOpt"))
        if cleaned and vr in ("LO", "ST", "LT", "UT", "UC"):
            planted.add(name_family)  # descriptions are kept, but not the name in them
            value = f"desc{i} {name_family}"
        elif cleaned and vr in ("SH", "CS"):
            planted.add(name_family)
            value = name_family
        else:
            local: set[str] = set()
            value = _value_for(vr, i, kind, local, name_family)
            if value is None:
                continue
            if tag in SURVIVES and vr == "AS":
                value = "033Y"  # a kept characteristic, distinct from the banded age
            if tag not in SURVIVES and vr != "TM":
                planted |= local
        ds.add(DataElement(tag, vr, value))


def _un_sequence_bytes(item: Dataset) -> bytes:
    """An item encoded in implicit VR little endian, as a UN-encoded sequence holds it."""
    buf = BytesIO()
    body = BytesIO()
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, True
    write_dataset(fp, item)
    body = fp.getvalue()
    buf.write(b"\xfe\xff\x00\xe0" + len(body).to_bytes(4, "little") + body)
    return buf.getvalue()


def _add_un(ds: Dataset, tag: int, value: bytes) -> None:
    """Insert an element written with VR UN whatever its dictionary VR."""
    ds._dict[BaseTag(tag)] = RawDataElement(BaseTag(tag), "UN", len(value), value, 0, False, True)


def make_planted_instance() -> tuple[Dataset, set[str]]:
    """A CT instance with a distinct planted value in every Table E.1-1 attribute that must
    not survive - top level, nested in a kept sequence, in a kept private sequence, in
    removed private elements, UN elements, overlays, curves and the file meta.

    Returns the dataset and the set of planted strings none of which may appear in the
    de-identified output."""
    planted: set[str] = set()
    ds = make_ct_series(1, patient=PATIENT_NAME, patient_id=PATIENT_ID, issuer="PLANTISSUER")[0]
    family = "PLANTFAMILY"
    planted |= {family, "PLANTGIVEN", PATIENT_ID, BIRTH_DATE, "PLANTISSUER"}
    planted |= {ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID}
    planted |= {ds.FrameOfReferenceUID, "REFERRER", "ROBERT", "OPERATOR", "OLIVIA"}
    planted |= {"St Elsewhere General", "CTSTATION9", f"ACC{PATIENT_ID}", "STUDY42"}
    ds.PatientBirthDate = BIRTH_DATE
    _plant_table(ds, "P", planted, family)
    ds.Modality = "CT"  # (0008,0060) is not in the table, but keep the instance a CT
    ds.PatientAge = "047Y"  # banded to 045Y
    # The same attributes nested in a kept (not listed) sequence.
    nested = Dataset()
    _plant_table(nested, "N", planted, family)
    ds.AnatomicRegionSequence = Sequence([nested])
    # A sequence encoded as UN (explicit VR file): decoded via its dictionary VR.
    un_item = Dataset()
    un_item.PatientName = "UNPLANT^HIDDEN"
    un_item.OtherPatientIDs = "UNPLANTID9"
    planted |= {"UNPLANT", "HIDDEN", "UNPLANTID9"}
    _add_un(ds, 0x00400275, _un_sequence_bytes(un_item))  # Request Attributes Sequence
    _add_un(ds, 0x00101001, b"UNOTHERNAME^X ")  # Other Patient Names
    planted.add("UNOTHERNAME")
    # Private: a KB-safe private sequence (kept) holding standard identifiers, and
    # private elements the KB does not mark safe (removed), with planted values.
    block = ds.private_block(0x0029, "MMCPrivate", create=True)
    inner = Dataset()
    inner.PatientName = "PRIVSEQ^NAMEPLANT"
    inner.PatientID = "PRIVSEQID55"
    inner.StudyInstanceUID = SRC_ROOT + "55.1"
    planted |= {"PRIVSEQ", "NAMEPLANT", "PRIVSEQID55", SRC_ROOT + "55.1"}
    block.add_new(0x50, "SQ", Sequence([inner]))
    evil = ds.private_block(0x0033, "EVIL CORP PRIVATE", create=True)
    evil.add_new(0x10, "LO", "EVILPRIVATEPLANT")
    evil.add_new(0x11, "PN", "EVILDOCTOR^PLANT")
    evil.add_new(0x12, "SQ", Sequence([Dataset()]))
    evil[0x12].value[0].PatientID = "EVILNESTEDID"
    planted |= {"EVILPRIVATEPLANT", "EVILDOCTOR", "EVILNESTEDID", "EVIL CORP PRIVATE"}
    # Overlay, curve and graphic annotation with planted text.
    ds.add(DataElement(0x60000010, "US", 64))
    ds.add(DataElement(0x60000011, "US", 64))
    ds.add(DataElement(0x60000040, "CS", "G"))
    ds.add(DataElement(0x60000050, "SS", [1, 1]))
    ds.add(DataElement(0x60000100, "US", 1))
    ds.add(DataElement(0x60000102, "US", 0))
    ds.add(DataElement(0x60003000, "OW", b"OVLPLANTBYTES0" + b"\x00" * 498))
    ds.add(DataElement(0x60004000, "LT", "OVERLAYCOMMENTPLANT"))
    ds.add(DataElement(0x50003000, "OW", b"CURVEPLANTBYTES0"))
    planted |= {"OVLPLANTBYTES", "OVERLAYCOMMENTPLANT", "CURVEPLANTBYTES"}
    graphic = Dataset()
    text = Dataset()
    text.UnformattedTextValue = "GRAPHICTEXTPLANT"
    graphic.TextObjectSequence = Sequence([text])
    ds.GraphicAnnotationSequence = Sequence([graphic])
    planted.add("GRAPHICTEXTPLANT")
    # File meta.
    ds.file_meta.SourceApplicationEntityTitle = "SRCAEPLANT"
    ds.file_meta.SendingApplicationEntityTitle = "SENDAEPLANT"
    ds.file_meta.ReceivingApplicationEntityTitle = "RECVAEPLANT"
    ds.file_meta.PrivateInformationCreatorUID = SRC_ROOT + "88.8"
    ds.file_meta.PrivateInformation = b"METAPRIVATEPLANT"
    ds.file_meta.ImplementationVersionName = "IMPLVERPLANT"
    planted |= {"SRCAEPLANT", "SENDAEPLANT", "RECVAEPLANT", SRC_ROOT + "88.8"}
    planted |= {"METAPRIVATEPLANT", "IMPLVERPLANT"}
    # Keep the instance sensible for the engine's own checks.
    for tag in (0x00280301, 0x00280302, 0x00080064):  # BurnedIn/Recognizable/ConversionType
        if tag in ds:
            del ds[tag]
    ds.BurnedInAnnotation = "NO"
    return ds, planted


def make_sr_instance(patient: str = PATIENT_NAME, patient_id: str = PATIENT_ID) -> Dataset:
    """A small Basic Text SR with identifiers in TEXT, PNAME, DATE and subject items."""
    from pydicom.uid import BasicTextSRStorage

    ds = Dataset()
    sop_uid = generate_uid(prefix=SRC_ROOT)
    ds.file_meta = _meta(BasicTextSRStorage, sop_uid)
    ds.SOPClassUID = BasicTextSRStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = generate_uid(prefix=SRC_ROOT)
    ds.SeriesInstanceUID = generate_uid(prefix=SRC_ROOT)
    ds.Modality = "SR"
    ds.PatientName = patient
    ds.PatientID = patient_id
    ds.PatientBirthDate = BIRTH_DATE
    ds.StudyDate = ds.ContentDate = "20240105"
    ds.ValueType = "CONTAINER"

    def code(value: str, scheme: str, meaning: str) -> Sequence:
        c = Dataset()
        c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, scheme, meaning
        return Sequence([c])

    ds.ConceptNameCodeSequence = code("18782-3", "LN", "Radiology Study observation")
    items = []
    t = Dataset()
    t.RelationshipType, t.ValueType = "CONTAINS", "TEXT"
    t.ConceptNameCodeSequence = code("121071", "DCM", "Finding")
    t.TextValue = f"Nodule seen. Discussed with {patient.split('^')[0]}, DOB 17/03/1958."
    items.append(t)
    p = Dataset()
    p.RelationshipType, p.ValueType = "HAS OBS CONTEXT", "PNAME"
    p.ConceptNameCodeSequence = code("121008", "DCM", "Person Observer Name")
    p.PersonName = "OBSERVERPLANT^OTTO"
    items.append(p)
    s = Dataset()
    s.RelationshipType, s.ValueType = "HAS OBS CONTEXT", "TEXT"
    s.ConceptNameCodeSequence = code("121030", "DCM", "Subject ID")
    s.TextValue = "SUBJECTIDPLANT"
    items.append(s)
    d = Dataset()
    d.RelationshipType, d.ValueType = "CONTAINS", "DATE"
    d.ConceptNameCodeSequence = code("111060", "DCM", "Study Date")
    d.Date = "20240105"
    items.append(d)
    ds.ContentSequence = Sequence(items)
    return ds


def make_nm_j2k(frames: int = 8, *, study_uid: str | None = None, lossless: bool = True) -> Dataset:
    """A multi-frame nuclear-medicine image in JPEG 2000 (issue 22: such thumbnails were
    broken icons): 16-bit frames with smooth structure, encoded by pydicom (openjpeg)."""
    from pydicom.uid import JPEG2000, JPEG2000Lossless, NuclearMedicineImageStorage

    ds = make_ct_series(1, study_uid=study_uid, series_number=2)[0]
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = NuclearMedicineImageStorage
    ds.Modality = "NM"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "STATIC", "EMISSION"]
    ds.SeriesDescription = "Bone scan"
    ds.NumberOfFrames = frames
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    for name in ("RescaleIntercept", "RescaleSlope", "SliceLocation", "KVP"):
        delattr(ds, name)
    yy, xx = np.mgrid[0 : ds.Rows, 0 : ds.Columns]
    arr = np.stack(
        [((np.sin(xx / 6 + f) + 1) * 1000 + yy * 10).astype(np.uint16) for f in range(frames)]
    )
    ds.PixelData = arr.tobytes()
    if lossless:
        ds.compress(JPEG2000Lossless, arr, encoding_plugin="pylibjpeg")
    else:
        ds.compress(JPEG2000, arr, encoding_plugin="pylibjpeg", j2k_cr=[10])
    return ds


def make_rt_plan(*, study_uid: str | None = None) -> Dataset:
    """An RT Plan without pixels (its thumbnail must be a typed icon, never a 500)."""
    from pydicom.uid import RTPlanStorage

    ds = Dataset()
    sop_uid = generate_uid(prefix=SRC_ROOT)
    ds.file_meta = _meta(RTPlanStorage, sop_uid)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID, ds.SOPInstanceUID = RTPlanStorage, sop_uid
    ds.StudyInstanceUID = study_uid or generate_uid(prefix=SRC_ROOT)
    ds.SeriesInstanceUID = generate_uid(prefix=SRC_ROOT)
    ds.FrameOfReferenceUID = generate_uid(prefix=SRC_ROOT)
    ds.Modality = "RTPLAN"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = (
        "DOE^JANE", "PID123", "19700101", "F",
    )  # fmt: skip
    ds.StudyDate = ds.SeriesDate = "20240105"
    ds.StudyTime = ds.SeriesTime = "101500"
    ds.AccessionNumber, ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "ACCPID123", "S1", 3, 1
    ds.Manufacturer = "ACME MEDICAL"
    ds.RTPlanLabel, ds.RTPlanGeometry = "PLAN1", "PATIENT"
    ds.RTPlanDate, ds.RTPlanTime = "20240105", "101500"
    return ds
