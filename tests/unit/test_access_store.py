"""Accounts, training, sign-in backoff, session epochs, tokens, headers and DICOM admission."""

from __future__ import annotations

import base64
import hmac
from datetime import UTC, date, datetime, timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from archive.access import (
    AccessError,
    AccessStore,
    AccountPolicy,
    AuthFailure,
    Principal,
    auth_event,
    authenticate_headers,
    decide,
    decision_event,
    dicom_decision,
    dicom_event,
    load_route_policy,
    tables,
)
from archive.access import credentials as store_module
from archive.db import connect
from archive.paths import POLICIES_DIR

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
PW = "correct horse battery"
POLICY = AccountPolicy()


@pytest.fixture
def store(tmp_path) -> AccessStore:
    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    s = AccessStore(connect(tmp_path / "archive.db"), POLICY, hasher=cheap)
    s.add_user("boss", PW, ["personnel"], T0, "root")
    s.add_user("alice", PW, ["trainer"], T0, "boss")
    s.record_training("alice", date(2025, 2, 1), T0, "boss")
    return s


def test_password_hashed_with_argon2id(store: AccessStore) -> None:
    row = store.conn.execute(
        select(tables.users.c.password_hash).where(tables.users.c.name == "alice")
    ).fetchone()
    assert row[0].startswith("$argon2id$") and PW not in row[0]


def test_basic_success_gives_principal(store: AccessStore) -> None:
    p = store.authenticate_basic("alice", PW, T0)
    assert isinstance(p, Principal)
    assert p.roles == ("trainer",) and p.trained and p.training_expires == date(2026, 2, 1)


def test_wrong_password_and_unknown_user(store: AccessStore) -> None:
    assert store.authenticate_basic("alice", "wrong password!", T0) == AuthFailure(
        "bad_credentials", "alice"
    )
    assert store.authenticate_basic("nobody", PW, T0) == AuthFailure("bad_credentials", "nobody")


A, B = "10.0.0.1", "10.0.0.2"


def test_twenty_failures_from_one_address_do_not_lock_out_the_person(
    store: AccessStore,
) -> None:
    """Finding 7: five wrong passwords from anywhere locked any account for 30 min."""
    reasons = [
        store.authenticate_basic("boss", "nope-nope-nope", T0 + timedelta(seconds=i), A).reason
        for i in range(20)
    ]
    assert "locked" not in reasons and reasons.count("throttled") > 0
    assert store.get_user("boss").locked_until is None
    # The same person, from their own address, signs in at once with the right password.
    assert isinstance(store.authenticate_basic("boss", PW, T0 + timedelta(seconds=20), B),
                      Principal)  # fmt: skip
    # ... while the attacking address is still refused, even with the right password,
    # unchecked (nothing learnt from a guess made while waiting).
    refused = store.authenticate_basic("boss", PW, T0 + timedelta(seconds=20), A)
    assert refused.reason == "throttled" and refused.retry_after >= 1
    assert "this account from this address" in refused.detail


def test_backoff_grows_exponentially_then_lets_the_pair_try_again(store: AccessStore) -> None:
    t, waits = T0, []
    for _ in range(8):
        r = store.authenticate_basic("alice", "nope-nope-nope", t, A)
        assert r.reason == "bad_credentials"  # each try waits out the previous backoff
        waits.append(r.retry_after or 0)
        t += timedelta(seconds=(r.retry_after or 0) + 0.5)
    assert waits[:3] == [0, 0, 0]  # policies: 3 free failures per (account, address)
    assert waits[3:] == [1, 2, 4, 8, 16]  # then doubling
    early = store.authenticate_basic("alice", PW, t - timedelta(seconds=10), A)
    assert early.reason == "throttled"
    assert isinstance(store.authenticate_basic("alice", PW, t, A), Principal)


def test_address_backoff_covers_password_spraying(store: AccessStore) -> None:
    for i in range(store.policy.throttle_free_per_address):
        name = f"user{i}x"
        assert store.authenticate_basic(name, "guess-guess-guess", T0, A).reason == (
            "bad_credentials"
        )
    r = store.authenticate_basic("someone", "guess-guess-guess", T0, A)
    assert r.reason == "bad_credentials" and r.retry_after == 1
    r = store.authenticate_basic("alice", PW, T0, A)
    assert r.reason == "throttled" and "from this address" in r.detail
    assert isinstance(store.authenticate_basic("alice", PW, T0, B), Principal)


def test_bearer_failures_back_off_per_address_too(store: AccessStore) -> None:
    _, token = store.create_token("alice", T0)
    forged = token[:-4] + "AAAA"
    for _ in range(store.policy.throttle_free_per_account_address):
        assert store.authenticate_bearer(forged, T0, A).reason == "bad_credentials"
    assert store.authenticate_bearer(forged, T0, A).retry_after == 1
    assert store.authenticate_bearer(token, T0, A).reason == "throttled"
    assert isinstance(store.authenticate_bearer(token, T0, B), Principal)
    headers = {"authorization": "Digest nonsense"}
    assert authenticate_headers(store, headers, T0, "10.9.9.9").reason == "malformed"


def test_throttled_failure_is_audited_with_retry_after(store: AccessStore) -> None:
    for _ in range(4):
        r = store.authenticate_basic("alice", "nope-nope-nope", T0, A)
    event = auth_event(r, A)
    assert event.detail["retry_after"] == 1 and "address" in event.detail["throttle"]
    event = auth_event(store.authenticate_basic("alice", PW, T0, A), A)
    assert event.outcome == "denied" and event.detail["reason"] == "throttled"


def test_session_epoch_bumped_by_every_change_that_ends_sessions(store: AccessStore) -> None:
    seen = [store.session_epoch("alice")]

    def bumped() -> bool:
        seen.append(store.session_epoch("alice"))
        return seen[-1] > seen[-2]

    store.reset_password("alice", "a brand new passphrase", T0)
    assert bumped()
    store.disable("alice")
    assert bumped()
    store.disable("alice", False)
    assert bumped()  # re-enabling does not bring back the epoch of old sessions
    store.set_roles("alice", ["trainer", "registrar"], T0, "boss")
    assert bumped()
    store.expire_account("alice", T0 + timedelta(days=30))
    assert bumped()
    store.record_training("alice", date(2023, 1, 1), T0, "boss")  # older: still trained
    assert not bumped()
    store.record_training("alice", T0.date(), T0, "boss", suite_use=False)  # withdrawn
    assert bumped()
    store.record_training("alice", T0.date(), T0, "boss")  # renewed: no
    assert not bumped()
    assert store.session_epoch("nobody") is None


def test_reset_password_unlocks_and_invalidates_cache(store: AccessStore) -> None:
    assert isinstance(store.authenticate_basic("alice", PW, T0), Principal)  # now cached
    for _ in range(3):
        store.authenticate_basic("alice", "nope-nope-nope", T0)
    store.reset_password("alice", "a brand new passphrase", T0)
    assert store.authenticate_basic("alice", PW, T0).reason == "bad_credentials"
    assert isinstance(store.authenticate_basic("alice", "a brand new passphrase", T0), Principal)


def test_constant_time_compare_is_used(store: AccessStore, monkeypatch) -> None:
    calls: list[int] = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(store_module.hmac, "compare_digest", spy)
    _, token = store.create_token("alice", T0)
    assert isinstance(store.authenticate_bearer(token, T0), Principal)
    assert len(calls) == 1
    store.authenticate_basic("alice", PW, T0)  # argon2 verify, then cached
    store.authenticate_basic("alice", PW, T0)  # cache hit compared with compare_digest
    assert len(calls) == 2


def test_training_missing_expired_or_incomplete(store: AccessStore) -> None:
    store.add_user("reg", PW, ["registrar"], T0, "boss")
    assert store.authenticate_basic("reg", PW, T0).trained is False
    store.record_training("reg", date(2024, 1, 1), T0, "boss")  # 365 days -> expired
    p = store.authenticate_basic("reg", PW, T0)
    assert p.trained is False and p.training_expires == date(2024, 12, 31)
    store.record_training("reg", date(2025, 2, 27), T0, "boss", suite_use=False)
    assert store.authenticate_basic("reg", PW, T0).trained is False
    store.record_training("reg", date(2025, 2, 28), T0, "boss")
    assert store.authenticate_basic("reg", PW, T0).trained is True
    routes = load_route_policy(POLICIES_DIR)
    untrained = store.authenticate_basic("alice", PW, T0 + timedelta(days=400))
    assert untrained.trained is False
    assert not decide(routes, untrained, "GET", "/teaching/cases/X/thumbnail").allowed
    with pytest.raises(AccessError, match="future"):
        store.record_training("reg", date(2026, 1, 1), T0, "boss")


def test_account_expiry_and_disable(store: AccessStore) -> None:
    store.expire_account("alice", T0 + timedelta(days=1))
    assert isinstance(store.authenticate_basic("alice", PW, T0), Principal)
    assert store.authenticate_basic("alice", PW, T0 + timedelta(days=1)).reason == "account_expired"
    store.expire_account("alice", None)
    store.disable("alice")
    assert store.authenticate_basic("alice", PW, T0).reason == "disabled"
    store.disable("alice", False)
    assert isinstance(store.authenticate_basic("alice", PW, T0), Principal)


def test_tokens_hashed_expire_revoke_last_used(store: AccessStore) -> None:
    token_id, token = store.create_token("alice", T0, days=10, label="script")
    row = store.conn.execute(select(tables.tokens.c.token_hash)).fetchone()
    secret = token.split("_", 2)[2]  # the random part may itself contain "_"
    assert token not in row[0] and secret and secret not in row[0]
    assert store.list_tokens("alice")[0].last_used_at is None
    p = store.authenticate_bearer(token, T0 + timedelta(hours=1))
    assert isinstance(p, Principal) and p.method == "bearer" and p.token_id == token_id
    assert store.list_tokens("alice")[0].last_used_at == (T0 + timedelta(hours=1)).isoformat()
    later = T0 + timedelta(hours=2)
    store.authenticate_bearer(token, later)
    assert store.list_tokens()[0].last_used_at == later.isoformat()
    assert store.authenticate_bearer(token, T0 + timedelta(days=10)).reason == "token_expired"
    store.revoke_token(token_id, later)
    assert store.authenticate_bearer(token, later).reason == "token_revoked"
    assert store.list_tokens()[0].revoked_at == later.isoformat()


def test_forged_or_malformed_tokens(store: AccessStore) -> None:
    token_id, token = store.create_token("alice", T0)
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert store.authenticate_bearer(forged, T0).reason == "bad_credentials"
    assert (
        store.authenticate_bearer("ta1_0000000000000000_" + "x" * 43, T0).reason
        == "bad_credentials"
    )
    assert store.authenticate_bearer("garbage", T0).reason == "malformed"


def test_disabled_user_tokens_stop(store: AccessStore) -> None:
    _, token = store.create_token("alice", T0)
    store.disable("alice")
    assert store.authenticate_bearer(token, T0).reason == "disabled"
    with pytest.raises(AccessError, match="disabled"):
        store.create_token("alice", T0)


def test_token_lifetime_bounded(store: AccessStore) -> None:
    with pytest.raises(AccessError, match="lifetime"):
        store.create_token("alice", T0, days=POLICY.token_max_days + 1)


def test_other_speciality_only_by_approved_application(store: AccessStore) -> None:
    with pytest.raises(AccessError, match="application"):
        store.add_user("cardio", PW, ["other_speciality"], T0, "boss")
    store.add_user("cardio", PW, [], T0, "boss")
    with pytest.raises(AccessError, match="application"):
        store.set_roles("cardio", ["other_speciality"], T0, "boss")
    with pytest.raises(AccessError, match="does not allow application.approve"):
        store.approve_application("cardio", "alice", "cardiology", T0)
    user = store.approve_application("cardio", "boss", "cardiology", T0, note="APP-7")
    assert user.roles == ("other_speciality",)
    assert user.applications[0].approved_by == "boss"
    store.record_training("cardio", date(2025, 2, 1), T0, "boss")
    assert store.authenticate_basic("cardio", PW, T0).roles == ("other_speciality",)


def test_bad_inputs_refused(store: AccessStore) -> None:
    with pytest.raises(AccessError, match="at least"):
        store.add_user("bob", "short", ["trainer"], T0, "boss")
    with pytest.raises(AccessError, match="unknown role"):
        store.add_user("bob", PW, ["janitor"], T0, "boss")
    with pytest.raises(AccessError, match="already exists"):
        store.add_user("alice", PW, ["trainer"], T0, "boss")
    for name in ("Bob", "b", "9434765919", "nhs9434765919", "a b"):
        with pytest.raises(AccessError, match="user name"):
            store.add_user(name, PW, ["trainer"], T0, "boss")


def _basic(user: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_authenticate_headers(store: AccessStore) -> None:
    assert isinstance(authenticate_headers(store, _basic("alice", PW), T0), Principal)
    assert authenticate_headers(store, _basic("alice", "x" * 12), T0).reason == "bad_credentials"
    _, token = store.create_token("alice", T0)
    p = authenticate_headers(store, {"authorization": f"Bearer {token}"}, T0)
    assert isinstance(p, Principal) and p.method == "bearer"
    assert authenticate_headers(store, {"Authorization": f"bearer {token}"}, T0).user == "alice"
    assert authenticate_headers(store, {}, T0).reason == "no_credentials"
    for bad in (
        "Basic !!!",
        "Basic " + base64.b64encode(b"nocolon").decode(),
        "Digest x",
        "Basic " + base64.b64encode(b"\xff:\xfe").decode(),
        "Basic " + "A" * 5000,
    ):
        assert authenticate_headers(store, {"authorization": bad}, T0).reason == "malformed", bad


def test_audit_events_for_auth_and_decisions(store: AccessStore) -> None:
    p = store.authenticate_basic("alice", PW, T0)
    assert auth_event(p, "10.0.0.1").outcome == "success"
    failed = auth_event(AuthFailure("locked", "alice"), "10.0.0.1")
    assert failed.outcome == "denied" and failed.detail["reason"] == "locked"
    routes = load_route_policy(POLICIES_DIR)
    d = decide(routes, p, "GET", "/instances/x/file")
    ev = decision_event(p, "GET", "/instances/x/file?y=1", d, "10.0.0.1", routes.version)
    assert ev.outcome == "denied" and ev.detail["uri"] == "/instances/x/file"
    # A URI carrying an identifier-looking number is withheld, not logged.
    ev = decision_event(p, "GET", "/teaching/cases/9434765919", d, "10.0.0.1", 1)
    assert "uri" not in ev.detail and ev.detail["withheld"] is True


def test_dicom_admission(store: AccessStore) -> None:
    store.add_dicom_node("pacs", "PACS", "10.0.0.2", 104, may_store=True)
    store.add_dicom_node("ws-01", "OSIRIX01", "10.0.0.21", 11112, may_query=True)
    assert dicom_decision(store, "store", "PACS", "10.0.0.2").allowed
    assert dicom_decision(store, "store", "PACS", "::ffff:10.0.0.2").allowed
    assert not dicom_decision(store, "store", "PACS", "10.0.0.99").allowed  # wrong host
    assert "another host" in dicom_decision(store, "store", "PACS", "10.0.0.99").reason
    assert not dicom_decision(store, "store", "ROGUE", "10.0.0.2").allowed  # unregistered AE
    assert not dicom_decision(store, "find", "PACS", "10.0.0.2").allowed  # source can't query
    assert not dicom_decision(store, "store", "OSIRIX01", "10.0.0.21").allowed
    for kind in ("find", "move", "get"):
        assert dicom_decision(store, kind, "OSIRIX01  ", "10.0.0.21").allowed
    assert dicom_decision(store, "move", "OSIRIX01", "10.0.0.21", "OSIRIX01").allowed
    assert not dicom_decision(store, "move", "OSIRIX01", "10.0.0.21", "EVIL").allowed
    assert not dicom_decision(store, "echo", "OSIRIX01", "10.0.0.21").allowed
    ev = dicom_event("store", "ROGUE", "10.0.0.9", dicom_decision(store, "store", "ROGUE", "x"))
    assert ev.outcome == "denied" and ev.source == "ROGUE@10.0.0.9"
    with pytest.raises(AccessError, match="already registered"):
        store.add_dicom_node("ws-02", "OSIRIX01", "10.0.0.21", 11112, may_query=True)
    store.remove_dicom_node("ws-01")
    assert not dicom_decision(store, "find", "OSIRIX01", "10.0.0.21").allowed
    assert [n.name for n in store.list_dicom_nodes()] == ["pacs"]
