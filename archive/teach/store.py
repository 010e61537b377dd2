"""The teaching room's tables (prefix `teach_`), applied with archive.db.migrate."""

from __future__ import annotations

from dataclasses import dataclass

from archive.db import migrate

ROOM = "teach"
STEPS = [
    """
    CREATE TABLE teach_unknowns (
      case_id TEXT PRIMARY KEY,
      marked_by TEXT NOT NULL,
      marked_at TEXT NOT NULL
    );
    CREATE TABLE teach_answers (
      case_id TEXT NOT NULL,
      username TEXT NOT NULL,
      answer TEXT NOT NULL DEFAULT '',
      answered_at TEXT NOT NULL DEFAULT '',
      revealed_at TEXT NOT NULL DEFAULT '',
      PRIMARY KEY (case_id, username)
    );
    CREATE TABLE teach_case_of_day (
      day TEXT PRIMARY KEY,
      case_id TEXT NOT NULL,
      chosen_by TEXT NOT NULL,
      chosen_at TEXT NOT NULL
    );
    """
]


@dataclass(frozen=True)
class Answer:
    case_id: str
    username: str
    answer: str
    answered_at: str
    revealed_at: str


@dataclass(frozen=True)
class CaseOfDay:
    day: str
    case_id: str
    chosen_by: str
    chosen_at: str


class TeachStore:
    """The teach_ tables on one connection (SQLite or PostgreSQL)."""

    def __init__(self, conn) -> None:
        self.conn = conn
        migrate(conn, ROOM, STEPS)

    # -- unknowns ----------------------------------------------------------------------
    def is_unknown(self, case_id: str) -> bool:
        row = self.conn.execute(
            "SELECT 1 FROM teach_unknowns WHERE case_id = ?", (case_id,)
        ).fetchone()
        return row is not None

    def set_unknown(self, case_id: str, on: bool, user: str, at: str) -> None:
        if on:
            self.conn.execute(
                "INSERT INTO teach_unknowns (case_id, marked_by, marked_at) VALUES (?, ?, ?)"
                " ON CONFLICT (case_id) DO NOTHING",
                (case_id, user, at),
            )
        else:
            self.conn.execute("DELETE FROM teach_unknowns WHERE case_id = ?", (case_id,))

    def unknowns(self) -> list[str]:
        rows = self.conn.execute("SELECT case_id FROM teach_unknowns ORDER BY marked_at")
        return [r[0] for r in rows.fetchall()]

    # -- answers and reveals ------------------------------------------------------------
    def answer(self, case_id: str, user: str) -> Answer | None:
        row = self.conn.execute(
            "SELECT case_id, username, answer, answered_at, revealed_at FROM teach_answers"
            " WHERE case_id = ? AND username = ?",
            (case_id, user),
        ).fetchone()
        return Answer(*row) if row else None

    def hidden_for(self, case_id: str, user: str) -> bool:
        """True while the case is an unknown that this user has not revealed."""
        if not self.is_unknown(case_id):
            return False
        mine = self.answer(case_id, user)
        return not (mine and mine.revealed_at)

    def save_answer(self, case_id: str, user: str, text: str, at: str) -> None:
        self.conn.execute(
            "INSERT INTO teach_answers (case_id, username, answer, answered_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (case_id, username)"
            " DO UPDATE SET answer = excluded.answer, answered_at = excluded.answered_at",
            (case_id, user, text, at),
        )

    def mark_revealed(self, case_id: str, user: str, at: str) -> None:
        self.conn.execute(
            "INSERT INTO teach_answers (case_id, username, revealed_at) VALUES (?, ?, ?)"
            " ON CONFLICT (case_id, username) DO UPDATE SET revealed_at = excluded.revealed_at"
            " WHERE teach_answers.revealed_at = ''",
            (case_id, user, at),
        )

    # -- case of the day ------------------------------------------------------------------
    def case_of_day(self, day: str) -> CaseOfDay | None:
        row = self.conn.execute(
            "SELECT day, case_id, chosen_by, chosen_at FROM teach_case_of_day WHERE day = ?",
            (day,),
        ).fetchone()
        return CaseOfDay(*row) if row else None

    def choose(self, day: str, case_id: str, user: str, at: str) -> None:
        self.conn.execute(
            "INSERT INTO teach_case_of_day (day, case_id, chosen_by, chosen_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (day) DO UPDATE SET case_id = excluded.case_id,"
            " chosen_by = excluded.chosen_by, chosen_at = excluded.chosen_at",
            (day, case_id, user, at),
        )
