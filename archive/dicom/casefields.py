"""What a DICOM workstation sees of a teaching case: the case ID and title, never patient data.

OsiriX, Horos and Weasis list studies by PatientName, PatientID, AccessionNumber and
StudyDescription. The stored (de-identified) headers carry only a pseudonym there, which a
trainer cannot match to the catalogue. The front therefore answers these four from the
catalogue, in C-FIND answers and in the headers of the files a C-MOVE or C-GET sends
(docs/OSIRIX.md):

    PatientID         the case ID                       (LO, 64)
    PatientName       the case ID                       (PN)
    AccessionNumber   the case ID (compacted to 16)     (SH, 16)
    StudyDescription  the case title, else the study's
                      de-identified description         (LO, 64)

All four are built from the case ID and the title, which the catalogue scans for
identifiers when a trainer saves it; none comes from the stored headers. They are read at
each request, so an edited title shows in the next C-FIND and the next retrieve.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

ACCESSION_MAX = 16  # SH
LO_MAX = 64
_LO_FORBIDDEN = re.compile(r"[\\\x00-\x1f]")  # LO: no backslash, no control characters


def accession_number(case_id: str) -> str:
    """The case ID as an AccessionNumber (SH: at most 16 characters). A case ID of a
    prefix of up to 5 characters (e.g. NSR-2026-00042) fits whole; a longer one loses
    its hyphens, then keeps its last 16 characters (the year and number stay)."""
    value = case_id.strip()
    if len(value) > ACCESSION_MAX:
        value = value.replace("-", "")
    return value[-ACCESSION_MAX:]


_PUNCTUATION = str.maketrans({"\u2013": "-", "\u2014": "-", "\u2018": "'", "\u2019": "'",
                              "\u201c": '"', "\u201d": '"', "\u00d7": "x"})  # fmt: skip


def ascii_text(text: str) -> str:
    """The default character repertoire (ASCII), which every viewer shows and which
    needs no SpecificCharacterSet: accents are dropped (é -> e), dashes and quotes
    become their ASCII forms, anything else becomes '?'."""
    folded = unicodedata.normalize("NFKD", (text or "").translate(_PUNCTUATION))
    return "".join(c if ord(c) < 128 else ("" if unicodedata.combining(c) else "?") for c in folded)


def lo(text: str) -> str:
    """A one-line ASCII LO value: no backslash or control characters, at most 64."""
    return _LO_FORBIDDEN.sub(" ", ascii_text(text)).strip()[:LO_MAX].strip()


def study_description(case: Any) -> str:
    return lo(getattr(case, "title", "") or getattr(case, "study_description", "") or "")


def case_fields(case: Any) -> dict[str, str]:
    """The patient and study keys a workstation shows, from the catalogue's case."""
    return {
        "PatientID": lo(case.case_id),
        "PatientName": lo(case.case_id),
        "AccessionNumber": accession_number(lo(case.case_id)),
        "StudyDescription": study_description(case),
    }


def patch_dataset(ds: Any, case: Any) -> Any:
    """Set the four keys in a dataset read from the vault (before it is sent)."""
    for keyword, value in case_fields(case).items():
        setattr(ds, keyword, value)
    return ds
