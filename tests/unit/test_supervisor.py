"""The generic supervisor of `archive serve`, with real child processes."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from archive.serve.server import Child, Supervisor, SupervisorGaveUp, exit_reason


def _spawn(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code])


def _halt(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    process.wait()


def test_exit_reasons_are_words() -> None:
    assert exit_reason(-signal.SIGKILL) == "killed by SIGKILL"
    assert exit_reason(-signal.SIGSEGV) == "killed by SIGSEGV"
    assert exit_reason(139) == "exit code 139 (SIGSEGV)"
    assert exit_reason(2) == "exit code 2"


def test_a_killed_child_is_restarted_and_the_event_says_why() -> None:
    events = []
    supervisor = Supervisor(on_event=events.append, backoff=(0.0,))
    child = supervisor.start(
        Child("worker", launch=lambda: _spawn("import time; time.sleep(60)"), halt=_halt)
    )
    first = child.pid
    try:
        child.process.send_signal(signal.SIGKILL)
        child.process.wait()
        supervisor.poll()
        assert child.pid != first and child.process.poll() is None
        assert [(e.kind, e.reason) for e in events] == [
            ("exited", "killed by SIGKILL"),
            ("restarted", "killed by SIGKILL"),
        ]
        assert supervisor.describe()["worker"] == {
            "pid": child.pid,
            "restarts": 1,
            "last_exit": "killed by SIGKILL",
        }
    finally:
        supervisor.stop_all()
    assert child.process.poll() is not None


def test_a_crash_loop_gives_up_with_one_clear_error() -> None:
    events = []
    supervisor = Supervisor(on_event=events.append, max_fast_failures=3, backoff=(0.0, 0.01))
    child = supervisor.start(
        Child("broken", launch=lambda: _spawn("raise SystemExit(3)"), halt=_halt)
    )
    with pytest.raises(SupervisorGaveUp, match="broken failed 4 times in a row"):  # noqa: PT012
        for _ in range(100):
            child.process.wait()
            supervisor.poll()
    kinds = [e.kind for e in events]
    assert kinds.count("exited") == 4 and kinds[-1] == "gave_up"
    assert events[-1].reason == "exit code 3"


def test_no_restart_while_stopping() -> None:
    events = []
    supervisor = Supervisor(on_event=events.append)
    child = supervisor.start(Child("worker", launch=lambda: _spawn("pass"), halt=_halt))
    child.process.wait()
    supervisor.poll(stopping=lambda: True)
    assert events == [] and child.restarts == 0


def test_front_doors_stop_first() -> None:
    order = []
    supervisor = Supervisor()

    def halt(name):
        def _do(process):
            order.append(name)
            _halt(process)

        return _do

    for name, front in (("nginx", True), ("orthanc", False), ("dicom-front", True)):
        supervisor.start(
            Child(
                name,
                launch=lambda: _spawn("import time; time.sleep(60)"),
                halt=halt(name),
                front=front,
            )
        )
    supervisor.stop_all()
    assert order == ["nginx", "dicom-front", "orthanc"]
