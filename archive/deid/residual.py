"""Residual-identifier check: does any kept text still carry an identifier?

Used after de-identification on every kept text value (and by the catalogue on free
text). Hits are described by kind only - the matched value never leaves this module.
"""

from __future__ import annotations

import bisect
import datetime as _dt
import re
from collections.abc import Sequence
from functools import lru_cache

# Ten digits, optionally grouped 3-3-4 by spaces or hyphens, not inside a longer number.
_TEN_DIGITS = re.compile(r"(?<![\d.])(\d{3})[ -]?(\d{3})[ -]?(\d{4})(?![\d])")
_MONTHS = (
    "January February March April May June July August September October November December"
).split()


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


def date_variants(value: str) -> list[str]:
    """Usual written forms of a DICOM date (YYYYMMDD): ISO, UK, US, short year, words."""
    v = value.strip()
    if not re.fullmatch(r"\d{8}", v):
        return []
    try:
        d = _dt.date(int(v[:4]), int(v[4:6]), int(v[6:]))
    except ValueError:
        return []
    y, m, dd = f"{d.year:04d}", f"{d.month:02d}", f"{d.day:02d}"
    mon = _MONTHS[d.month - 1]
    out = {v, f"{y}-{m}-{dd}", f"{y}/{m}/{dd}", f"{y}.{m}.{dd}"}
    for sep in "/-. ":
        out |= {f"{dd}{sep}{m}{sep}{y}", f"{m}{sep}{dd}{sep}{y}", f"{dd}{sep}{m}{sep}{y[2:]}"}
        out |= {f"{d.day}{sep}{d.month}{sep}{y}", f"{d.month}{sep}{d.day}{sep}{y}"}
    out |= {f"{d.day} {mon} {y}", f"{d.day} {mon[:3]} {y}", f"{mon} {d.day} {y}"}
    out |= {f"{mon[:3]} {d.day} {y}", f"{d.day}-{mon[:3]}-{y}", f"{dd}{mon[:3]}{y}"}
    return sorted(out)


@lru_cache(maxsize=256)
def _known_pattern(known: tuple[str, ...]) -> tuple[re.Pattern[str], dict[str, str]] | None:
    kinds: dict[str, str] = {}
    for k in known:
        variants = date_variants(k)
        for v in variants:
            kinds[v.lower()] = "known date (e.g. of birth)"
        if not variants:
            kinds.setdefault(k.lower(), "known identifier (name or ID)")
    if not kinds:
        return None
    alternation = "|".join(re.escape(t) for t in sorted(kinds, key=len, reverse=True))
    # Word boundaries that also work for terms starting or ending with punctuation.
    pat = re.compile(rf"(?<![A-Za-z0-9])(?:{alternation})(?![A-Za-z0-9])", re.IGNORECASE)
    return pat, kinds


def known_pattern(known: Sequence[str]) -> tuple[re.Pattern[str], dict[str, str]] | None:
    """Compiled, cached matcher for the identifiers (and written forms of dates), with
    the kind of each term."""
    return _known_pattern(tuple(sorted({k.strip() for k in known if k and k.strip()})))


def _pattern_hits(text: str) -> list[tuple[int, str]]:
    hits = []
    for m in _TEN_DIGITS.finditer(text):
        digits = "".join(m.groups())
        if is_hc_number(digits):
            hits.append((m.start(), "Health & Care number pattern"))
        elif nhs_check_digit_ok(digits):
            hits.append((m.start(), "NHS number with valid check digit"))
    return hits


def _known_hits(text: str, known: Sequence[str]) -> list[tuple[int, str]]:
    compiled = known_pattern(known) if known else None
    if compiled is None:
        return []
    pat, kinds = compiled
    unknown = "known identifier (name or ID)"
    return [(m.start(), kinds.get(m.group(0).lower(), unknown)) for m in pat.finditer(text)]


def scan_text(text: str, known: Sequence[str] = ()) -> list[str]:
    """Hit descriptions (never the matched value) for one free-text value: identifier
    numbers, the known identifiers, and every free-text identifier form (names after a
    title, phone numbers, e-mail, postcodes, record numbers, dates; archive/deid/freetext)."""
    from archive.deid.freetext import find

    old = _pattern_hits(text) + _known_hits(text, known)
    found = [kind for _, kind in old]
    starts = {at for at, _ in old}
    for hit in find(text):
        if not any(hit.start <= at < hit.end for at in starts):
            found.append(hit.kind)
    return found


def scan_many(texts: Sequence[str], known: Sequence[str] = ()) -> list[tuple[int, str]]:
    """(index of the text, hit description) over many values in one regex pass each."""
    if not texts:
        return []
    joined = "\x00".join(texts)
    starts, pos = [], 0
    for t in texts:
        starts.append(pos)
        pos += len(t) + 1
    hits = _pattern_hits(joined) + _known_hits(joined, known)
    return [(bisect.bisect_right(starts, at) - 1, kind) for at, kind in hits]
