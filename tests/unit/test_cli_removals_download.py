"""`archive removals export` writes its package whole or not at all (issue 14).

Against an httpx mock transport: a complete answer becomes the file; an answer cut off
mid-body, a short body, or a refusal leaves neither the file nor a temporary; a stale
temporary of a dead CLI is removed, one of a live process is left alone.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import typer

from archive.cli.removals import clean_stale_partials, download_package, partial_path

BODY = b"age-encryption.org/v1\n" + bytes(range(256)) * 64
ROUTE = "/teaching/removals/7/download"


class CutStream(httpx.SyncByteStream):
    """Sends the first half of the body, then the connection drops."""

    def __iter__(self) -> Iterator[bytes]:
        yield BODY[: len(BODY) // 2]
        raise httpx.ReadError("connection reset by peer")


class ShortStream(httpx.SyncByteStream):
    def __iter__(self) -> Iterator[bytes]:
        yield BODY[:100]


def _client(handler) -> httpx.Client:
    return httpx.Client(base_url="http://archive.test", transport=httpx.MockTransport(handler))


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_complete_answer_becomes_the_file(tmp_path: Path) -> None:
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["recipient"] = request.url.params.get("recipient")
        return httpx.Response(200, content=BODY)

    out = tmp_path / "package.age"
    with _client(handler) as client:
        size = download_package(client, ROUTE, out, 7, params={"recipient": "age1xyz"})
    assert size == len(BODY)
    assert out.read_bytes() == BODY
    assert out.stat().st_mode & 0o777 == 0o600
    assert seen["recipient"] == "age1xyz"
    assert _leftovers(tmp_path) == ["package.age"]


@pytest.mark.parametrize(
    "answer",
    [
        lambda: httpx.Response(200, stream=CutStream(), headers={"content-length": "99999"}),
        lambda: httpx.Response(
            200, stream=ShortStream(), headers={"content-length": str(len(BODY))}
        ),
    ],
    ids=["connection-dropped", "short-body"],
)
def test_cut_off_answer_leaves_nothing(tmp_path: Path, capsys, answer) -> None:
    out = tmp_path / "package.age"
    with _client(lambda request: answer()) as client, pytest.raises(typer.Exit):
        download_package(client, ROUTE, out, 7)
    assert _leftovers(tmp_path) == []
    err = capsys.readouterr().err
    assert "broke off" in err and "removals show 7" in err
    assert "Traceback" not in err


def test_refusal_is_one_line_and_leaves_nothing(tmp_path: Path, capsys) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": "all downloads used; ask the approver."})

    out = tmp_path / "package.age"
    with _client(handler) as client, pytest.raises(typer.Exit):
        download_package(client, ROUTE, out, 7)
    assert _leftovers(tmp_path) == []
    assert capsys.readouterr().err.strip() == "error: all downloads used; ask the approver."


def test_never_overwrites_a_file_that_appeared(tmp_path: Path) -> None:
    out = tmp_path / "package.age"

    def handler(request: httpx.Request) -> httpx.Response:
        out.write_bytes(b"someone else's file")  # appears while the download runs
        return httpx.Response(200, content=BODY)

    with _client(handler) as client, pytest.raises(typer.Exit):
        download_package(client, ROUTE, out, 7)
    assert out.read_bytes() == b"someone else's file"
    assert _leftovers(tmp_path) == ["package.age"]


def test_stale_partials_of_dead_writers_are_cleaned(tmp_path: Path) -> None:
    out = tmp_path / "package.age"
    stale = partial_path(out, _dead_pid())
    stale.write_bytes(BODY[:10])
    live = partial_path(out, 1)  # pid 1 is always alive
    live.write_bytes(BODY[:10])
    other = partial_path(tmp_path / "other.age", _dead_pid())
    other.write_bytes(b"x")
    assert clean_stale_partials(out) == [stale]
    assert not stale.exists() and live.exists() and other.exists()

    with _client(lambda request: httpx.Response(200, content=BODY)) as client:
        download_package(client, ROUTE, out, 7)
    assert out.read_bytes() == BODY
    assert _leftovers(tmp_path) == sorted([out.name, live.name, other.name])


def test_partials_of_a_longer_output_name_are_left_alone(tmp_path: Path) -> None:
    """`.a.<pid>.partial` glob also matches `.a.b.<pid>.partial`: another output's."""
    out = tmp_path / "a"
    theirs = partial_path(tmp_path / "a.b", 1)
    theirs.write_bytes(b"x")
    assert clean_stale_partials(out) == [] and theirs.exists()


@pytest.mark.parametrize("case", ["missing directory", "file exists"])
def test_an_unusable_output_is_refused_before_a_download_is_spent(
    tmp_path: Path, capsys: pytest.CaptureFixture, case: str
) -> None:
    asked = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)  # the archive would count a download here
        return httpx.Response(200, content=BODY)

    out = tmp_path / "nowhere" / "package.age"
    if case == "file exists":
        out = tmp_path / "package.age"
        out.write_bytes(b"an earlier package")
    with _client(handler) as client, pytest.raises(typer.Exit):
        download_package(client, ROUTE, out, 7)
    assert asked == []
    assert "nothing was exported" in capsys.readouterr().err
    if case == "file exists":
        assert out.read_bytes() == b"an earlier package"
