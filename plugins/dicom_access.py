"""DICOM admission, audited: every stored instance is checked against the registered
sources and audited; associations Orthanc refuses are audited from its log.

Who enforces what:
- Orthanc itself refuses associations from AE titles that are not in DicomModalities
  (generated from access_dicom_nodes at every `archive serve`), and with
  DicomCheckModalityHost=true also a registered AE calling from another host;
  DicomAlwaysAllow*=false make the AllowStore/AllowFind/AllowMove flags binding.
- The incoming C-STORE instance filter below checks again, for each instance, that the
  calling AE is a registered source (fail closed: an error refuses the instance), and
  audits it. orthanc-python 4.0 gives the filter the calling AE title but not the peer's
  address, so the host half of the check is Orthanc's (DicomCheckModalityHost).

Refused associations never reach a plugin callback in Orthanc 1.10.1 / orthanc-python
4.0: the association is rejected inside Orthanc's DICOM server before any C-STORE,
C-FIND or C-MOVE handler runs, and the only hooks that would see a C-FIND/C-MOVE
(RegisterFindCallback/RegisterMoveCallback) REPLACE Orthanc's native handlers, which we
must not do. Orthanc does log every refusal, so a background thread follows Orthanc's
log file (HOME/orthanc.log, where `archive serve` sends it) and audits each refusal as
access.dicom denied with the AE title and address Orthanc reports. If the log cannot be
followed, a start-up warning says so (refusals are then only in Orthanc's log).
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import orthanc

from archive.access import Decision, dicom_decision, dicom_event

# Orthanc 1.10.1's log lines for a refusal: main.cpp says why, CommandDispatcher says
# which request (Store, Find, Move, Get) from which AE title and address.
_WHY = re.compile(r"DICOM authorization rejected\s+for AET (?P<aet>\S+) on IP \S+ (?P<why>.*)")
_REJECTED = re.compile(
    r'Rejected (?P<kind>\w+) request from remote DICOM modality with AET "(?P<aet>[^"]*)"'
    r' and hostname "(?P<host>[^"]*)"'
)
_REASONS = (
    ("not listed", "calling AE title is not registered"),
    ("IP address should be", "AE title registered for another host"),
)
_SUCCESS = 0x0000
_REFUSED_NOT_AUTHORIZED = 0x0124  # PS3.7 C.4: Refused: Not Authorized


def register(services) -> None:
    record = services.record
    root = services.access_store()
    watch = root.watch
    nodes_cache: dict[str, object] = {"generation": None, "nodes": []}

    def nodes() -> list:
        generation = watch.generation if watch is not None else None
        if generation is None or nodes_cache["generation"] != generation:
            nodes_cache["nodes"] = services.access_store().list_dicom_nodes()
            nodes_cache["generation"] = generation
        return nodes_cache["nodes"]  # type: ignore[return-value]

    def on_cstore(received) -> int:
        aet = "unknown-ae"
        try:
            aet = str(received.GetInstanceRemoteAet() or "").strip() or "unknown-ae"
            listing = nodes()
            # Orthanc has checked the host (DicomCheckModalityHost); check the AE with it.
            hosts = [n.host for n in listing if n.aet == aet and n.may_store]
            host = hosts[0] if hosts else "unknown-host"
            decision = dicom_decision(listing, "store", aet, host)
            record(dicom_event("store", aet, host, decision))
            return _SUCCESS if decision.allowed else _REFUSED_NOT_AUTHORIZED
        except Exception as exc:  # noqa: BLE001 - never raise into Orthanc; refuse
            orthanc.LogError(
                f"teaching-archive: C-STORE admission check failed, instance refused: "
                f"{type(exc).__name__}"
            )
            return _REFUSED_NOT_AUTHORIZED

    orthanc.RegisterIncomingCStoreInstanceFilter(on_cstore)
    _follow_refusals(Path(services.home.orthanc_log), record)


def _follow_refusals(log_path: Path, record, interval: float = 0.5) -> None:
    """Audit the refusals Orthanc writes to its log, from now on (see module doc)."""
    if not log_path.exists():
        orthanc.LogWarning(
            f"teaching-archive: {log_path} not found: refused DICOM associations are "
            "only in Orthanc's own log (start the archive with `archive serve`)."
        )
        return

    def follow() -> None:
        try:
            handle = log_path.open("rb")
        except OSError:
            return
        with handle:
            handle.seek(0, 2)
            pending = b""
            why: dict[str, str] = {}
            while True:
                chunk = handle.read()
                if not chunk:
                    time.sleep(interval)
                    continue
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    _audit_refusal(raw.decode("utf-8", "replace"), record, why)

    threading.Thread(target=follow, name="dicom-refusal-audit", daemon=True).start()


def _audit_refusal(line: str, record, why: dict[str, str]) -> None:
    match = _WHY.search(line)
    if match is not None:
        text = match.group("why")
        why[match.group("aet")] = next(
            (reason for needle, reason in _REASONS if needle in text), "refused by Orthanc"
        )
        return
    match = _REJECTED.search(line)
    if match is None:
        return
    aet = match.group("aet")[:16] or "unknown-ae"
    reason = why.pop(aet, "refused by Orthanc (unregistered AE title or host)")
    decision = Decision(False, f"association refused: {reason}")
    try:
        record(dicom_event(match.group("kind").lower(), aet, match.group("host"), decision))
    except Exception as exc:  # noqa: BLE001 - keep following the log
        orthanc.LogError(f"teaching-archive: cannot audit a DICOM refusal: {type(exc).__name__}")
