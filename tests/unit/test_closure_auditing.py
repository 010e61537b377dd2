from archive.audit import AuditEvent, check_event
from archive.closure.auditing import audit_hash_value, hash_for_audit

DIGITS = "ab1234567890" * 5 + "abcd"  # a hex digest with 10-digit runs


def test_audited_hash_passes_the_identifier_check_and_round_trips() -> None:
    audited = hash_for_audit(DIGITS)
    check_event(AuditEvent("closure.receipt", "success", "op", detail={"sha256": audited}))
    assert audit_hash_value(audited) == DIGITS


def test_plain_hex_hash_with_ten_digit_runs_is_not_mistaken_for_an_nhs_number() -> None:
    """Digit runs inside a hex token are random, not identifiers: the guard lets them be."""
    check_event(AuditEvent("closure.receipt", "success", "op", detail={"sha256": DIGITS}))
