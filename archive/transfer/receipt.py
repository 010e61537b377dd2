"""The signed receipt (FORMAT.md section 5): issued by the receiver, checked by the sender."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from archive.transfer.keys import TransferKeys, fingerprint, verify_signature
from archive.transfer.package import Peer, TransferError, canonical, sha256

RECEIPT_FORMAT = "ta-transfer/v1 receipt"
RECEIPT_CONTEXT = b"ta-transfer/v1 receipt\n"


def sign_receipt(body: dict, keys: TransferKeys) -> dict:
    body = {**body, "format": RECEIPT_FORMAT}
    return {"receipt": body, "signature": keys.sign(RECEIPT_CONTEXT + canonical(body))}


@dataclass(frozen=True)
class VerifiedReceipt:
    body: dict
    receipt_sha256: str
    signer: Peer
    stored: int
    held: list[dict]

    @property
    def rows(self) -> list[tuple[str, str, str]]:
        """(sender case id, SOP uid, sha256) of every item the receiver holds."""
        return [
            (i["sender_case_id"], i["sop_instance_uid"], i["sha256"]) for i in self.body["items"]
        ]

    def statement(self, organisation: str) -> str:
        """What the receipt verifies, in one sentence for the closure certificate."""
        total = len(self.body["items"])
        text = (
            f"Yes: {organisation}'s signed receipt (Ed25519 key {self.signer.fingerprint}, "
            f"verified) lists all {total} instance(s) sent, each with a matching SHA-256: "
            f"{self.stored} stored"
        )
        if self.held:
            reasons = sorted({str(h.get("reason", "")) for h in self.held})
            text += f", {len(self.held)} held for review there ({'; '.join(reasons)[:300]})"
        return text + f"; receipt sha256 {self.receipt_sha256}"


def read_receipt(path: Path) -> tuple[dict, bytes]:
    try:
        raw = path.read_bytes()
        return json.loads(raw), raw
    except (OSError, ValueError) as exc:
        raise TransferError(
            f"cannot read the receipt {path} ({exc}); give the receipt JSON."
        ) from None


def verify_receipt(
    document: dict,
    raw: bytes,
    *,
    peer: Peer,
    envelope_sha256: str,
    manifest_sha256: str,
    sent: Sequence[tuple[str, str, str]],
) -> VerifiedReceipt:
    """Believe a receipt only if signed by the receiving peer, about our package, and
    listing every instance we sent once with the same hash."""
    try:
        body = document["receipt"]
        signature = str(document["signature"])
        signer_hex = str(body["receiver"]["signing_key"])
        items = list(body["items"])
    except (KeyError, TypeError):
        raise TransferError("the receipt is not the JSON ta-transfer/v1 defines.") from None
    if body.get("format") != RECEIPT_FORMAT:
        raise TransferError("the receipt's format is not ta-transfer/v1.")
    if signer_hex != peer.signing_key or not verify_signature(
        peer.signing_key, signature, RECEIPT_CONTEXT + canonical(body)
    ):
        raise TransferError(
            f"the receipt's signature does not verify under {peer.organisation}'s registered "
            "key: it was altered or not issued by them; ask them for the original."
        )
    if fingerprint(bytes.fromhex(signer_hex)) != peer.fingerprint:
        raise TransferError("the receipt's signer fingerprint is not the registered one.")
    if body.get("envelope_sha256") != envelope_sha256 or body.get("manifest_sha256") != (
        manifest_sha256
    ):
        raise TransferError("the receipt is about another package than the one sent.")
    got = sorted((i["sender_case_id"], i["sop_instance_uid"], i["sha256"]) for i in items)
    if got != sorted(tuple(r) for r in sent):
        missing = len(set(map(tuple, sent)) - set(got))
        raise TransferError(
            f"the receipt does not list every instance sent with its hash ({missing} missing or "
            "different); reconcile with the receiver before recording it."
        )
    held = [i for i in items if i.get("outcome") == "held"]
    stored = sum(1 for i in items if i.get("outcome") == "stored")
    if stored + len(held) != len(items):
        raise TransferError("the receipt lists an item neither stored nor held.")
    return VerifiedReceipt(body, sha256(raw), peer, stored, held)
