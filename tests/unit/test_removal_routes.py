"""The removal route adapters with a stand-in orthanc (issue 21): the approver is the
authenticated person, never their own request; refusals carry reason and next step."""

from __future__ import annotations

from tests.unit.governance_fakes import adapter, as_


def _request(fake, who="reg1", purpose="teaching_materials"):
    body = {"cases": ["NSR-0001"], "purpose": purpose, "destination": "RCR lecture"}
    return fake.call("POST", "/teaching/removals", headers=as_(who), body=body)


def test_request_approve_as_the_signed_in_person(monkeypatch, tmp_path):
    fake, services = adapter(monkeypatch, tmp_path, "removal_routes")
    made = _request(fake)
    assert made.status == 200, made.text
    rid = made.json()["id"]
    # A registrar cannot approve; personnel cannot either: only HoS or a TPD.
    for who in ("reg1", "pers1"):
        refused = fake.call("POST", f"/teaching/removals/{rid}/approve", headers=as_(who),
                            body={"text": "ok"})  # fmt: skip
        assert refused.status == 403, refused.text
        assert "Head of School" in refused.json()["next"]
    # A body naming another approver changes nothing: the approver is who signed in.
    ok = fake.call("POST", f"/teaching/removals/{rid}/approve", headers=as_("tpd1"),
                   body={"text": "Approved.", "approver": "hos"})  # fmt: skip
    assert ok.status == 200, ok.text
    assert ok.json()["approval"]["approver"] == "tpd1"
    assert ok.json()["approval"]["approver_role"] == "tpd"
    again = fake.call("POST", f"/teaching/removals/{rid}/refuse", headers=as_("hos"),
                      body={"reason": "late"})  # fmt: skip
    assert again.status == 409 and "approved" in again.json()["error"]
    events = [(e.actor, e.outcome) for e in services.events if e.action.startswith(
        "governance.removal.")]  # fmt: skip
    assert events == [("reg1", "success"), ("reg1", "denied"), ("pers1", "denied"),
                      ("tpd1", "success"), ("hos", "denied")]  # fmt: skip


def test_no_approval_of_ones_own_request(monkeypatch, tmp_path):
    fake, services = adapter(monkeypatch, tmp_path, "removal_routes")
    rid = _request(fake, who="tpd1").json()["id"]
    own = fake.call("POST", f"/teaching/removals/{rid}/approve", headers=as_("tpd1"),
                    body={"text": "ok"})  # fmt: skip
    assert own.status == 403 and "own request" in own.json()["error"]


def test_commercial_refused_when_asked_and_unknown_is_404(monkeypatch, tmp_path):
    fake, services = adapter(monkeypatch, tmp_path, "removal_routes")
    commercial = _request(fake, purpose="commercial")
    assert commercial.status == 400 and "commercial" in commercial.json()["error"]
    missing = fake.call("POST", "/teaching/removals/77/approve", headers=as_("tpd1"),
                        body={"text": "ok"})  # fmt: skip
    assert missing.status == 404 and missing.json()["next"]


def test_only_the_requester_and_its_approver_download_an_approved_removal(monkeypatch, tmp_path):
    fake, services = adapter(monkeypatch, tmp_path, "removal_routes", "removal_export_routes")
    rid = _request(fake, who="reg1").json()["id"]
    fake.call("POST", f"/teaching/removals/{rid}/approve", headers=as_("tpd1"),
              body={"text": "Approved."})  # fmt: skip
    body = {"passphrase": "a long enough export passphrase 42"}
    # Another approver, who did not sign this permission, may not.
    theirs = fake.call("POST", f"/teaching/removals/{rid}/export", headers=as_("hos"), body=body)
    assert theirs.status == 403, theirs.text
    assert "requester" in theirs.json()["next"]
    event = services.audited("governance.removal.export")[-1]
    assert (event.actor, event.outcome) == ("hos", "denied")
    assert "owner" in event.detail["reason"]
