"""Reading the audit log for people: filters and CSV/JSON export.

Queries read the file without the writers' lock (appends are whole lines written with
one write call), so `archive audit show` never blocks the archive. Querying does not
verify: run `archive audit verify` for that.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from archive.audit.events import AuditError
from archive.audit.log import LOG_NAME

EXPORT_COLUMNS = (
    "seq",
    "timestamp",
    "action",
    "outcome",
    "actor",
    "roles",
    "source",
    "target",
    "detail",
)


def parse_time(value: datetime | str | None) -> datetime | None:
    """Accept a datetime or ISO-8601 text (a date alone means its midnight UTC)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise AuditError(
                f"{value!r} is not a date/time; use ISO 8601 such as 2025-01-31 or "
                "2025-01-31T14:00:00Z."
            ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _action_matches(pattern: str, action: str) -> bool:
    """Exact name, or a prefix: 'auth' and 'auth.*' both match 'auth.login'."""
    prefix = pattern[:-2] if pattern.endswith(".*") else pattern
    return action == prefix or action.startswith(prefix + ".")


def iter_records(directory: Path | str | Any) -> list[dict[str, Any]]:
    """Every well-formed record, in file order (malformed lines are skipped here).

    `directory` is HOME/data/audit, or a PgChain (archive.audit.audit_source)."""
    if hasattr(directory, "data"):
        data = directory.data()
    else:
        try:
            data = (Path(directory) / LOG_NAME).read_bytes()
        except FileNotFoundError:
            return []
    records = []
    for raw in data.split(b"\n"):
        if not raw:
            continue
        try:
            record = json.loads(raw)
        except ValueError:
            continue
        if isinstance(record, dict) and "seq" in record:
            records.append(record)
    return records


def query(
    directory: Path | str | Any,
    user: str | None = None,
    case: str | None = None,
    action: str | None = None,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    outcome: str | None = None,
) -> list[dict[str, Any]]:
    """Records matching every given filter; `until` is exclusive, `since` inclusive."""
    start, end = parse_time(since), parse_time(until)
    rows = []
    for record in iter_records(directory):
        if user is not None and record.get("actor") != user:
            continue
        if case is not None and record.get("target") != case:
            continue
        if action is not None and not _action_matches(action, str(record.get("action"))):
            continue
        if outcome is not None and record.get("outcome") != outcome:
            continue
        if start or end:
            when = parse_time(str(record.get("timestamp")))
            if when is None or (start and when < start) or (end and when >= end):
                continue
        rows.append(record)
    return rows


def to_json(rows: list[dict[str, Any]]) -> str:
    """The records as a JSON array (hashes kept, so an export can be re-checked)."""
    return json.dumps(rows, indent=2, sort_keys=True, ensure_ascii=False)


def to_csv(rows: list[dict[str, Any]]) -> str:
    """One row per record; roles joined by ';', detail as compact JSON."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    for row in rows:
        writer.writerow(
            [
                row.get("seq"),
                row.get("timestamp"),
                row.get("action"),
                row.get("outcome"),
                row.get("actor"),
                ";".join(row.get("roles") or []),
                row.get("source"),
                row.get("target") or "",
                json.dumps(row.get("detail") or {}, sort_keys=True, separators=(",", ":")),
            ]
        )
    return out.getvalue()
