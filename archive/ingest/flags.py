"""Pixel flags per de-identified series: facial features possible, photograph consent.

Recorded at ingest (and at a quarantine release) so the catalogue can show them and
refuse publication-level promotion until a reviewer has decided each flag explicitly.
Keyed by de-identified UIDs only; a flag never carries a patient value.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Double,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    inspect,
    select,
    update,
)

from archive import db
from archive.pixels.face import FaceResult, SliceFace, is_face_slice, series_face
from archive.pixels.policy import FacialRules

metadata = MetaData()
Int = BigInteger().with_variant(Integer(), "sqlite")

flags_table = Table(
    "ingest_flags",
    metadata,
    Column("study_uid", Text, primary_key=True),
    Column("series_uid", Text, primary_key=True),
    Column("flag", Text, primary_key=True),
    Column("recorded_at", Text, nullable=False),
    Column("decided_by", Text),
    Column("decided_at", Text),
    Column("decision_note", Text),
)
Index("ingest_flags_study", flags_table.c.study_uid)
face_slices = Table(
    "ingest_face_slices",
    metadata,
    Column("study_uid", Text, primary_key=True),
    Column("series_uid", Text, primary_key=True),
    Column("sop_uid", Text, primary_key=True),
    Column("position", Double, nullable=False),
    Column("thickness", Double),
    Column("head_sized", Int, nullable=False),
    Column("protrusion_mm", Double, nullable=False),
)
pixel_reports = Table(
    "ingest_pixel_reports",
    metadata,
    Column("study_uid", Text, primary_key=True),
    Column("series_uid", Text, primary_key=True),
    Column("sop_uid", Text, primary_key=True),
    Column("modality", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("assessed", Int, nullable=False),
    Column("ocr_frames", Int, nullable=False),
    Column("ocr_words", Int, nullable=False),
    Column("ocr_kinds", Text, nullable=False),
    Column("template", Text),
    Column("ingested_by", Text, nullable=False),
    Column("recorded_at", Text, nullable=False),
)

# Homes made before issue 27 ran these steps as the equivalent SQL scripts.
SCHEMA = [
    db.create_tables(metadata, [flags_table]),
    db.create_tables(metadata, [face_slices]),
    db.create_tables(metadata, [pixel_reports]),
]


def _replacing(table: Table) -> Any:
    """Insert, or replace every non-key column of the row with the same key (built once
    per dialect: the ingest writes these per instance)."""

    def build(insert_for: Any) -> Any:
        statement = insert_for(table)
        keys = list(table.primary_key.columns)
        return statement.on_conflict_do_update(
            index_elements=keys,
            set_={c.name: statement.excluded[c.name] for c in table.columns if c not in keys},
        )

    return build


_REPLACE_FACE_SLICE = _replacing(face_slices)
_REPLACE_PIXEL_REPORT = _replacing(pixel_reports)


FACE_SURFACE_FLAG = "facial-surface"


def ensure_schema(conn: Any) -> None:
    db.migrate(conn, "ingest", SCHEMA)


def _readable(conn) -> bool:
    """Whether the ingest tables can be read: migrated now, or, inside a use case's open
    transaction (where a migration cannot start), already there. Not there: nothing was
    ever recorded, so there is nothing to read."""
    if db.dialect(conn) == "sqlite" and getattr(conn, "in_transaction", False):
        present = inspect(conn._sa)
        return all(present.has_table(t.name) for t in metadata.sorted_tables)
    ensure_schema(conn)
    return True


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def record_flags(conn: Any, study_uid: str, series_uid: str, flags: list[str]) -> None:
    """Remember each flag once per series (later instances of the series add nothing)."""
    if not flags:
        return
    ensure_schema(conn)
    conn.execute(
        db.dialect_insert(conn, flags_table).on_conflict_do_nothing(),
        [
            {"study_uid": study_uid, "series_uid": series_uid or "", "flag": flag,
             "recorded_at": _now()}
            for flag in dict.fromkeys(flags)
        ],
    )  # fmt: skip


def flags_for_study(conn: Any, study_uid: str) -> list[str]:
    """Flags of a study no reviewer has decided yet (sorted, each once).

    The catalogue shows these and refuses publication-level promotion while any remain.
    """
    if not _readable(conn):
        return []
    return conn.execute(
        select(flags_table.c.flag)
        .distinct()
        .where(flags_table.c.study_uid == study_uid, flags_table.c.decided_by.is_(None))
        .order_by(flags_table.c.flag)
    ).scalars()


def all_flags_for_study(conn: Any, study_uid: str) -> list[dict[str, str | None]]:
    """Every flag of a study with its decision, for display."""
    if not _readable(conn):
        return []
    f = flags_table.c
    rows = conn.execute(
        select(f.series_uid, f.flag, f.recorded_at, f.decided_by, f.decided_at, f.decision_note)
        .where(f.study_uid == study_uid)
        .order_by(f.series_uid, f.flag)
    )
    return [dict(row) for row in rows]


def decide_flag(conn: Any, study_uid: str, flag: str, reviewer: str, note: str) -> int:
    """A reviewer's explicit decision on a flag for the whole study; returns rows decided."""
    ensure_schema(conn)
    if not reviewer or not note:
        raise ValueError("a flag decision needs a reviewer name and a note saying why")
    cursor = conn.execute(
        update(flags_table)
        .where(
            flags_table.c.study_uid == study_uid,
            flags_table.c.flag == flag,
            flags_table.c.decided_by.is_(None),
        )
        .values(decided_by=reviewer, decided_at=_now(), decision_note=note)
    )
    return cursor.rowcount


# --- the face check from the pixels (issue 24) ---------------------------------------------


def record_face_slice(
    conn: Any,
    study_uid: str,
    series_uid: str,
    sop_uid: str,
    face: SliceFace,
    rules: FacialRules,
) -> FaceResult | None:
    """Remember one slice's face measures; flag the series once it covers a face.

    Returns the series' result when it had to be computed, None when no result could
    change the flags: the series already carries the flag (flags are never taken back
    here), or neither this slice nor any recorded one of the series shows a facial
    outline (series_face is then "not covered" whatever the spacing). Otherwise every
    slice row of the series is read, as before: a series sent in order is read whole
    only from its first facial slice until it is flagged, instead of once per slice
    (quadratic over the series; issue 26). The flags recorded are exactly those of
    computing the series result after every slice (tests/unit/test_pixels_face.py)."""
    ensure_schema(conn)
    series = series_uid or ""
    conn.execute(
        db.prepared(conn, _REPLACE_FACE_SLICE),
        {
            "study_uid": study_uid,
            "series_uid": series,
            "sop_uid": sop_uid,
            "position": face.position,
            "thickness": face.thickness,
            "head_sized": int(face.head_sized),
            "protrusion_mm": face.protrusion_mm,
        },
    )
    if _has_face_flag(conn, study_uid, series):
        return None
    if not is_face_slice(face, rules) and not _has_face_slice(conn, study_uid, series, rules):
        return None
    result = series_face_result(conn, study_uid, series_uid, rules)
    if result.covered:
        record_flags(conn, study_uid, series_uid, [FACE_SURFACE_FLAG])
    return result


def _has_face_flag(conn: Any, study_uid: str, series: str) -> bool:
    f = flags_table.c
    query = select(f.flag).where(
        f.study_uid == study_uid, f.series_uid == series, f.flag == FACE_SURFACE_FLAG
    )
    return conn.execute(query).first() is not None


def _has_face_slice(conn: Any, study_uid: str, series: str, rules: FacialRules) -> bool:
    f = face_slices.c
    query = (
        select(f.sop_uid)
        .where(
            f.study_uid == study_uid,
            f.series_uid == series,
            f.head_sized != 0,
            f.protrusion_mm >= rules.min_protrusion_mm,
        )
        .limit(1)
    )
    return conn.execute(query).first() is not None


def series_face_result(
    conn: Any, study_uid: str, series_uid: str, rules: FacialRules
) -> FaceResult:
    if not _readable(conn):
        return series_face([], rules)
    f = face_slices.c
    rows = conn.execute(
        select(f.position, f.thickness, f.head_sized, f.protrusion_mm).where(
            f.study_uid == study_uid, f.series_uid == (series_uid or "")
        )
    ).fetchall()
    return series_face([SliceFace(r[0], r[1], bool(r[2]), r[3]) for r in rows], rules)


def face_report(conn: Any, study_uid: str, rules: FacialRules) -> dict[str, dict[str, object]]:
    """The face result of every series of a study that was read (for the review)."""
    if not _readable(conn):
        return {}
    series = conn.execute(
        select(face_slices.c.series_uid).distinct().where(face_slices.c.study_uid == study_uid)
    ).scalars()
    return {s: series_face_result(conn, study_uid, s, rules).as_dict() for s in series}


def face_holds(conn: Any, studies: dict[str, str], rules: FacialRules, use: str) -> list[str]:
    """The seam governance calls: which of ``studies`` (case id -> study UID, limited-access
    cases only) must be held from ``use`` ("export" or "share") because a series covers a
    face and the pixel policy holds such cases. A reviewer's decision on the flag
    (``decide_flag``) lifts the hold for that study."""
    if use == "export" and not rules.hold_exports:
        return []
    if use == "share" and not rules.hold_shares:
        return []
    if not _readable(conn):
        return []
    held = []
    for case_id, study_uid in studies.items():
        row = conn.execute(
            select(flags_table.c.flag).where(
                flags_table.c.study_uid == study_uid,
                flags_table.c.flag == FACE_SURFACE_FLAG,
                flags_table.c.decided_by.is_(None),
            )
        ).fetchone()
        if row is not None:
            held.append(case_id)
    return held


# --- the pixel report of each released instance (for the publication review) -------------


def record_pixel_report(
    conn: Any,
    study_uid: str,
    series_uid: str,
    sop_uid: str,
    modality: str,
    outcome: dict[str, object],
    ingested_by: str,
) -> None:
    """What the pixel step did with one released instance: counts and kinds, no text."""
    ensure_schema(conn)
    ocr = outcome.get("ocr") or {}
    assert isinstance(ocr, dict)
    conn.execute(
        db.prepared(conn, _REPLACE_PIXEL_REPORT),
        {
            "study_uid": study_uid,
            "series_uid": series_uid or "",
            "sop_uid": sop_uid,
            "modality": modality,
            "action": str(outcome.get("action", "")),
            "assessed": int(bool(outcome.get("assessed"))),
            "ocr_frames": int(ocr.get("frames", 0) or 0),
            "ocr_words": int(ocr.get("words", 0) or 0),
            "ocr_kinds": ",".join(ocr.get("kinds", []) or []),
            "template": outcome.get("template"),
            "ingested_by": ingested_by,
            "recorded_at": _now(),
        },
    )


def pixel_report(conn: Any, study_uid: str) -> dict[str, dict[str, object]]:
    """Per series of a study: instances, how many OCR read, words found, masked, kinds."""
    if not _readable(conn):
        return {}
    p = pixel_reports.c
    rows = conn.execute(
        select(
            p.series_uid, p.modality, p.action, p.assessed, p.ocr_frames, p.ocr_words,
            p.ocr_kinds, p.template,
        )
        .where(p.study_uid == study_uid)
        .order_by(p.series_uid)
    ).fetchall()  # fmt: skip
    out: dict[str, dict[str, object]] = {}
    for series, modality, action, assessed, frames, words, kinds, template in rows:
        entry = out.setdefault(
            series,
            {
                "modality": modality,
                "instances": 0,
                "ocr_read": 0,
                "ocr_frames": 0,
                "words_found": 0,
                "masked": 0,
                "kinds": [],
                "templates": [],
            },
        )
        entry["instances"] += 1  # type: ignore[operator]
        entry["ocr_read"] += int(bool(assessed))  # type: ignore[operator]
        entry["ocr_frames"] += frames  # type: ignore[operator]
        entry["words_found"] += words  # type: ignore[operator]
        entry["masked"] += int(action == "masked")  # type: ignore[operator]
        for kind in filter(None, kinds.split(",")):
            if kind not in entry["kinds"]:  # type: ignore[operator]
                entry["kinds"].append(kind)  # type: ignore[union-attr]
        if template and template not in entry["templates"]:  # type: ignore[operator]
            entry["templates"].append(template)  # type: ignore[union-attr]
    return out


def uploaders(conn: Any, study_uid: str) -> list[str]:
    """Who ingested the study's released instances (a person, or an intake name)."""
    if not _readable(conn):
        return []
    rows = conn.execute(
        select(pixel_reports.c.ingested_by).distinct().where(pixel_reports.c.study_uid == study_uid)
    ).scalars()
    return sorted(r for r in rows if r)


def refuse_face_holds(ports, action: str, cases: dict, use: str) -> None:
    """The seam governance calls inside its use cases (removal request and export, share
    proposal and execution): limited-access cases whose series cover a face are refused
    with the reason and the next step, as policies/masking/policy.toml says."""
    from archive.core import Refusal, Refused
    from archive.pixels.policy import load_masking_policy

    rules = load_masking_policy(ports.policies_dir).facial
    limited = {c: case.study_uid for c, case in cases.items() if case.level != "publication"}
    held = face_holds(ports.db, limited, rules, use) if limited else []
    if held:
        raise Refused(
            Refusal(
                action,
                f"case(s) {', '.join(held)} hold a series that covers the patient's face "
                f"(found from the pixels); the policy holds their {use} at limited-access "
                "level",
                "Have the case reviewed to publication (defaced), or a reviewer decide the "
                "facial-surface flag, then try again.",
                "conflict",
            )
        )
