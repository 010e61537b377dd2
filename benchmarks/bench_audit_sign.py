"""Cost of signing every audit record (archive/audit/FORMAT.md v2) beside the unsigned append.

Same run, same events, fresh directories, no database anchor (its cost is one row
update per write, measured apart from the signature):
  - "unsigned": AuditLog without a signer (what a command without the keyring writes);
  - "signed":   AuditLog with the keyring's Ed25519 audit key: one signature per record;
both synchronous without fsync (durable=False: the CPU cost of chaining and signing, not
the disk's) and with group commit (as the Orthanc plugin appends, durable). Prints the
cost per record of each and the ratio signed/unsigned.

Run: .venv/bin/python benchmarks/bench_audit_sign.py [--records 2000] [--json]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from archive.audit import AuditEvent, AuditLog  # noqa: E402
from benchmarks._common import emit_json, ratio, ratio_line  # noqa: E402

EVENT = AuditEvent(
    "access.decision", "success", "alice", ("trainer",), "10.0.0.5", "NSR-000123", {"r": "ok"}
)


def per_record(root: Path, signer: Ed25519PrivateKey | None, n: int, grouped: bool) -> float:
    """Best microseconds per appended record over three rounds."""
    best = float("inf")
    for round_ in range(3):
        directory = root / f"{'s' if signer else 'u'}{'g' if grouped else 'y'}{round_}"
        log = AuditLog(directory, signer=signer, checkpoint_every=100, durable=grouped)
        if grouped:
            log.enable_group_commit(0.05)
        start = time.perf_counter()
        for _ in range(n):
            log.append(EVENT)
        log.flush()
        best = min(best, (time.perf_counter() - start) / n * 1e6)
        log.close()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    key = Ed25519PrivateKey.generate()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        figures = {
            "unsigned_sync_us": per_record(root, None, args.records, grouped=False),
            "signed_sync_us": per_record(root, key, args.records, grouped=False),
            "unsigned_group_us": per_record(root, None, args.records, grouped=True),
            "signed_group_us": per_record(root, key, args.records, grouped=True),
        }
    for name, value in figures.items():
        print(f"{name:<34} {value:9.1f} us/record")
    ratios = {
        "signed/unsigned sync": ratio(figures["signed_sync_us"], figures["unsigned_sync_us"]),
        "signed/unsigned group": ratio(figures["signed_group_us"], figures["unsigned_group_us"]),
    }
    for label, value in ratios.items():
        print(ratio_line(f"cost {label}", value))
    if args.json:
        emit_json("audit_sign", figures, ratios, records=args.records)


if __name__ == "__main__":
    main()
