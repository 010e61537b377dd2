"""Teaching modes (issue 22): unknown (quiz) presentation, case of the day, sessions.

Owns the tables `teach_unknowns`, `teach_answers` and `teach_case_of_day`; every act
goes through archive.core.perform (authorised by policies/access/actions.toml, one
transaction, one audit record). A registrar's answer is private: only its author reads
it, and the audit records that an answer was saved, never its text.
"""

from archive.teach.store import TeachStore
from archive.teach.usecases import (
    QuizView,
    choose_case_of_day,
    mark_unknown,
    quiz_view,
    record_answer,
    reveal,
)

__all__ = [
    "QuizView",
    "TeachStore",
    "choose_case_of_day",
    "mark_unknown",
    "quiz_view",
    "record_answer",
    "reveal",
]
