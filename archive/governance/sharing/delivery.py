"""Delivering an authorised share (issue 9): where signed undertakings are kept, how a
recipient's DICOM node is named to Orthanc, and the manifest inside a share package.

Plain domain code: the Orthanc adapters (plugins/share_*routes.py) and the CLI both use
it, so a signed undertaking is stored, and a package described, the same way on every
path.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from pathlib import Path
from typing import Protocol

from archive.governance import manifest as mf
from archive.governance._store import ts
from archive.governance.errors import InvalidInputError, NotFoundError
from archive.governance.sharing.records import Shares, ShareTicket

# Signed undertakings live encrypted (vault EncryptedStore) in HOME/data/undertakings;
# key rotation must rewrap this directory with the storage area and the quarantine.
UNDERTAKINGS_DIRNAME = "undertakings"
UNDERTAKING_CONTENT_TYPE = 90  # not an Orthanc content type: a signed document
MAX_UNDERTAKING_BYTES = 50 * 1024 * 1024
SHARE_MANIFEST_FORMAT = "teaching-archive-share"
SHARE_MANIFEST_VERSION = 1
_REF = re.compile(r"^undertakings/(undertaking-[0-9]{6}-[0-9a-f]{16})\.([0-9]+)$")


class _Store(Protocol):
    def write(self, uuid: str, content_type: int, data: bytes) -> None: ...

    def read(self, uuid: str, content_type: int) -> bytes: ...


def undertakings_dir(data_dir: Path) -> Path:
    """The encrypted store of signed undertakings inside the home's data directory."""
    return Path(data_dir) / UNDERTAKINGS_DIRNAME


def recipient_node_name(recipient_id: int) -> str:
    """The DicomModalities name of a recipient's node (registered in the access store
    with no store/query rights, so it can only ever be sent to)."""
    return f"recipient-{int(recipient_id)}"


def store_signed_undertaking(store: _Store, proposal_id: int, data: bytes) -> tuple[str, str]:
    """Encrypt the signed copy into the vault store; returns (stored_ref, sha256).

    The hash is of the bytes as received, so anyone holding the paper's scan can check
    it against the register."""
    if not isinstance(data, bytes | bytearray) or not data:
        raise InvalidInputError("the signed undertaking file is empty.")
    if len(data) > MAX_UNDERTAKING_BYTES:
        raise InvalidInputError(
            f"the signed undertaking is larger than {MAX_UNDERTAKING_BYTES // 2**20} MiB; "
            "scan it at a lower resolution."
        )
    digest = hashlib.sha256(data).hexdigest()
    uuid = f"undertaking-{int(proposal_id):06d}-{digest[:16]}"
    store.write(uuid, UNDERTAKING_CONTENT_TYPE, bytes(data))
    return f"{UNDERTAKINGS_DIRNAME}/{uuid}.{UNDERTAKING_CONTENT_TYPE}", digest


def read_signed_undertaking(store: _Store, stored_ref: str, expected_sha256: str) -> bytes:
    """Decrypt a stored signed copy and check it is the one the register names."""
    match = _REF.match(stored_ref or "")
    if match is None:
        raise NotFoundError(f"{stored_ref!r} is not a stored undertaking reference.")
    data = store.read(match.group(1), int(match.group(2)))
    if hashlib.sha256(data).hexdigest() != expected_sha256:
        raise InvalidInputError(
            "the stored undertaking does not match the SHA-256 in the register; "
            "restore it from a backup and check the audit log."
        )
    return data


def share_package_manifest(
    shares: Shares,
    ticket: ShareTicket,
    entries: list[tuple[str, str, str]],
    *,
    now: datetime,
) -> dict[str, object]:
    """The manifest.json of a share package: instances with SHA-256, the Board's decision,
    the undertaking it stands on, and the undertaking's text as the package's terms."""
    items = mf.normalise(entries)
    outside = sorted({e.case_id for e in items} - set(ticket.case_ids))
    if outside:
        raise InvalidInputError(
            f"case(s) {', '.join(outside)} are not in {ticket.proposal_reference}."
        )
    body = mf.as_dict(items)
    decision, undertaking = ticket.decision, ticket.undertaking
    return {
        "format": SHARE_MANIFEST_FORMAT,
        "version": SHARE_MANIFEST_VERSION,
        "policy_version": shares.policy.version,
        "created_at": ts(now),
        "approval": {
            "reference": ticket.proposal_reference,
            "recipient": ticket.recipient.organisation,
            "recipient_kind": ticket.recipient.kind,
            "decision": decision.reference,
            "decision_text": decision.decision_text,
            "approvers": [v.member for v in decision.votes if v.counted],
            "undertaking_sha256": undertaking.signed_sha256,
            "undertaking_signatory": undertaking.signatory_name,
            "undertaking_signed_on": undertaking.signed_on.isoformat(),
        },
        "cases": body,
        "case_count": len(body),
        "instance_count": len(items),
        "manifest_sha256": mf.manifest_sha256(items),
        "terms": shares.render_undertaking(ticket.proposal_id),
    }


def check_undertaking_organisation(shares: Shares, proposal_id: int, organisation: str) -> None:
    """Refuse a signed copy for another organisation before anything is stored, so a
    refused undertaking leaves no orphan file in the vault."""
    from archive.governance._store import person_key
    from archive.governance.errors import NotAuthorisedError

    proposal = shares.get(proposal_id)
    recipient = shares.recipients.get(proposal.recipient_id)
    if person_key(organisation or "") != person_key(recipient.organisation):
        raise NotAuthorisedError(
            f"the undertaking is signed for {organisation!r} but the recipient is "
            f"{recipient.organisation!r}; it must be signed on the recipient's behalf."
        )
