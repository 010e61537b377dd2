"""Identifiers in free text that have no header counterpart (issue 24).

Header cleaning removes what the instance itself says about the patient (names, IDs,
dates, institution); this module finds what free text says without any header saying it
too: a title followed by a name, phone numbers, e-mail addresses, postcodes, MRN and
hospital-number forms, NHS, CHI and H&C numbers, and dates in any written form.

- `find(text)` gives the hits (kind and span; the kind never includes the value).
- `clean(text, offset_days)` removes every hit, except dates with a day, a month and a
  year, which are shifted by the patient's offset (the same shift as the header dates),
  so that intervals in a history survive.
- `distinctive_words(name)` gives the words of a multi-word name worth matching on their
  own ("ST WULFSTAN INFIRMARY" -> "WULFSTAN"), leaving common words out.

Used by the de-identification engine on cleaned text, by the residual check after it,
and by the catalogue on teaching text typed by users (a hit there is refused).
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass

_MONTHS = (
    "january february march april may june july august september october november december"
).split()
_MONTH_RE = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_DAY = r"(?:[12]\d|3[01]|0?[1-9])"
_ORD = r"(?:st|nd|rd|th)?"
_YEAR4 = r"(?:19|20)\d\d"

# Titles that come before a person's name (English, with common medical ones).
# "MR" and "MS" are also a modality and a disease: only "Mr", "Ms" and "MR." count.
_TITLES = (
    r"(?:(?i:mrs|miss|mx|dr|prof|professor|sister|nurse|rev|revd|father|sir|dame|lady|lord)"
    r"|Mr|Ms|MR(?=\.)|MS(?=\.))"
)
_NAME = r"[A-Z][a-zA-Z'\-]+"

_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "e-mail address",
        re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"),
    ),
    (
        "title and name",
        re.compile(rf"\b{_TITLES}\.?\s+(?:{_NAME}\s+){{0,2}}{_NAME}"),
    ),
    (
        "relative's name",
        re.compile(
            r"\b(?i:daughter|son|wife|husband|mother|mum|father|dad|sister|brother|partner|"
            r"carer|friend|neighbour|niece|nephew|aunt|uncle|grandson|granddaughter|"
            r"next\s+of\s+kin|nok)(?:'s)?(?:\s+(?i:is|called|named|name))?[\s:,(]+"
            rf"{_NAME}(?:\s+{_NAME})?"
        ),
    ),
    (
        "phone number",
        re.compile(
            r"(?<![\w.])(?:"
            r"\+\d{1,3}[\s.-]?\(?\d{1,4}\)?(?:[\s.-]?\d{2,4}){2,4}"  # international
            r"|\(?0\d{2,4}\)?[\s.-]?\d{3,4}[\s.-]?\d{3,4}"  # UK national: 0xxx xxx xxxx
            r"|(?:tel|phone|mob(?:ile)?|ext|bleep|pager)\.?:?\s*\d[\d\s-]{2,}\d"  # labelled
            r")(?![\w.])",
            re.IGNORECASE,
        ),
    ),
    (
        "postcode",
        re.compile(r"\b[A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2}\b"),
    ),
    (
        "hospital or record number",
        re.compile(
            r"\b(?:mrn|hosp(?:ital)?\.?\s*(?:no|number|num)|h(?:osp)?\s*no|"
            r"unit\s*(?:no|number)|rxn|record\s*(?:no|number)|case\s*no|"
            r"patient\s*(?:id|no|number)|pid|chi|nhs\s*(?:no|number)?|h&c\s*(?:no|number)?)"
            r"\.?\s*[:#=]?\s*[A-Z0-9/-]*\d[A-Z0-9/-]*(?:\s\d{3,4}){0,3}",
            re.IGNORECASE,
        ),
    ),
    (
        "identifier code",
        # Letters and digits joined by a hyphen or mixed, six or more long, with at least
        # three digits: "PLANT-99117", "RX1234567", "AB123456C" (NI numbers).
        re.compile(r"\b(?=[A-Z0-9-]*\d{3})(?=[A-Z0-9-]*[A-Z])[A-Z]{1,6}-?\d{4,10}[A-Z]?\b"),
    ),
)

_DATE_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    # 2019-03-04, 2019/03/04, 2019.03.04
    ("ymd", re.compile(rf"\b({_YEAR4})[-/.](0?[1-9]|1[0-2])[-/.]({_DAY})\b")),
    # 04/03/2019, 4-3-19, 04.03.2019 (read day first, as in the UK)
    ("dmy", re.compile(rf"\b({_DAY})[/.-](0?[1-9]|1[0-2])[/.-]((?:19|20)?\d\d)\b")),
    # 4th March 2019, 4 Mar 19, 04-Mar-2019
    (
        "d mon y",
        re.compile(
            rf"\b({_DAY}){_ORD}[\s-]*(?:of\s+)?({_MONTH_RE})\.?,?[\s-]*((?:19|20)?\d\d)\b",
            re.IGNORECASE,
        ),
    ),
    # March 4th, 2019
    (
        "mon d y",
        re.compile(rf"\b({_MONTH_RE})\.?\s+({_DAY}){_ORD},?\s+({_YEAR4})\b", re.IGNORECASE),
    ),
    # 20190304 (a DICOM-style date standing alone)
    ("yyyymmdd", re.compile(r"(?<!\d)((?:19|20)\d\d)(0[1-9]|1[0-2])([0-2]\d|3[01])(?!\d)")),
    # March 2019, 4 March (partial dates: removed, a shift cannot be exact)
    ("mon y", re.compile(rf"\b({_MONTH_RE})\.?,?\s+({_YEAR4})\b", re.IGNORECASE)),
    ("d mon", re.compile(rf"\b({_DAY}){_ORD}\s+(?:of\s+)?({_MONTH_RE})\b", re.IGNORECASE)),
)

# Common words of institution and department names, never matched on their own.
STOP_WORDS = frozenset(
    """
    the of and for at in on to a an st saint royal general district county city hospital
    hospitals infirmary clinic clinics centre center medical health healthcare care trust
    nhs foundation university college school institute department dept radiology imaging
    unit ward wing building house road street lane north south east west northern southern
    eastern western central new old great upper lower community memorial childrens
    children women womens mens private practice group services service diagnostic
    diagnostics scan scanning suite mri ct us pet nm xray x-ray a&e ed emergency main site
    campus teaching regional national international mr mrs ms dr prof
    """.split()
)


def nhs_check_digit_ok(digits: str) -> bool:
    """Modulus-11 check used by NHS (England/Wales), CHI and H&C numbers."""
    if len(digits) != 10 or not digits.isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(digits[:9], range(10, 1, -1), strict=True))
    check = 11 - total % 11
    if check == 11:
        check = 0
    return check != 10 and check == int(digits[9])


def is_hc_number(digits: str) -> bool:
    """Northern Ireland Health & Care numbers are issued from 320 000 0001 to 399 999 9999."""
    return len(digits) == 10 and digits.isdigit() and "3200000001" <= digits <= "3999999999"


@dataclass(frozen=True)
class Hit:
    kind: str
    start: int
    end: int
    date: _dt.date | None = None  # a whole date that may be shifted instead of removed


def _year(text: str) -> int:
    y = int(text)
    return y + (2000 if y < 50 else 1900) if len(text) == 2 else y


def _month(text: str) -> int:
    if text.isdigit():
        return int(text)
    key = text.lower().rstrip(".")[:3]
    return next(i for i, m in enumerate(_MONTHS, 1) if m.startswith(key))


def _date_hits(text: str) -> list[Hit]:
    hits: list[Hit] = []
    for kind, pattern in _DATE_PATTERNS:
        for m in pattern.finditer(text):
            g = m.groups()
            day = None
            try:
                if kind in ("ymd", "yyyymmdd"):
                    day = _dt.date(int(g[0]), int(g[1]), int(g[2]))
                elif kind == "dmy":
                    day = _dt.date(_year(g[2]), int(g[1]), int(g[0]))
                elif kind == "d mon y":
                    day = _dt.date(_year(g[2]), _month(g[1]), int(g[0]))
                elif kind == "mon d y":
                    day = _dt.date(int(g[2]), _month(g[0]), int(g[1]))
            except (ValueError, StopIteration):
                day = None
            hits.append(Hit("date", m.start(), m.end(), day))
    return hits


def _digit_hits(text: str) -> list[Hit]:
    hits = []
    for m in re.finditer(r"(?<![\d.])(\d{3})[ -]?(\d{3})[ -]?(\d{4})(?!\d)", text):
        digits = "".join(m.groups())
        if is_hc_number(digits):
            hits.append(Hit("Health & Care number pattern", m.start(), m.end()))
        elif nhs_check_digit_ok(digits):
            hits.append(Hit("NHS number with valid check digit", m.start(), m.end()))
    # CHI numbers start with a date of birth (DDMMYY); the check digit covers them above.
    return hits


def _raw(text: str, dates: bool) -> list[Hit]:
    if not text:
        return []
    hits = _digit_hits(text)
    for kind, pattern in _PATTERNS:
        hits.extend(Hit(kind, m.start(), m.end()) for m in pattern.finditer(text))
    if dates:
        hits.extend(_date_hits(text))
    return hits


def find(text: str, *, dates: bool = True) -> list[Hit]:
    """Every identifier-like span in `text`; overlapping spans are merged into one."""
    hits = _raw(text, dates)
    hits.sort(key=lambda h: (h.start, -(h.end - h.start)))
    merged: list[Hit] = []
    for hit in hits:
        if merged and hit.start < merged[-1].end:
            last = merged[-1]
            if hit.end > last.end:  # overlapping spans become one, removed whole
                merged[-1] = Hit(last.kind, last.start, hit.end, None)
            continue
        merged.append(hit)
    return merged


def kinds(text: str) -> list[str]:
    """The kinds of identifier found (never the values), for messages and audit."""
    return list(dict.fromkeys(h.kind for h in sorted(_raw(text, True), key=lambda h: h.start)))


def _format_like(original: str, day: _dt.date) -> str:
    """The shifted date written plainly (ISO), whatever form the original had."""
    return day.isoformat()


def clean(text: str, offset_days: int) -> tuple[str, list[str]]:
    """`text` without identifiers: whole dates shifted by `offset_days`, the rest removed.

    Returns the cleaned text and the kinds that were found."""
    hits = find(text)
    if not hits:
        return text, []
    out: list[str] = []
    pos = 0
    for hit in hits:
        out.append(text[pos : hit.start])
        if hit.date is not None:
            try:
                out.append(
                    _format_like(text[hit.start : hit.end], hit.date + _dt.timedelta(offset_days))
                )
            except OverflowError:
                pass
        pos = hit.end
    out.append(text[pos:])
    cleaned = re.sub(r"[ \t]{2,}", " ", "".join(out)).strip(" ,;:-")
    return cleaned, kinds(text)


def distinctive_words(name: str, min_length: int = 4) -> list[str]:
    """The words of a multi-word name that identify it on their own.

    "ST WULFSTAN INFIRMARY" -> ["WULFSTAN"]; "Royal Infirmary" -> []."""
    words = [w for w in re.split(r"[\s^,.;:/()&'\"-]+", name) if w]
    if len(words) < 2:
        return []
    return [
        w for w in words if len(w) >= min_length and w.lower() not in STOP_WORDS and not w.isdigit()
    ]
