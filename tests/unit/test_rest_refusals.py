"""plugins/rest.py with tests/fake_orthanc.py: every refusal a /teaching route answers is
JSON with the reason and what to do next (issue 21), whatever raised it."""

from __future__ import annotations

import json
import types

import pytest

from archive.governance.errors import QuorumError
from tests.fake_orthanc import FakeOrthanc


class _Output:
    def __init__(self) -> None:
        self.status: int | None = None
        self.body = ""

    def SendHttpStatus(self, status, body, size) -> None:  # noqa: N802 - Orthanc's name
        self.status, self.body = status, body
        assert size == len(body)

    def AnswerBuffer(self, body, mime) -> None:  # noqa: N802
        self.status, self.body = 200, body

    def SendMethodNotAllowed(self, allowed) -> None:  # noqa: N802
        self.status = 405


@pytest.fixture
def rest():
    from plugins import rest as plugin

    return plugin


def _answer(rest, raised: Exception) -> tuple[int, dict]:
    def handler(**_):
        raise raised

    fake = FakeOrthanc()
    rest.route(types.SimpleNamespace(orthanc=fake), "/teaching/x", {"POST": handler})
    output = _Output()
    fake.routes[0][1](output, "/teaching/x", method="POST")
    return output.status, json.loads(output.body)


@pytest.mark.parametrize(
    ("raised", "status", "reason"),
    [
        (None, 403, "only board_member may vote"),
        (QuorumError("1 of 2 members voted themselves"), 400, "1 of 2 members"),
        (RuntimeError("secret detail /srv/x"), 500, "internal error"),
    ],
)
def test_refusals_carry_error_and_next(rest, raised, status, reason) -> None:
    if raised is None:
        raised = rest.HttpError(403, "only board_member may vote on Board decisions.")
    got_status, body = _answer(rest, raised)
    assert got_status == status
    assert reason in body["error"] and body["next"].strip()
    assert "secret detail" not in json.dumps(body)


def test_a_route_can_say_its_own_next_step(rest) -> None:
    status, body = _answer(rest, rest.HttpError(409, "no decision", "record it first."))
    assert (status, body) == (409, {"error": "no decision", "next": "record it first."})
    output = _Output()  # routes answering {"error": ...} themselves get a next step too
    rest.answer_json(output, {"error": "refused"}, 502)
    assert json.loads(output.body)["next"].startswith("check that the receiving node")
