"""The teaching acts, each through archive.core.perform (authorise, one transaction, one
audit record, result or Refusal). The adapter looks the case up in the catalogue and
passes it in; these functions read and write only the teach_ tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from archive.core import Ports, Refusal, Refused, Resource, perform
from archive.teach.masking import NEUTRAL_TITLE, is_presenter
from archive.teach.store import TeachStore

MAX_ANSWER = 4000
# What an unknown hides until reveal: every field that may give the diagnosis away.
HIDDEN_FIELDS = ("title", "findings", "diagnosis", "differential", "discussion",
                 "teaching_points", "references", "keywords", "study_description")  # fmt: skip
REVEALED_FIELDS = ("findings", "diagnosis", "differential", "discussion", "teaching_points",
                   "references")  # fmt: skip


def _case_resource(case) -> Resource:
    return Resource(kind="case", id=case.case_id, state=case.status)


def _now(ports: Ports) -> str:
    return ports.clock().isoformat(timespec="seconds")


@dataclass(frozen=True)
class QuizView:
    """What the browser may be shown of a case for this person, now."""

    case_id: str
    unknown: bool
    hidden: bool  # an unknown this person has not revealed
    title: str
    clinical_history: str
    facts: dict[str, str]  # modality, body part, age band, sex, difficulty
    revealed: dict[str, str] = field(default_factory=dict)  # empty while hidden
    series: list[str] = field(default_factory=list)  # descriptions (neutral while hidden)
    my_answer: str = ""
    answered_at: str = ""

    def audit(self) -> dict[str, Any]:
        return {"unknown": self.unknown, "hidden": self.hidden}


def quiz_view(ports: Ports, principal, case) -> QuizView | Refusal:
    """The case as this person may see it: the history first; findings, diagnosis and
    discussion only once revealed (or when the case is not an unknown)."""
    store = TeachStore(ports.db)  # migrated before perform's transaction

    def act(tx, permit) -> QuizView:
        unknown = store.is_unknown(case.case_id)
        mine = store.answer(case.case_id, principal.user)
        hidden = unknown and not (mine and mine.revealed_at)
        hidden = hidden and not is_presenter(ports.actions, principal)
        series = [
            (f"Series {n}" if hidden else (s.description or f"Series {n}"))
            for n, s in enumerate(case.series, start=1)
        ]
        return QuizView(
            case_id=case.case_id,
            unknown=unknown,
            hidden=hidden,
            title=NEUTRAL_TITLE if hidden else (case.title or f"Case {case.case_id}"),
            clinical_history=case.clinical_history,
            facts={
                "Modality": ", ".join(case.modalities),
                "Body part": case.body_part,
                "Age": case.age_band,
                "Sex": case.sex,
                "Difficulty": case.difficulty,
            },
            revealed={} if hidden else {f: getattr(case, f) for f in REVEALED_FIELDS},
            series=series,
            my_answer=mine.answer if mine else "",
            answered_at=mine.answered_at if mine else "",
        )

    return perform(ports, principal, "case.view", _case_resource(case), act,
                   target=case.case_id, detail={"presentation": "quiz"})  # fmt: skip


@dataclass(frozen=True)
class Done:
    case_id: str
    what: str
    extra: dict[str, Any] = field(default_factory=dict)

    def audit(self) -> dict[str, Any]:
        return {"done": self.what, **self.extra}


def mark_unknown(ports: Ports, principal, case, on: bool = True) -> Done | Refusal:
    """A trainer presents a case as an unknown (or stops doing so)."""
    store = TeachStore(ports.db)  # migrated before perform's transaction

    def act(tx, permit) -> Done:
        store.set_unknown(case.case_id, on, principal.user, _now(ports))
        return Done(case.case_id, "marked" if on else "unmarked")

    return perform(ports, principal, "quiz.mark", _case_resource(case), act, target=case.case_id)


def record_answer(ports: Ports, principal, case, text: str, scan=None) -> Done | Refusal:
    """A person records their own answer to an unknown, privately (before reveal only).
    The text is checked for identifiers like any teaching text (`scan` returns hits)."""
    store = TeachStore(ports.db)  # migrated before perform's transaction
    text = (text or "").strip()

    def act(tx, permit) -> Done:
        if not store.is_unknown(case.case_id):
            raise Refused(Refusal("quiz.answer", "this case is not presented as an unknown",
                                  "Open it from the catalogue instead.", "state"))  # fmt: skip
        if not store.hidden_for(case.case_id, principal.user):
            raise Refused(Refusal("quiz.answer", "you have already revealed this case",
                                  "Answers are recorded before the reveal.",
                                  "conflict"))  # fmt: skip
        if not text or len(text) > MAX_ANSWER:
            raise Refused(Refusal("quiz.answer", f"an answer is 1 to {MAX_ANSWER} characters",
                                  "Write your answer and save it again.", "invalid"))  # fmt: skip
        if scan is not None and scan(text):
            raise Refused(Refusal("quiz.answer", "the answer looks like it holds a patient "
                                  "identifier", "Remove names, numbers and dates of patients, "
                                  "then save again.", "invalid"))  # fmt: skip
        store.save_answer(case.case_id, principal.user, text, _now(ports))
        return Done(case.case_id, "answered", {"chars": len(text)})

    return perform(ports, principal, "quiz.answer", _case_resource(case), act,
                   target=case.case_id)  # fmt: skip


def reveal(ports: Ports, principal, case) -> Done | Refusal:
    """This person reveals an unknown: from now on they see its findings, diagnosis and
    discussion, and the viewer's metadata unredacted."""
    store = TeachStore(ports.db)  # migrated before perform's transaction

    def act(tx, permit) -> Done:
        if not store.is_unknown(case.case_id):
            raise Refused(Refusal("quiz.reveal", "this case is not presented as an unknown",
                                  "Open it from the catalogue instead.", "state"))  # fmt: skip
        store.mark_revealed(case.case_id, principal.user, _now(ports))
        return Done(case.case_id, "revealed")

    return perform(ports, principal, "quiz.reveal", _case_resource(case), act,
                   target=case.case_id)  # fmt: skip


def choose_case_of_day(ports: Ports, principal, case, day: date) -> Done | Refusal:
    """A trainer chooses the case of the day (replacing an earlier choice for that day)."""
    store = TeachStore(ports.db)  # migrated before perform's transaction

    def act(tx, permit) -> Done:
        store.choose(day.isoformat(), case.case_id, principal.user, _now(ports))
        return Done(case.case_id, "case-of-the-day", {"day": day.isoformat()})

    return perform(ports, principal, "case_of_day.choose", _case_resource(case), act,
                   target=case.case_id)  # fmt: skip
