"""Pixel flags per de-identified series: facial features possible, photograph consent.

Recorded at ingest (and at a quarantine release) so the catalogue can show them and
refuse publication-level promotion until a reviewer has decided each flag explicitly.
Keyed by de-identified UIDs only; a flag never carries a patient value.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from archive import db
from archive.pixels.face import FaceResult, SliceFace, series_face
from archive.pixels.policy import FacialRules

SCHEMA = [
    """
    CREATE TABLE ingest_flags (
        study_uid TEXT NOT NULL,
        series_uid TEXT NOT NULL,
        flag TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        decided_by TEXT,
        decided_at TEXT,
        decision_note TEXT,
        PRIMARY KEY (study_uid, series_uid, flag)
    );
    CREATE INDEX ingest_flags_study ON ingest_flags (study_uid);
    """,
    """
    CREATE TABLE ingest_face_slices (
        study_uid TEXT NOT NULL,
        series_uid TEXT NOT NULL,
        sop_uid TEXT NOT NULL,
        position REAL NOT NULL,
        thickness REAL,
        head_sized INTEGER NOT NULL,
        protrusion_mm REAL NOT NULL,
        PRIMARY KEY (study_uid, series_uid, sop_uid)
    );
    """,
    """
    CREATE TABLE ingest_pixel_reports (
        study_uid TEXT NOT NULL,
        series_uid TEXT NOT NULL,
        sop_uid TEXT NOT NULL,
        modality TEXT NOT NULL,
        action TEXT NOT NULL,
        assessed INTEGER NOT NULL,
        ocr_frames INTEGER NOT NULL,
        ocr_words INTEGER NOT NULL,
        ocr_kinds TEXT NOT NULL,
        template TEXT,
        ingested_by TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        PRIMARY KEY (study_uid, series_uid, sop_uid)
    );
    """,
]

FACE_SURFACE_FLAG = "facial-surface"


def ensure_schema(conn: sqlite3.Connection) -> None:
    db.migrate(conn, "ingest", SCHEMA)


def _readable(conn) -> bool:
    """Whether the ingest tables can be read: migrated now, or, inside a use case's open
    transaction (where a migration cannot start), already there. Not there: nothing was
    ever recorded, so there is nothing to read."""
    if db.dialect(conn) == "sqlite" and getattr(conn, "in_transaction", False):
        (count,) = conn.execute(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN"
            " ('ingest_flags', 'ingest_face_slices', 'ingest_pixel_reports')"
        ).fetchone()
        return count == 3
    ensure_schema(conn)
    return True


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def record_flags(
    conn: sqlite3.Connection, study_uid: str, series_uid: str, flags: list[str]
) -> None:
    """Remember each flag once per series (later instances of the series add nothing)."""
    if not flags:
        return
    ensure_schema(conn)
    conn.executemany(
        "INSERT OR IGNORE INTO ingest_flags (study_uid, series_uid, flag, recorded_at)"
        " VALUES (?, ?, ?, ?)",
        [(study_uid, series_uid or "", flag, _now()) for flag in dict.fromkeys(flags)],
    )


def flags_for_study(conn: sqlite3.Connection, study_uid: str) -> list[str]:
    """Flags of a study no reviewer has decided yet (sorted, each once).

    The catalogue shows these and refuses publication-level promotion while any remain.
    """
    if not _readable(conn):
        return []
    rows = conn.execute(
        "SELECT DISTINCT flag FROM ingest_flags WHERE study_uid = ? AND decided_by IS NULL"
        " ORDER BY flag",
        (study_uid,),
    )
    return [row[0] for row in rows]


def all_flags_for_study(conn: sqlite3.Connection, study_uid: str) -> list[dict[str, str | None]]:
    """Every flag of a study with its decision, for display."""
    if not _readable(conn):
        return []
    rows = conn.execute(
        "SELECT series_uid, flag, recorded_at, decided_by, decided_at, decision_note"
        " FROM ingest_flags WHERE study_uid = ? ORDER BY series_uid, flag",
        (study_uid,),
    )
    return [dict(row) for row in rows]


def decide_flag(
    conn: sqlite3.Connection, study_uid: str, flag: str, reviewer: str, note: str
) -> int:
    """A reviewer's explicit decision on a flag for the whole study; returns rows decided."""
    ensure_schema(conn)
    if not reviewer or not note:
        raise ValueError("a flag decision needs a reviewer name and a note saying why")
    cursor = conn.execute(
        "UPDATE ingest_flags SET decided_by = ?, decided_at = ?, decision_note = ?"
        " WHERE study_uid = ? AND flag = ? AND decided_by IS NULL",
        (reviewer, _now(), note, study_uid, flag),
    )
    return cursor.rowcount


# --- the face check from the pixels (issue 24) ---------------------------------------------


def record_face_slice(
    conn: sqlite3.Connection,
    study_uid: str,
    series_uid: str,
    sop_uid: str,
    face: SliceFace,
    rules: FacialRules,
) -> FaceResult:
    """Remember one slice's face measures; flag the series once it covers a face."""
    ensure_schema(conn)
    conn.execute(
        "INSERT INTO ingest_face_slices (study_uid, series_uid, sop_uid, position,"
        " thickness, head_sized, protrusion_mm) VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (study_uid, series_uid, sop_uid) DO UPDATE SET"
        " position = excluded.position, thickness = excluded.thickness,"
        " head_sized = excluded.head_sized, protrusion_mm = excluded.protrusion_mm",
        (
            study_uid,
            series_uid or "",
            sop_uid,
            face.position,
            face.thickness,
            int(face.head_sized),
            face.protrusion_mm,
        ),
    )
    result = series_face_result(conn, study_uid, series_uid, rules)
    if result.covered:
        record_flags(conn, study_uid, series_uid, [FACE_SURFACE_FLAG])
    return result


def series_face_result(
    conn: sqlite3.Connection, study_uid: str, series_uid: str, rules: FacialRules
) -> FaceResult:
    if not _readable(conn):
        return series_face([], rules)
    rows = conn.execute(
        "SELECT position, thickness, head_sized, protrusion_mm FROM ingest_face_slices"
        " WHERE study_uid = ? AND series_uid = ?",
        (study_uid, series_uid or ""),
    ).fetchall()
    return series_face([SliceFace(r[0], r[1], bool(r[2]), r[3]) for r in rows], rules)


def face_report(
    conn: sqlite3.Connection, study_uid: str, rules: FacialRules
) -> dict[str, dict[str, object]]:
    """The face result of every series of a study that was read (for the review)."""
    if not _readable(conn):
        return {}
    series = [
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT series_uid FROM ingest_face_slices WHERE study_uid = ?",
            (study_uid,),
        )
    ]
    return {s: series_face_result(conn, study_uid, s, rules).as_dict() for s in series}


def face_holds(
    conn: sqlite3.Connection, studies: dict[str, str], rules: FacialRules, use: str
) -> list[str]:
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
            "SELECT 1 FROM ingest_flags WHERE study_uid = ? AND flag = ? AND decided_by IS NULL",
            (study_uid, FACE_SURFACE_FLAG),
        ).fetchone()
        if row is not None:
            held.append(case_id)
    return held


# --- the pixel report of each released instance (for the publication review) -------------


def record_pixel_report(
    conn: sqlite3.Connection,
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
        "INSERT INTO ingest_pixel_reports (study_uid, series_uid, sop_uid,"
        " modality, action, assessed, ocr_frames, ocr_words, ocr_kinds, template,"
        " ingested_by, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (study_uid, series_uid, sop_uid) DO UPDATE SET"
        " modality = excluded.modality, action = excluded.action,"
        " assessed = excluded.assessed, ocr_frames = excluded.ocr_frames,"
        " ocr_words = excluded.ocr_words, ocr_kinds = excluded.ocr_kinds,"
        " template = excluded.template, ingested_by = excluded.ingested_by,"
        " recorded_at = excluded.recorded_at",
        (
            study_uid,
            series_uid or "",
            sop_uid,
            modality,
            str(outcome.get("action", "")),
            int(bool(outcome.get("assessed"))),
            int(ocr.get("frames", 0) or 0),
            int(ocr.get("words", 0) or 0),
            ",".join(ocr.get("kinds", []) or []),
            outcome.get("template"),
            ingested_by,
            _now(),
        ),
    )


def pixel_report(conn: sqlite3.Connection, study_uid: str) -> dict[str, dict[str, object]]:
    """Per series of a study: instances, how many OCR read, words found, masked, kinds."""
    if not _readable(conn):
        return {}
    rows = conn.execute(
        "SELECT series_uid, modality, action, assessed, ocr_frames, ocr_words, ocr_kinds,"
        " template FROM ingest_pixel_reports WHERE study_uid = ? ORDER BY series_uid",
        (study_uid,),
    ).fetchall()
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


def uploaders(conn: sqlite3.Connection, study_uid: str) -> list[str]:
    """Who ingested the study's released instances (a person, or an intake name)."""
    if not _readable(conn):
        return []
    rows = conn.execute(
        "SELECT DISTINCT ingested_by FROM ingest_pixel_reports WHERE study_uid = ?",
        (study_uid,),
    )
    return sorted(r[0] for r in rows if r[0])


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
