"""Issue 27, enforced room by room: a room converted to SQLAlchemy Core never hands the
database a SQL string (`conn.execute("...")`, f-strings, concatenations, or a name bound
to a string literal). Core statements (select(), insert(), text() for fixed maintenance
like ANALYZE) pass. Nothing translates SQL any more: on PostgreSQL a string is refused
(archive.db.SqlStringError); the rooms in NOT_YET use strings only on bare SQLite files.

CONVERTED lists the rooms done; NOT_YET the rest, so the list of what remains is here
and nowhere else. A room moves from NOT_YET to CONVERTED when its module passes."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ARCHIVE = REPO / "archive"

CONVERTED = (
    "access",
    "audit",
    "catalogue",
    "cli",
    "dicom",
    "governance",
    "ingest",
    "intake",
    "quarantine",
    "teach",
    "transfer",
    "vault",
    "web",
)
NOT_YET = (
    "backup",  # reads SQLite files directly (snapshots, Orthanc's index)
    "core",  # BEGIN IMMEDIATE for a bare sqlite3 connection (usecase.transaction)
    "fsck",  # reads SQLite files directly; fsck on PostgreSQL is the other half
)
EXECUTE = {"execute", "executemany", "executescript", "exec_driver_sql"}


def sql_string_calls(source: str) -> list[tuple[int, str]]:
    """(line, method) of every execute-like call whose statement is a string."""
    tree = ast.parse(source)
    strings: set[str] = set()  # names assigned a string anywhere in the module
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and _is_string(node.value, set()):
            strings.update(t.id for t in node.targets if isinstance(t, ast.Name))
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in EXECUTE
            and node.args
            and _is_string(node.args[0], strings)
        ):
            found.append((node.lineno, node.func.attr))
    return found


def _is_string(node: ast.AST, names: set[str]) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp):
        return _is_string(node.left, names) or _is_string(node.right, names)
    if isinstance(node, ast.Name):
        return node.id in names
    return False


def test_scanner_finds_string_statements() -> None:
    source = (
        "SQL = 'SELECT 1'\n"
        "def a(conn):\n    conn.execute('SELECT 1')\n"
        "def b(conn, t):\n    conn.execute(f'DELETE FROM {t}')\n"
        "def c(conn):\n    conn.executemany('INSERT ' + 'x', [])\n"
        "def d(conn):\n    conn.execute(SQL)\n"
        "def e(conn):\n    conn.execute(select(x))\n    conn.execute(text('ANALYZE t'))\n"
    )
    assert sql_string_calls(source) == [
        (3, "execute"),
        (5, "execute"),
        (7, "executemany"),
        (9, "execute"),
    ]


def test_every_room_is_listed_once() -> None:
    rooms = {
        p.name
        for p in ARCHIVE.iterdir()
        if p.is_dir() and any(sql_string_calls(f.read_text()) for f in p.rglob("*.py"))
    }
    assert not set(CONVERTED) & set(NOT_YET)
    assert rooms - {"db"} <= set(NOT_YET), "a room uses SQL strings but is not listed"


def test_converted_rooms_use_no_sql_strings() -> None:
    offenders = []
    for room in CONVERTED:
        for path in sorted((ARCHIVE / room).rglob("*.py")):
            for line, method in sql_string_calls(path.read_text()):
                offenders.append(f"{path.relative_to(REPO)}:{line} {method}(<SQL string>)")
    assert offenders == [], "use SQLAlchemy Core statements:\n" + "\n".join(offenders)
