"""One instance to the archive over REST, and what the answer means for the source file.

`POST /instances` goes through Orthanc's received-instance callback exactly like
C-STORE, so de-identification always applies. The bearer token is always sent: while
the archive's HTTP filter is not active Orthanc ignores it, once it is the filter
checks it, so the watcher works either way. Only an explicit HTTP 200 with Status
Success / AlreadyStored (stored) or FilteredOut (held in quarantine by the ingest
callback) lets the caller delete the source; anything unexpected keeps the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import httpx


class Verdict(Enum):
    STORED = "stored"
    ALREADY = "already"  # Orthanc already had it (a re-upload after a crash)
    HELD = "held"  # held in the encrypted quarantine: safely kept, not in Orthanc
    REJECTED = "rejected"  # the bytes are not an acceptable instance; move to rejects
    AUTH = "auth"  # token refused: an operator must fix it; keep the file, retry
    RETRY = "retry"  # archive down, full or busy: keep the file, back off

    @property
    def confirmed(self) -> bool:
        return self in (Verdict.STORED, Verdict.ALREADY, Verdict.HELD)


_STATUS = {"Success": Verdict.STORED, "AlreadyStored": Verdict.ALREADY,
           "FilteredOut": Verdict.HELD}  # fmt: skip
_REJECT_CODES = {400: "not a readable DICOM instance (non-DICOM or truncated)",
                 413: "too large for the archive", 415: "not a DICOM file",
                 422: "not an acceptable DICOM instance"}  # fmt: skip
# Orthanc's own error codes (OrthancStatus) that mean "these bytes are not usable".
_BAD_INPUT = {15: "not a readable DICOM instance (non-DICOM or truncated)",
              20: "corrupted DICOM file", 21: "required DICOM element missing (truncated?)",
              27: "unknown DICOM tag", 33: "empty file"}  # fmt: skip


@dataclass(frozen=True)
class UploadResult:
    verdict: Verdict
    reason: str  # our own words: never the server's text, never the file's content
    http_status: int | None = None


def classify(status: int, body: object) -> UploadResult:
    """Map Orthanc's answer to what happens to the source file."""
    if status == 200:
        answer = body if isinstance(body, dict) else {}
        verdict = _STATUS.get(str(answer.get("Status", "")))
        if verdict is None:
            return UploadResult(Verdict.RETRY, "unexpected answer from the archive", status)
        return UploadResult(verdict, verdict.value, status)
    orthanc_status = body.get("OrthancStatus") if isinstance(body, dict) else None
    if 400 <= status < 500 and orthanc_status in _BAD_INPUT:
        return UploadResult(Verdict.REJECTED, _BAD_INPUT[orthanc_status], status)
    if status in _REJECT_CODES:
        return UploadResult(Verdict.REJECTED, _REJECT_CODES[status], status)
    if status in (401, 403):
        return UploadResult(
            Verdict.AUTH,
            "the archive refused the intake token (expired, revoked or not personnel)",
            status,
        )
    if status == 507:
        return UploadResult(Verdict.RETRY, "the archive's storage is full", status)
    if status >= 500:
        return UploadResult(Verdict.RETRY, f"archive error (HTTP {status}; full disk?)", status)
    return UploadResult(Verdict.RETRY, f"unexpected HTTP {status} from the archive", status)


class Uploader:
    """A keep-alive HTTP client for the archive's /instances route (thread-safe)."""

    def __init__(self, base_url: str, token: str, timeout: float = 120.0,
                 workers: int = 4) -> None:  # fmt: skip
        self.client = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            verify=False,  # noqa: S501 - loopback to our own archive (self-signed cert)
            limits=httpx.Limits(max_connections=workers, max_keepalive_connections=workers),
        )

    def close(self) -> None:
        self.client.close()

    def upload(self, data: bytes) -> UploadResult:
        try:
            response = self.client.post(
                "/instances", content=data, headers={"Content-Type": "application/dicom"}
            )
        except httpx.TimeoutException:
            return UploadResult(Verdict.RETRY, "the archive did not answer in time")
        except httpx.TransportError:
            return UploadResult(Verdict.RETRY, "the archive is not reachable (down?)")
        try:
            body = response.json()
        except ValueError:
            body = None
        return classify(response.status_code, body)
