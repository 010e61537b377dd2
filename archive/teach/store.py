"""The teaching room's tables (prefix `teach_`), applied with archive.db.migrate."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Column, MetaData, Table, Text, delete, select

from archive.db import create_tables, dialect_insert, migrate

ROOM = "teach"
metadata = MetaData()
unknowns = Table(
    "teach_unknowns",
    metadata,
    Column("case_id", Text, primary_key=True),
    Column("marked_by", Text, nullable=False),
    Column("marked_at", Text, nullable=False),
)
answers = Table(
    "teach_answers",
    metadata,
    Column("case_id", Text, primary_key=True),
    Column("username", Text, primary_key=True),
    Column("answer", Text, nullable=False, server_default=""),
    Column("answered_at", Text, nullable=False, server_default=""),
    Column("revealed_at", Text, nullable=False, server_default=""),
)
case_of_day = Table(
    "teach_case_of_day",
    metadata,
    Column("day", Text, primary_key=True),
    Column("case_id", Text, nullable=False),
    Column("chosen_by", Text, nullable=False),
    Column("chosen_at", Text, nullable=False),
)
# Homes made before issue 27 ran step 1 as the equivalent SQL script.
STEPS = [create_tables(metadata, [unknowns, answers, case_of_day])]


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
        found = self.conn.execute(select(unknowns.c.case_id).where(unknowns.c.case_id == case_id))
        return found.fetchone() is not None

    def set_unknown(self, case_id: str, on: bool, user: str, at: str) -> None:
        if on:
            self.conn.execute(
                dialect_insert(self.conn, unknowns)
                .values(case_id=case_id, marked_by=user, marked_at=at)
                .on_conflict_do_nothing(index_elements=[unknowns.c.case_id])
            )
        else:
            self.conn.execute(delete(unknowns).where(unknowns.c.case_id == case_id))

    def unknowns(self) -> list[str]:
        return self.conn.execute(
            select(unknowns.c.case_id).order_by(unknowns.c.marked_at)
        ).scalars()

    # -- answers and reveals ------------------------------------------------------------
    def answer(self, case_id: str, user: str) -> Answer | None:
        row = self.conn.execute(
            select(
                answers.c.case_id,
                answers.c.username,
                answers.c.answer,
                answers.c.answered_at,
                answers.c.revealed_at,
            ).where(answers.c.case_id == case_id, answers.c.username == user)
        ).fetchone()
        return Answer(*row) if row else None

    def hidden_for(self, case_id: str, user: str) -> bool:
        """True while the case is an unknown that this user has not revealed."""
        if not self.is_unknown(case_id):
            return False
        mine = self.answer(case_id, user)
        return not (mine and mine.revealed_at)

    def save_answer(self, case_id: str, user: str, text: str, at: str) -> None:
        statement = dialect_insert(self.conn, answers).values(
            case_id=case_id, username=user, answer=text, answered_at=at
        )
        self.conn.execute(
            statement.on_conflict_do_update(
                index_elements=[answers.c.case_id, answers.c.username],
                set_={
                    "answer": statement.excluded.answer,
                    "answered_at": statement.excluded.answered_at,
                },
            )
        )

    def mark_revealed(self, case_id: str, user: str, at: str) -> None:
        statement = dialect_insert(self.conn, answers).values(
            case_id=case_id, username=user, revealed_at=at
        )
        self.conn.execute(
            statement.on_conflict_do_update(
                index_elements=[answers.c.case_id, answers.c.username],
                set_={"revealed_at": statement.excluded.revealed_at},
                where=answers.c.revealed_at == "",
            )
        )

    # -- case of the day ------------------------------------------------------------------
    def case_of_day(self, day: str) -> CaseOfDay | None:
        row = self.conn.execute(
            select(
                case_of_day.c.day,
                case_of_day.c.case_id,
                case_of_day.c.chosen_by,
                case_of_day.c.chosen_at,
            ).where(case_of_day.c.day == day)
        ).fetchone()
        return CaseOfDay(*row) if row else None

    def choose(self, day: str, case_id: str, user: str, at: str) -> None:
        statement = dialect_insert(self.conn, case_of_day).values(
            day=day, case_id=case_id, chosen_by=user, chosen_at=at
        )
        self.conn.execute(
            statement.on_conflict_do_update(
                index_elements=[case_of_day.c.day],
                set_={
                    name: statement.excluded[name] for name in ("case_id", "chosen_by", "chosen_at")
                },
            )
        )
