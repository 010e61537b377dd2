"""The one closure plan (issue 21): the CLI (`archive close plan`) and the web page
(/teaching/ui/closure) both call `gather_plan`, so they cannot disagree (they did: the
web page counted 0 volumes to destroy where the CLI counted 1).

Each room answers for itself: the catalogue counts the cases still held, the vault's
ledger the instances and bytes, pulls the workstations, sharing the shares still held by
recipients, removals the approved exports, the home its keys, backups and volume.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from archive.governance.closure.records import ClosureInputs, ClosurePlan, closure_plan
from archive.governance.policy import GovernancePolicy
from archive.governance.pulls import PullInventory
from archive.governance.removals.records import RemovalRequests
from archive.governance.sharing.records import Shares


def _cases_held(conn: Any) -> int:
    from archive.catalogue.inventory import count_held

    return count_held(conn)


def _stored(conn: Any) -> tuple[int, int]:
    from archive.vault.ledger import InstanceLedger

    ledger = InstanceLedger(conn)
    return ledger.counts()["instances"], ledger.total_size()


def _keys(home: Any) -> list[dict[str, object]]:
    from archive.vault.backup import known_backup_locations
    from archive.vault.wipe import key_locations

    keys: list[dict[str, object]] = [
        {"file": str(p), "kind": "keyring"} for p in key_locations(home)[:1]
    ]
    keys += [{"file": str(p), "kind": "keyring backup"}
             for p in known_backup_locations(home.keys_dir)]  # fmt: skip
    keys += _joined_copies(home)
    return keys


def _joined_copies(home: Any) -> list[dict[str, object]]:
    """Keyring copies on homes that joined from other hosts (issue 27), from the audit
    chain's node.join records, less those already wiped by `archive close wipe-node`."""
    from archive.governance.closure.wipe import joined_nodes

    try:
        joined, wiped = joined_nodes(home)
    except Exception:  # noqa: BLE001 - the plan still shows the rest; the wipe checks again
        return [{"file": "unknown: the audit chain could not be read", "kind": "joined nodes"}]
    done = {(n["http"], n["dicom"]) for n in wiped}
    return [
        {"file": f"on the node http {h}, dicom {d}",
         "kind": "keyring copy (joined node: `archive close wipe-node` there first)"}
        for h, d in joined
        if (h, d) not in done
    ]  # fmt: skip


def _volumes(home: Any, volume_kind: str | None) -> list[dict[str, object]]:
    from archive.vault.volume import GOCRYPTFS_CONF

    conf = home.volume_dir / GOCRYPTFS_CONF
    if conf.exists():
        return [{"kind": "gocryptfs", "config": str(conf)}]
    if volume_kind not in ("none", "", None):
        return [{"kind": str(volume_kind), "config": "not found under the home"}]
    return []


def gather_plan(
    home: Any, conn: Any, policy: GovernancePolicy, *, volume_kind: str | None, now: datetime
) -> ClosurePlan:
    """What closing involves: cases and bytes, holders, keys, volumes."""
    instances, size = _stored(conn)
    shares = [
        {"share": e["share_id"], "recipient": e["recipient"], "status": e["status"]}
        for e in Shares(conn, policy).share_log()
        if not str(e["status"]).endswith("confirmed")  # still held by the recipient
    ]
    exports = [
        {"request": r.id, "expires": r.approval.expires_at.date().isoformat()}
        for r in RemovalRequests(conn, policy).list()
        if r.approval is not None and r.status_at(now) == "approved"
    ]
    return closure_plan(
        ClosureInputs(
            case_count=_cases_held(conn),
            instance_count=instances,
            bytes_total=size,
            workstation_inventory=PullInventory(conn).inventory(),
            open_shares=shares,
            open_exports=exports,
            keys=_keys(home),
            volumes=_volumes(home, volume_kind),
        )
    )


def plan_payload(plan: ClosurePlan, home: Any) -> dict[str, Any]:
    """The plan as `close plan --json` and the web show it."""
    from archive.vault.backup import known_backup_locations

    out = plan.to_dict()
    out["backup_locations"] = [str(p) for p in known_backup_locations(home.keys_dir)]
    out["text"] = plan.render_text()
    return out
