"""Removal requests: written permission before any image leaves the suite (issue 8).

School policy (seed 002, "Use of the Image Archive"): no image leaves the suite without
the written permission of the Head of School or a TPD, and then only for educational
purposes (teaching materials; publication in a journal, book chapter or e-learning);
never for commercial purposes. Publication needs cases de-identified to the point of
publication. The requester never approves their own request.

States: pending -> approved | refused; approved -> exported (downloads used) | expired.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from string import Template
from typing import Any

from sqlalchemy import func, insert, select, update

from archive.governance import manifest as mf
from archive.governance import tables as t
from archive.governance._store import (
    clean_case_ids,
    clean_roles,
    clean_text,
    ensure_schema,
    parse_ts,
    person_key,
    transaction,
    ts,
)
from archive.governance.errors import (
    DownloadLimitError,
    ExpiredError,
    InvalidInputError,
    LevelRefusedError,
    NotAuthorisedError,
    NotFoundError,
    PurposeRefusedError,
    StateError,
    WithdrawnCaseError,
)
from archive.governance.optout.register import withdrawn_among
from archive.governance.policy import GovernancePolicy

MANIFEST_FORMAT = "teaching-archive/export-manifest"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class Approval:
    """The written permission: who, in which role, when, what they wrote, for which cases,
    until when, and for how many downloads."""

    request_id: int
    reference: str
    approver: str
    approver_role: str
    approved_at: datetime
    text: str
    case_ids: tuple[str, ...]
    purpose: str
    destination: str
    expires_at: datetime
    max_downloads: int
    downloads_used: int
    policy_version: str


@dataclass(frozen=True)
class Refusal:
    request_id: int
    approver: str
    approver_role: str
    refused_at: datetime
    reason: str


@dataclass(frozen=True)
class RemovalRequest:
    id: int
    case_ids: tuple[str, ...]
    case_levels: dict[str, str]
    purpose: str
    destination: str
    requester: str
    requester_roles: tuple[str, ...]
    status: str
    created_at: datetime
    policy_version: str
    approval: Approval | None = None
    refusal: Refusal | None = None

    def status_at(self, now: datetime) -> str:
        """The status as of `now`: an approval past its expiry reads as expired."""
        if self.approval is not None and self.status in ("approved", "exported"):
            if now >= self.approval.expires_at:
                return "expired"
        return self.status

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "id": self.id,
            "case_ids": list(self.case_ids),
            "case_levels": dict(self.case_levels),
            "purpose": self.purpose,
            "destination": self.destination,
            "requester": self.requester,
            "requester_roles": list(self.requester_roles),
            "status": self.status,
            "created_at": self.created_at.isoformat(),
            "policy_version": self.policy_version,
            "approval": None,
            "refusal": None,
        }
        if self.approval:
            a = self.approval
            out["approval"] = {
                "reference": a.reference,
                "approver": a.approver,
                "approver_role": a.approver_role,
                "approved_at": a.approved_at.isoformat(),
                "text": a.text,
                "case_ids": list(a.case_ids),
                "expires_at": a.expires_at.isoformat(),
                "max_downloads": a.max_downloads,
                "downloads_used": a.downloads_used,
            }
        if self.refusal:
            r = self.refusal
            out["refusal"] = {
                "approver": r.approver,
                "approver_role": r.approver_role,
                "refused_at": r.refused_at.isoformat(),
                "reason": r.reason,
            }
        return out


@dataclass(frozen=True)
class ExportTicket:
    """Permission for exactly one download of an approved removal."""

    request_id: int
    approval_reference: str
    case_ids: tuple[str, ...]
    purpose: str
    destination: str
    approver: str
    approver_role: str
    download_number: int
    downloads_remaining: int
    expires_at: datetime
    issued_at: datetime
    terms: str
    approval: Approval


def approval_reference(request_id: int) -> str:
    return f"REMOVAL-{request_id:06d}"


def check_purpose(policy: GovernancePolicy, purpose: str) -> str:
    """Refuse commercial or unlisted purposes, saying which rule refused."""
    if not isinstance(purpose, str) or not purpose.strip():
        raise PurposeRefusedError(
            f"a purpose is required; choose one of {', '.join(policy.removal_purposes)}."
        )
    value = purpose.strip()
    folded = value.casefold()
    if folded in policy.refused_removal_purposes or "commercial" in folded:
        raise PurposeRefusedError(
            f"purpose {value!r} is refused: images are never removed or sold for commercial "
            "purposes (school policy, Use of the Image Archive, item 3)."
        )
    if value not in policy.removal_purposes:
        raise PurposeRefusedError(
            f"purpose {value!r} is not an educational purpose the policy allows; choose one of "
            f"{', '.join(policy.removal_purposes)}."
        )
    return value


def check_levels(
    policy: GovernancePolicy, purpose: str, ids: Sequence[str], case_levels: Mapping[str, str]
) -> dict[str, str]:
    """Every case must have a known level that this purpose may carry out of the suite."""
    unknown = [c for c in ids if c not in case_levels]
    if unknown:
        raise LevelRefusedError(
            f"no de-identification level is known for case(s) {', '.join(unknown)}; "
            "check the case ids in the catalogue."
        )
    allowed = policy.removal_allowed_levels[purpose]
    bad = {c: case_levels[c] for c in ids if case_levels[c] not in allowed}
    if bad:
        listing = ", ".join(f"{c} ({lv})" for c, lv in bad.items())
        if purpose in policy.publication_purposes:
            raise LevelRefusedError(
                f"publication needs every case at level {policy.level_publication!r}; "
                f"not yet: {listing}. Have them reviewed to publication level, or drop them."
            )
        raise LevelRefusedError(
            f"purpose {purpose!r} allows levels {sorted(allowed)}; refused: {listing}."
        )
    return {c: case_levels[c] for c in ids}


class RemovalRequests:
    """The register of removal requests and their written approvals or refusals."""

    def __init__(self, conn: Any, policy: GovernancePolicy) -> None:
        self.conn = conn
        self.policy = policy
        ensure_schema(conn)

    # -- requests -------------------------------------------------------------------
    def create(
        self,
        case_ids: Sequence[str],
        purpose: str,
        destination: str,
        requester: str,
        requester_roles: Sequence[str],
        *,
        case_levels: Mapping[str, str],
        now: datetime,
    ) -> RemovalRequest:
        """Record a request after refusing commercial purposes and wrong levels."""
        ids = clean_case_ids(case_ids)
        purpose = check_purpose(self.policy, purpose)
        destination = clean_text(destination, "destination", max_len=500)
        requester = clean_text(requester, "requester", max_len=200)
        held = clean_roles(requester_roles, "requester_roles")
        if not held & self.policy.holders("removal.request"):
            raise NotAuthorisedError(
                f"{requester} holds none of the roles that may request a removal "
                "(removal.request in policies/access/actions.toml); ask staff."
            )
        levels = check_levels(self.policy, purpose, ids, case_levels)
        withdrawn = withdrawn_among(self.conn, ids)
        if withdrawn:
            raise WithdrawnCaseError(
                f"case(s) {', '.join(withdrawn)} were withdrawn at the patient's request and "
                "cannot leave the suite; remove them from the request."
            )
        stamp = ts(now)
        with transaction(self.conn) as c:
            cur = c.execute(
                insert(t.removal_requests).values(
                    purpose=purpose,
                    destination=destination,
                    requester=requester,
                    requester_roles=json.dumps(sorted(held)),
                    status="pending",
                    created_at=stamp,
                    policy_version=self.policy.version,
                )
            )
            rid = int(cur.lastrowid)
            c.execute(
                insert(t.removal_cases),
                [
                    {"request_id": rid, "case_id": cid, "level_at_request": levels[cid],
                     "position": n}
                    for n, cid in enumerate(ids, start=1)
                ],
            )  # fmt: skip
        return self.get(rid)

    def get(self, request_id: int) -> RemovalRequest:
        requests = t.removal_requests
        statement = select(requests).where(requests.c.id == int(request_id))
        if self.conn.in_transaction:  # a decision on it: the request's row is this one's
            statement = statement.with_for_update()
        row = self.conn.execute(statement).fetchone()
        if row is None:
            raise NotFoundError(
                f"removal request {request_id} does not exist; list them with "
                "`archive removals list`."
            )
        rc = t.removal_cases.c
        cases = self.conn.execute(
            select(rc.case_id, rc.level_at_request)
            .where(rc.request_id == row["id"])
            .order_by(rc.position)
        ).fetchall()
        ids = tuple(r[0] for r in cases)
        approval = None
        approvals = t.removal_approvals
        a = self.conn.execute(
            select(approvals).where(approvals.c.request_id == row["id"])
        ).fetchone()
        if a is not None:
            approval = Approval(
                request_id=row["id"],
                reference=approval_reference(row["id"]),
                approver=a["approver"],
                approver_role=a["approver_role"],
                approved_at=parse_ts(a["approved_at"]),
                text=a["text"],
                case_ids=ids,
                purpose=row["purpose"],
                destination=row["destination"],
                expires_at=parse_ts(a["expires_at"]),
                max_downloads=a["max_downloads"],
                downloads_used=a["downloads_used"],
                policy_version=a["policy_version"],
            )
        refusal = None
        refusals = t.removal_refusals
        r = self.conn.execute(select(refusals).where(refusals.c.request_id == row["id"])).fetchone()
        if r is not None:
            refusal = Refusal(
                request_id=row["id"],
                approver=r["approver"],
                approver_role=r["approver_role"],
                refused_at=parse_ts(r["refused_at"]),
                reason=r["reason"],
            )
        return RemovalRequest(
            id=row["id"],
            case_ids=ids,
            case_levels={r[0]: r[1] for r in cases},
            purpose=row["purpose"],
            destination=row["destination"],
            requester=row["requester"],
            requester_roles=tuple(json.loads(row["requester_roles"])),
            status=row["status"],
            created_at=parse_ts(row["created_at"]),
            policy_version=row["policy_version"],
            approval=approval,
            refusal=refusal,
        )

    def list(self, status: str | None = None) -> list[RemovalRequest]:
        """All requests, newest first, optionally only those with a stored status."""
        requests = t.removal_requests
        statement = select(requests.c.id).order_by(requests.c.id.desc())
        if status is not None:
            statement = statement.where(requests.c.status == status)
        return [self.get(i) for i in self.conn.execute(statement).scalars()]

    # -- decisions ------------------------------------------------------------------
    def _decider_role(
        self, request: RemovalRequest, who: str, held: frozenset[str], action: str
    ) -> str:
        role = next((r for r in sorted(self.policy.holders(action)) if r in held), None)
        if role is None:
            raise NotAuthorisedError(
                f"{who} cannot decide removal requests: only the Head of School or a TPD "
                f"({action} in policies/access/actions.toml) may give written permission."
            )
        if person_key(who) == person_key(request.requester):
            raise NotAuthorisedError(
                f"{who} made removal request {request.id} and cannot decide it; ask the Head "
                "of School or another TPD."
            )
        return role

    def approve(
        self,
        request_id: int,
        approver: str,
        approver_roles: Sequence[str],
        text: str,
        expires_at: datetime | None = None,
        max_downloads: int | None = None,
        *,
        now: datetime,
    ) -> Approval:
        """Record the written approval; expiry and downloads default from policy."""
        approver = clean_text(approver, "approver", max_len=200)
        held = clean_roles(approver_roles, "approver_roles")
        body = clean_text(text, "approval text")
        stamp = ts(now)
        if expires_at is None:
            expires_at = now + timedelta(days=self.policy.default_expiry_days)
        expiry = ts(expires_at, "expires_at")
        if expires_at <= now:
            raise InvalidInputError("expires_at must be after the approval time.")
        if expires_at - now > timedelta(days=self.policy.max_expiry_days):
            raise InvalidInputError(
                f"an approval may last at most {self.policy.max_expiry_days} days; "
                "choose an earlier expiry."
            )
        if max_downloads is None:
            max_downloads = self.policy.default_max_downloads
        if (
            not isinstance(max_downloads, int)
            or isinstance(max_downloads, bool)
            or not 1 <= max_downloads <= self.policy.max_downloads_limit
        ):
            raise InvalidInputError(
                f"max_downloads must be from 1 to {self.policy.max_downloads_limit}."
            )
        with transaction(self.conn) as c:
            request = self.get(request_id)
            role = self._decider_role(request, approver, held, "removal.approve")
            self._require_pending(request)
            withdrawn = withdrawn_among(c, request.case_ids)
            if withdrawn:
                raise WithdrawnCaseError(
                    f"case(s) {', '.join(withdrawn)} were withdrawn at the patient's request "
                    "since this request was made; refuse it and ask for a new one without them."
                )
            c.execute(
                insert(t.removal_approvals).values(
                    request_id=request.id,
                    approver=approver,
                    approver_role=role,
                    approved_at=stamp,
                    text=body,
                    expires_at=expiry,
                    max_downloads=max_downloads,
                    policy_version=self.policy.version,
                )
            )
            c.execute(_set_status(request.id, "approved"))
        approval = self.get(request_id).approval
        assert approval is not None
        return approval

    def refuse(
        self,
        request_id: int,
        approver: str,
        approver_roles: Sequence[str],
        reason: str,
        *,
        now: datetime,
    ) -> Refusal:
        """Record a refusal and its reason; the request is closed."""
        approver = clean_text(approver, "approver", max_len=200)
        held = clean_roles(approver_roles, "approver_roles")
        why = clean_text(reason, "reason")
        stamp = ts(now)
        with transaction(self.conn) as c:
            request = self.get(request_id)
            role = self._decider_role(request, approver, held, "removal.refuse")
            self._require_pending(request)
            c.execute(
                insert(t.removal_refusals).values(
                    request_id=request.id,
                    approver=approver,
                    approver_role=role,
                    refused_at=stamp,
                    reason=why,
                )
            )
            c.execute(_set_status(request.id, "refused"))
        refusal = self.get(request_id).refusal
        assert refusal is not None
        return refusal

    @staticmethod
    def _require_pending(request: RemovalRequest) -> None:
        if request.status != "pending":
            raise StateError(
                f"removal request {request.id} is already {request.status}; a decision is "
                "final. Make a new request if circumstances changed."
            )

    # -- export ---------------------------------------------------------------------
    def authorise_export(
        self,
        request_id: int,
        now: datetime,
        *,
        case_levels: Mapping[str, str] | None = None,
        on_spend: Callable[[ExportTicket], None] | None = None,
    ) -> ExportTicket:
        """Spend one download of an approved, unexpired request, atomically.

        Pass the catalogue's current `case_levels` to re-check the levels at export time
        (a case demoted since approval is then refused).

        `on_spend(ticket)` runs inside the spending transaction, after the download is
        written and before it commits: the plugin writes its durable audit record there,
        so a download is never spent without a record of it (if the hook raises, nothing
        is spent). A crash between the hook and the commit leaves a record of a download
        that was never spent - the safe direction for a ledger of what left the suite."""
        stamp = ts(now)
        with transaction(self.conn) as c:
            request = self.get(request_id)
            if request.status in ("pending", "refused") or request.approval is None:
                what = "is still pending" if request.status == "pending" else "was refused"
                raise StateError(
                    f"removal request {request.id} {what}; nothing leaves the suite without "
                    "written approval from the Head of School or a TPD."
                )
            a = request.approval
            if request.status == "expired" or now >= a.expires_at:
                expired = a
            else:
                expired = None
                ticket = self._spend_download(c, request, a, stamp, case_levels)
                if on_spend is not None:
                    on_spend(ticket)
        if expired is not None:
            self.conn.execute(_set_status(request.id, "expired"))
            raise ExpiredError(
                f"the approval of removal request {request.id} expired at "
                f"{expired.expires_at.isoformat()}; ask the approver for a new approval."
            )
        return ticket

    def _spend_download(
        self,
        c: Any,
        request: RemovalRequest,
        a: Approval,
        stamp: str,
        case_levels: Mapping[str, str] | None,
    ) -> ExportTicket:
        """Inside the caller's transaction: check the limit, then take one download."""
        if a.downloads_used >= a.max_downloads:
            raise DownloadLimitError(
                f"the approval of removal request {request.id} allowed {a.max_downloads} "
                "download(s), all used; ask the approver for a new approval."
            )
        withdrawn = withdrawn_among(c, request.case_ids)
        if withdrawn:
            raise WithdrawnCaseError(
                f"case(s) {', '.join(withdrawn)} were withdrawn at the patient's request; "
                "this export is refused. Ask for a new approval without them."
            )
        if case_levels is not None:
            check_levels(self.policy, request.purpose, request.case_ids, case_levels)
        approvals = t.removal_approvals.c
        used = c.execute(
            update(t.removal_approvals)
            .where(
                approvals.request_id == request.id,
                approvals.downloads_used < approvals.max_downloads,
            )
            .values(downloads_used=approvals.downloads_used + 1)
            .returning(approvals.downloads_used)
        ).scalar()
        if used is None:  # another process took the last download first
            raise DownloadLimitError(
                f"the approval of removal request {request.id} has no download left."
            )
        number = int(used)  # this download's number, whoever took the ones before
        c.execute(
            insert(t.removal_downloads).values(
                request_id=request.id, download_number=number, authorised_at=stamp
            )
        )
        c.execute(_set_status(request.id, "exported"))
        fresh = self.get(request.id).approval
        assert fresh is not None
        return ExportTicket(
            request_id=request.id,
            approval_reference=fresh.reference,
            case_ids=request.case_ids,
            purpose=request.purpose,
            destination=request.destination,
            approver=fresh.approver,
            approver_role=fresh.approver_role,
            download_number=number,
            downloads_remaining=fresh.max_downloads - fresh.downloads_used,
            expires_at=fresh.expires_at,
            issued_at=parse_ts(stamp),
            terms=self.terms_text(fresh),
            approval=fresh,
        )

    def downloads(self, request_id: int) -> list[dict[str, object]]:
        """Each download authorised for a request, with its time."""
        d = t.removal_downloads.c
        rows = self.conn.execute(
            select(d.download_number, d.authorised_at)
            .where(d.request_id == int(request_id))
            .order_by(d.download_number)
        )
        return [{"download_number": r[0], "authorised_at": r[1]} for r in rows]

    def terms_text(self, approval: Approval) -> str:
        """The package's terms, from policy, naming the School and the approval."""
        return Template(self.policy.export_terms_template).substitute(
            school_name=self.policy.school_name,
            approval_reference=approval.reference,
            purpose=approval.purpose.replace("_", " "),
        )

    def export_manifest(
        self,
        cases: Sequence[Sequence[str]],
        approval: Approval | ExportTicket,
        *,
        now: datetime | None = None,
    ) -> dict[str, object]:
        """The manifest inside an export package: instances, approval, terms.

        Refuses instances of cases the approval does not cover."""
        if isinstance(approval, ExportTicket):
            approval = approval.approval
        entries = mf.normalise(cases)
        outside = sorted({e.case_id for e in entries} - set(approval.case_ids))
        if outside:
            raise NotAuthorisedError(
                f"case(s) {', '.join(outside)} are not covered by approval {approval.reference}; "
                "remove them from the package."
            )
        body = mf.as_dict(entries)
        manifest: dict[str, object] = {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "policy_version": self.policy.version,
            "approval": {
                "reference": approval.reference,
                "request_id": approval.request_id,
                "approver": approval.approver,
                "approver_role": approval.approver_role,
                "approved_at": approval.approved_at.isoformat(),
                "expires_at": approval.expires_at.isoformat(),
                "text": approval.text,
                "purpose": approval.purpose,
                "destination": approval.destination,
            },
            "cases": body,
            "case_count": len(body),
            "instance_count": len(entries),
            "manifest_sha256": mf.manifest_sha256(entries),
            "terms": self.terms_text(approval),
        }
        if now is not None:
            manifest["created_at"] = ts(now)
        return manifest


def exports_carrying(conn: Any, case_ids: Sequence[str]) -> list[dict[str, object]]:
    """Every approved removal downloaded at least once that carried any of these cases
    (for the opt-out workflow: where deletion requests must go)."""
    q, c, a, d = t.removal_requests, t.removal_cases, t.removal_approvals, t.removal_downloads
    first_download = (
        select(func.min(d.c.authorised_at)).where(d.c.request_id == q.c.id).scalar_subquery()
    )
    rows = conn.execute(
        select(q.c.id, q.c.destination, q.c.requester, a.c.approver, first_download, c.c.case_id)
        .join_from(c, q, q.c.id == c.c.request_id)
        .join(a, a.c.request_id == q.c.id)
        .where(c.c.case_id.in_(list(case_ids)), a.c.downloads_used > 0)
        .order_by(q.c.id)
    ).fetchall()
    exports: dict[int, dict[str, object]] = {}
    for rid, destination, requester, approver, first, case_id in rows:
        export = exports.setdefault(rid, {
            "kind": "export",
            "reference": f"REMOVAL-{rid:06d}",
            "request_id": rid,
            "when": first,
            "to": destination,
            "contact": requester,
            "approver": approver,
            "case_ids": [],
        })  # fmt: skip
        if case_id not in export["case_ids"]:  # type: ignore[operator]
            export["case_ids"].append(case_id)  # type: ignore[union-attr]
    for export in exports.values():
        export["case_ids"] = sorted(export["case_ids"])  # type: ignore[arg-type]
    return list(exports.values())


def _set_status(request_id: int, status: str) -> Any:
    return (
        update(t.removal_requests)
        .where(t.removal_requests.c.id == request_id)
        .values(status=status)
    )
