"""Access control through a real Orthanc: the role-by-route matrix, authentication
failures, sign-in backoff (no lockout), training, tokens, DICOM admission and audit-log tampering.

One archive serves the whole module (module-scoped fixture) and each role keeps one
logged-in client, so the matrix of every Orthanc 1.10.1 core route and every archive
route, for every role and anonymous, stays fast. The filter answers a refusal with 403
(orthanc-python's filter can only say yes or no); a request the filter lets through
gets anything but a filter 403 from Orthanc or the route.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from archive import db
from archive.access import AccessStore, Principal, decide, load_route_policy
from archive.paths import POLICIES_DIR
from tests.corpus import make_ct_series, to_bytes
from tests.dicom_tools import storescu, write_files
from tests.harness import (
    OPEN_REST,
    RunningArchive,
    add_user,
    client,
    new_archive,
    register_node,
    run_cli,
)

ROLE_USERS = {
    "personnel": "pers",
    "head_of_school": "hos",
    "tpd": "tpd",
    "trainer": "trainer",
    "registrar": "registrar",
    "other_speciality": "otherspec",
    "board_member": "board",
}
POLICY = load_route_policy(POLICIES_DIR)
ROUTES = json.loads((POLICIES_DIR / "access" / "orthanc-1.10.1-routes.json").read_text())["routes"]


def _store(archive: RunningArchive) -> AccessStore:
    return AccessStore(db.connect(archive.config.home.db_path))


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningArchive]:
    running = new_archive(tmp_path_factory.mktemp("access") / "home")
    for role, user in ROLE_USERS.items():
        if role != "other_speciality":
            add_user(running, user, [role])
    # other_speciality is granted only through an approved application
    add_user(running, "otherspec", [])
    now = datetime.now(UTC)
    store = _store(running)
    store.approve_application("otherspec", "pers", "cardiology", now)
    store.conn.close()
    add_user(running, "untrained", ["registrar"], trained=False)
    add_user(running, "lapsed", ["personnel"], trained=False)
    store = _store(running)
    store.record_training("lapsed", date.today() - timedelta(days=400), now, by="test")
    store.conn.close()
    register_node(running, "source", "GOOD_SRC", store=True)
    register_node(running, "far-source", "FAR_SRC", store=True, host="127.0.0.2")
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def clients(archive: RunningArchive) -> Iterator[dict[str, httpx.Client]]:
    opened = {role: client(archive, user) for role, user in ROLE_USERS.items()}
    opened["anonymous"] = client(archive)
    try:
        yield opened
    finally:
        for http in opened.values():
            http.close()


@pytest.fixture(scope="module")
def ids(archive: RunningArchive, clients: dict[str, httpx.Client]) -> dict[str, str]:
    """Real Orthanc ids (one uploaded instance) to fill the routes' path parameters."""
    answer = clients["personnel"].post("/instances", content=to_bytes(make_ct_series(1)[0]))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return {
        "instances": body["ID"],
        "series": body["ParentSeries"],
        "studies": body["ParentStudy"],
        "patients": body["ParentPatient"],
    }


def _instantiate(uri: str, ids: dict[str, str]) -> str:
    resource = uri.split("/")[1]
    uri = uri.replace("{id}", ids.get(resource, "x"))
    return re.sub(r"\{(frame|index)\}", "0", re.sub(r"\{(name|key)\}", "x", uri))


def _principal(role: str) -> Principal | None:
    if role == "anonymous":
        return None
    return Principal(user=ROLE_USERS[role], roles=(role,), trained=True)


def _archive_routes() -> list[tuple[str, str]]:
    """Every method and concrete path the policy names for /teaching (and a few more)."""
    seen: set[tuple[str, str]] = set()
    rules = [*POLICY.anonymous, *POLICY.image_routes, *POLICY.never]
    for role_rules in POLICY.roles.values():
        rules.extend(role_rules)
    for rule in rules:
        if not rule.text.split()[1].startswith("/teaching"):
            continue
        path = "/" + "/".join("x" if s in ("*", "**") else s for s in rule.pattern.segments)
        for method in sorted(rule.methods) or ["GET", "POST", "PUT", "DELETE"]:
            seen.add((method, path))
    for extra in ("/teaching", "/teaching/unknown", "/teaching/cases", "/teaching/audit"):
        for method in ("GET", "POST", "DELETE"):
            seen.add((method, extra))
    return sorted(seen)


def _filter_denied(answer: httpx.Response) -> bool:
    """A refusal by the filter: 403 without the archive's JSON error body."""
    return answer.status_code == 403 and '"error"' not in answer.text


ALL_ROLES = [*ROLE_USERS, "anonymous"]


@pytest.mark.parametrize("role", ALL_ROLES)
def test_role_by_route_matrix(
    archive: RunningArchive, clients: dict[str, httpx.Client], ids: dict[str, str], role: str
) -> None:
    http = clients[role]
    principal = _principal(role)
    requests = [(r["method"], _instantiate(r["uri"], ids)) for r in ROUTES]
    requests += _archive_routes()
    assert len(requests) > 274
    wrong = []
    allowed = set()
    for method, uri in requests:
        if (method, uri) == ("POST", "/instances"):
            body = b"not dicom"  # allowed for personnel: refused by ingest, not stored
        else:
            body = b"{}" if method in ("POST", "PUT") else None
        answer = http.request(method, uri, content=body)
        if method == "PATCH":  # Orthanc 1.10.1 knows no PATCH: refused before the filter
            if answer.status_code not in (400, 403, 405):
                wrong.append(f"PATCH {uri}: HTTP {answer.status_code}")
            continue
        expected = decide(POLICY, principal, method, uri)
        if expected.allowed:
            allowed.add((method, uri))
        if _filter_denied(answer) == expected.allowed:
            wrong.append(f"{method} {uri}: HTTP {answer.status_code}, policy says {expected}")
    assert not wrong, "\n".join(wrong[:20])
    # Independent of the decision function: what must hold whatever the policy file says.
    orthanc_allowed = {(m, u) for m, u in allowed if not u.startswith("/teaching")}
    if role == "personnel":
        assert orthanc_allowed == {
            ("GET", "/system"),
            ("GET", "/statistics"),
            ("GET", "/tools/now"),
            ("POST", "/instances"),
        }
    else:
        assert orthanc_allowed == set(), f"{role} may call Orthanc routes: {orthanc_allowed}"
    if role == "anonymous":
        # health, and the web interface's sign-in page and stylesheet (issue 12), and its
        # address, which only redirects to the sign-in page (issue 21)
        web = {("GET", "/teaching/ui/login"), ("POST", "/teaching/ui/login")}
        web |= {("GET", "/teaching/ui")}
        web |= {(m, u) for m, u in allowed if m == "GET" and u.startswith("/teaching/ui/static/")}
        assert allowed == {("GET", "/teaching/health")} | web
    for _method, uri in allowed:
        path = uri.split("/")
        assert "file" not in path and "archive" not in path and "media" not in path
        assert not uri.startswith(("/tools/find", "/modalities", "/peers", "/wado"))
    assert archive.counts()["instances"] == 1  # nothing in the matrix stored or deleted


def test_egress_routes_closed_to_everyone(
    clients: dict[str, httpx.Client], ids: dict[str, str]
) -> None:
    uid = ids["instances"]
    egress = [
        ("GET", f"/instances/{uid}/file"),
        ("GET", f"/studies/{ids['studies']}/archive"),
        ("GET", f"/studies/{ids['studies']}/media"),
        ("POST", "/tools/create-archive"),
        ("POST", "/tools/find"),
        ("POST", "/modalities/x/store"),
        ("POST", "/peers/x/store"),
        ("POST", "/tools/execute-script"),
        ("GET", "/jobs/x/archive"),
        ("GET", "/wado"),
        ("GET", f"/instances/{uid}/preview"),
        ("GET", f"/instances/{uid}/attachments/dicom/data"),
        # spelled differently: encoded, doubled slashes, dot segments, case
        ("GET", f"/instances/{uid}/%66ile"),
        ("GET", f"//instances/{uid}/file"),
        ("GET", f"/instances/{uid}/./file"),
        ("GET", f"/INSTANCES/{uid}/FILE"),
    ]
    for role, http in clients.items():
        for method, uri in egress:
            answer = http.request(method, uri, content=b"{}" if method == "POST" else None)
            assert answer.status_code in (403, 404), (role, method, uri, answer.status_code)
            assert b"DICM" not in answer.content


def _audit_records(archive: RunningArchive, settle: float = 0.3) -> list[dict]:
    time.sleep(settle)  # the plugin writes its queue every 50 ms
    text = (archive.config.home.audit_dir / "audit.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


def test_unauthenticated_and_wrong_password_are_refused_and_audited(
    archive: RunningArchive, clients: dict[str, httpx.Client]
) -> None:
    assert clients["anonymous"].get("/teaching/health").status_code == 200
    assert clients["anonymous"].get("/system").status_code == 403
    with httpx.Client(base_url=archive.url, auth=("pers", "wrong-password-123")) as bad:
        assert bad.get("/system").status_code == 403
    with httpx.Client(base_url=archive.url, auth=("nobody", "whatever-password")) as ghost:
        assert ghost.get("/system").status_code == 403
    no_colon = base64.b64encode(b"pers-without-a-password").decode()
    with httpx.Client(base_url=archive.url, headers={"Authorization": f"Basic {no_colon}"}) as junk:
        assert junk.get("/system").status_code == 403
    with httpx.Client(base_url=archive.url, headers={"Authorization": "Digest x=1"}) as other:
        assert other.get("/system").status_code == 403
    assert clients["personnel"].get("/system").status_code == 200
    records = _audit_records(archive)
    logins = [r for r in records if r["action"] == "auth.login" and r["outcome"] == "denied"]
    reasons = {(r["actor"], r["detail"]["reason"]) for r in logins}
    assert ("pers", "bad_credentials") in reasons
    assert ("nobody", "bad_credentials") in reasons
    assert ("anonymous", "malformed") in reasons
    decisions = [r for r in records if r["action"] == "access.decision"]
    assert any(
        r["outcome"] == "denied" and r["actor"] == "anonymous" and r["detail"]["uri"] == "/system"
        for r in decisions
    )
    assert any(
        r["outcome"] == "success" and r["actor"] == "pers" and r["detail"]["uri"] == "/system"
        for r in decisions
    )
    assert all("wrong-password" not in json.dumps(r) for r in records)


def test_repeated_failures_back_off_without_locking_the_account(
    archive: RunningArchive,
) -> None:
    """No lockout (finding 7): past the free failures the (account, address) pair is
    refused unchecked for a growing while, audited as throttled; then it signs in."""
    add_user(archive, "victim", ["personnel"])
    with httpx.Client(base_url=archive.url, auth=("victim", "not-the-password")) as bad:
        for _ in range(4):  # policies/access/accounts.toml: 3 free, then 1 s, 2 s, ...
            assert bad.get("/system").status_code == 403
        fourth = time.monotonic()
    with client(archive, "victim") as good:
        waiting = good.get("/system").status_code
        # The window is 1 s from the fourth failure; on a machine so loaded that the next
        # request went out after it, the window cannot be observed (the rest still holds).
        observed = time.monotonic() - fourth < 0.9
        if observed:
            assert waiting == 403  # waiting: refused unchecked
        _eventually(lambda: good.get("/system").status_code == 200)  # no lockout
    records = _audit_records(archive)
    denied = [
        r["detail"]
        for r in records
        if r["action"] == "auth.login" and r["actor"] == "victim" and r["outcome"] == "denied"
    ]
    reasons = [d["reason"] for d in denied]
    assert reasons[:4] == ["bad_credentials"] * 4
    assert "throttled" in reasons or not observed
    assert "locked" not in reasons
    assert denied[3]["retry_after"] == 1 and "address" in denied[3]["throttle"]
    store = _store(archive)
    assert store.get_user("victim").locked_until is None
    store.conn.close()


def _eventually(condition, timeout: float = 5.0) -> None:
    """The filter notices database changes within its watch interval (0.25 s)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_no_images_without_valid_training(
    archive: RunningArchive, clients: dict[str, httpx.Client]
) -> None:
    image_routes = [
        "/teaching/cases/x/thumbnail",
        "/teaching/cases/x/images/1",
        "/teaching/pulls/x",
    ]
    with client(archive, "lapsed") as lapsed, client(archive, "untrained") as untrained:
        # personnel with expired training: non-image routes yes, image routes no
        assert lapsed.get("/system").status_code == 200
        for uri in image_routes:
            assert _filter_denied(lapsed.get(uri)), uri
            assert not _filter_denied(clients["personnel"].get(uri)), uri
        # a registrar is admitted only with training: nothing at all without it
        assert _filter_denied(untrained.get("/teaching/me"))
        for uri in image_routes:
            assert _filter_denied(untrained.get(uri)), uri
            assert not _filter_denied(clients["registrar"].get(uri)), uri
    records = _audit_records(archive)
    assert any(
        r["actor"] == "lapsed" and "training required" in r["detail"].get("reason", "")
        for r in records
        if r["action"] == "access.decision"
    )


def test_tokens_expire_and_can_be_revoked(archive: RunningArchive) -> None:
    store = _store(archive)
    now = datetime.now(UTC)
    live_id, live = store.create_token("pers", now, days=1, label="bench")
    old_id, old = store.create_token("pers", now, days=1, label="old")
    store.conn.execute(
        "UPDATE access_tokens SET expires_at = ? WHERE token_id = ?",
        ((now - timedelta(minutes=1)).isoformat(), old_id),
    )
    with httpx.Client(base_url=archive.url, headers={"Authorization": f"Bearer {live}"}) as ok:
        assert ok.get("/system").status_code == 200
        assert ok.get("/system").status_code == 200
        with httpx.Client(
            base_url=archive.url, headers={"Authorization": f"Bearer {old}"}
        ) as expired:
            assert expired.get("/system").status_code == 403
        forged = live[:-4] + ("AAAA" if not live.endswith("AAAA") else "BBBB")
        with httpx.Client(
            base_url=archive.url, headers={"Authorization": f"Bearer {forged}"}
        ) as fake:
            assert fake.get("/system").status_code == 403
        store.revoke_token(live_id, datetime.now(UTC))
        _eventually(lambda: ok.get("/system").status_code == 403)
    assert any(t.last_used_at for t in store.list_tokens("pers") if t.token_id == live_id)
    store.conn.close()
    records = _audit_records(archive)
    reasons = {
        r["detail"]["reason"]
        for r in records
        if r["action"] == "auth.login" and r["outcome"] == "denied" and r["actor"] == "pers"
    }
    assert {"token_expired", "token_revoked"} <= reasons
    assert all(live not in json.dumps(r) and old not in json.dumps(r) for r in records)


def test_dicom_only_from_registered_sources_on_their_host(
    archive: RunningArchive, tmp_path: Path
) -> None:
    before = archive.counts()["instances"]
    files = write_files(tmp_path / "ct", [to_bytes(ds) for ds in make_ct_series(2)])
    intruder = storescu(archive.dicom_port, archive.aet, "INTRUDER", files)
    assert intruder.returncode != 0
    far = storescu(archive.dicom_port, archive.aet, "FAR_SRC", files)  # registered: 127.0.0.2
    assert far.returncode != 0
    assert archive.counts()["instances"] == before
    good = storescu(archive.dicom_port, archive.aet, "GOOD_SRC", files)
    assert good.returncode == 0, good.stderr
    assert archive.counts()["instances"] == before + 2

    def audited() -> list[dict]:
        return [r for r in _audit_records(archive, 0.1) if r["action"] == "access.dicom"]

    _eventually(lambda: len({r["actor"] for r in audited()}) >= 3, timeout=10)
    by_actor = {}
    for r in audited():
        by_actor.setdefault(r["actor"], []).append(r)
    assert all(r["outcome"] == "success" for r in by_actor["GOOD_SRC"])
    assert len(by_actor["GOOD_SRC"]) == 2  # one record per stored instance
    assert by_actor["INTRUDER"][0]["outcome"] == "denied"
    assert "not registered" in by_actor["INTRUDER"][0]["detail"]["reason"]
    assert by_actor["FAR_SRC"][0]["outcome"] == "denied"
    assert "another host" in by_actor["FAR_SRC"][0]["detail"]["reason"]


def _snapshot(archive: RunningArchive, destination: Path) -> Path:
    """A copy of the home taken under the audit writers' lock (a consistent log)."""
    audit = archive.config.home.audit_dir
    fd = (audit / ".lock").open("a")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        shutil.copytree(archive.home, destination, ignore=shutil.ignore_patterns("storage"))
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        fd.close()
    return destination


@pytest.mark.parametrize("damage", ["byte", "line", "end"])
def test_audit_tampering_detected_by_the_cli(
    archive: RunningArchive, clients: dict[str, httpx.Client], tmp_path: Path, damage: str
) -> None:
    for _ in range(5):
        clients["personnel"].get("/system")
    time.sleep(0.3)
    home = _snapshot(archive, tmp_path / "home")
    clean = run_cli("audit", "verify", home=home)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    log = home / "data" / "audit" / "audit.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    assert len(lines) > 20
    target = len(lines) // 2
    if damage == "byte":
        line = bytearray(lines[target])
        at = line.index(b'"actor":"') + len(b'"actor":"')
        line[at] = ord("X") if line[at] != ord("X") else ord("Y")
        lines[target] = bytes(line)
        expected = f"line {target + 1}"
    elif damage == "line":
        seq = json.loads(lines[target])["seq"]
        del lines[target]
        expected = f"seq {seq} missing"
    else:
        last_seq = json.loads(lines[-1])["seq"]
        lines = lines[:-3]
        expected = f"seq {last_seq - 2}..{last_seq} missing"
    log.write_bytes(b"".join(lines))
    result = run_cli("audit", "verify", home=home)
    assert result.returncode != 0
    assert "TAMPERED" in result.stdout
    assert expected in result.stdout, result.stdout


def test_queued_audit_records_are_written_when_orthanc_stops(
    archive_home: RunningArchive,
) -> None:
    """Orthanc stopped (SIGTERM) right after the requests: the plugin's audit queue is
    written before the interpreter goes away, and the chain verifies."""
    add_user(archive_home, "pers", ["personnel"])
    archive_home.start()
    try:
        children = subprocess.run(
            ["pgrep", "-P", str(archive_home.process.pid), "-x", "Orthanc"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        assert len(children) == 1, children
        orthanc_pid = int(children[0])
        with client(archive_home, "pers") as http:
            for _ in range(20):
                assert http.get("/tools/now").status_code == 200
        os.kill(orthanc_pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while Path(f"/proc/{orthanc_pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "Orthanc has stopped" in archive_home.log.read_text(errors="replace")
    finally:
        archive_home.stop()
    records = _audit_records(archive_home, settle=0)
    now_calls = [
        r
        for r in records
        if r["action"] == "access.decision" and r["detail"].get("uri") == "/tools/now"
    ]
    assert len(now_calls) == 20
    result = run_cli("audit", "verify", home=archive_home.home)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_production_plugin_has_no_switch_to_open_it(archive_home: RunningArchive) -> None:
    """ARCHIVE_UNSAFE_DISABLE_HTTP_FILTER and ARCHIVE_BENCH_PASSTHROUGH_STORAGE mean
    nothing to the production entry: the filter and the encrypted storage stay."""
    archive_home.env["ARCHIVE_UNSAFE_DISABLE_HTTP_FILTER"] = "1"
    archive_home.env["ARCHIVE_BENCH_PASSTHROUGH_STORAGE"] = "1"
    archive_home.start()
    try:
        with client(archive_home) as anonymous:
            assert anonymous.get("/system").status_code == 403
    finally:
        archive_home.stop()
    log = archive_home.log.read_text(errors="replace")
    assert "FILTER IS DISABLED" not in log and "PASS-THROUGH" not in log
    records = _audit_records(archive_home, settle=0)
    assert not any(r["action"].startswith("security.") for r in records)


def test_the_benchmark_entry_opening_rest_is_loud_and_audited(
    archive_home: RunningArchive,
) -> None:
    archive_home.env.update(OPEN_REST)
    archive_home.start()
    try:
        with client(archive_home) as anonymous:  # wide open: why it is benchmarks only
            assert anonymous.get("/system").status_code == 200
    finally:
        archive_home.stop()
    assert "THE HTTP ACCESS FILTER IS DISABLED" in archive_home.log.read_text(errors="replace")
    records = _audit_records(archive_home, settle=0)
    assert any(
        r["action"] == "security.filter_disabled" and r["outcome"] == "failure" for r in records
    )
