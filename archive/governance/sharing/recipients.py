"""Third parties that may receive images (issue 9), at the School Board's discretion.

Only the kinds the policy lists (other UK radiology schools, the RCR's Validated Case
Archive or r-ITI, a Trust teaching collection) are accepted; a commercial recipient is
refused outright (seed 002: images are never sold). Each has a DICOM node or an age
public key, and says whether a data-sharing agreement is on file, which decides whether
key-coded (limited-access) cases may go to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyrage
from sqlalchemy import insert, select, update

from archive.governance._store import clean_text, ensure_schema, parse_ts, transaction, ts
from archive.governance.errors import InvalidInputError, NotFoundError, RecipientRefusedError
from archive.governance.policy import GovernancePolicy
from archive.governance.tables import recipients

_AET = re.compile(r"^[\x21-\x5b\x5d-\x7e][\x20-\x5b\x5d-\x7e]{0,15}$")  # no backslash
_HOST = re.compile(r"^[A-Za-z0-9.:\-\[\]]{1,253}$")


@dataclass(frozen=True)
class DicomNode:
    aet: str
    host: str
    port: int

    def __post_init__(self) -> None:
        if (
            not isinstance(self.aet, str)
            or not _AET.match(self.aet)
            or self.aet != self.aet.strip()
        ):
            raise InvalidInputError(
                "an AE title is 1-16 printable ASCII characters, no backslash or edge spaces."
            )
        if not isinstance(self.host, str) or not _HOST.match(self.host):
            raise InvalidInputError(f"host {self.host!r} is not a host name or IP address.")
        if (
            isinstance(self.port, bool)
            or not isinstance(self.port, int)
            or not 1 <= self.port <= 65535
        ):
            raise InvalidInputError(f"port must be from 1 to 65535, not {self.port!r}.")

    def __str__(self) -> str:
        return f"{self.aet}@{self.host}:{self.port}"


def check_public_key(value: str) -> str:
    """An age recipient (X25519 `age1...` or an SSH public key), checked by pyrage."""
    key = clean_text(value, "public key", max_len=2000)
    try:
        if key.startswith("age1"):
            pyrage.x25519.Recipient.from_str(key)
        elif key.startswith(("ssh-ed25519 ", "ssh-rsa ")):
            pyrage.ssh.Recipient.from_str(key)
        else:
            raise ValueError(key[:8])
    except Exception:  # pyrage raises its own types; any failure means unusable key
        raise InvalidInputError(
            "the public key is not a valid age recipient (age1... or ssh-ed25519 ...); "
            "ask the recipient for the output of `age-keygen -y`."
        ) from None
    return key


@dataclass(frozen=True)
class Recipient:
    id: int
    organisation: str
    kind: str
    contact: str
    dicom_node: DicomNode | None
    public_key: str | None
    data_sharing_agreement: bool
    added_by: str
    added_at: datetime
    active: bool

    @property
    def methods(self) -> tuple[str, ...]:
        """How a share can reach this recipient."""
        out = []
        if self.dicom_node is not None:
            out.append("cstore")
        if self.public_key is not None:
            out.append("package")
        return tuple(out)

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "organisation": self.organisation,
            "kind": self.kind,
            "contact": self.contact,
            "dicom_node": None
            if self.dicom_node is None
            else {
                "aet": self.dicom_node.aet,
                "host": self.dicom_node.host,
                "port": self.dicom_node.port,
            },
            "public_key": self.public_key,
            "data_sharing_agreement": self.data_sharing_agreement,
            "added_by": self.added_by,
            "added_at": self.added_at.isoformat(),
            "active": self.active,
        }


def check_kind(policy: GovernancePolicy, kind: str) -> str:
    """Refuse commercial and unlisted recipient kinds, saying which rule refused."""
    value = kind.strip() if isinstance(kind, str) else ""
    folded = value.casefold()
    if folded in policy.refused_recipient_kinds or "commercial" in folded:
        raise RecipientRefusedError(
            f"recipient kind {value!r} is refused: images are never shared with or sold to "
            "commercial parties (school policy, Use of the Image Archive, items 3 and 6)."
        )
    if value not in policy.recipient_kinds:
        raise RecipientRefusedError(
            f"recipient kind {value!r} is not one the School Board may share with; choose one "
            f"of {', '.join(policy.recipient_kinds)}."
        )
    return value


class Recipients:
    """The register of third parties the Board may share with."""

    def __init__(self, conn: Any, policy: GovernancePolicy) -> None:
        self.conn = conn
        self.policy = policy
        ensure_schema(conn)

    def add(
        self,
        organisation: str,
        kind: str,
        contact: str,
        *,
        dicom_node: DicomNode | None = None,
        public_key: str | None = None,
        data_sharing_agreement: bool = False,
        added_by: str,
        now: datetime,
    ) -> Recipient:
        org = clean_text(organisation, "organisation", max_len=300)
        kind = check_kind(self.policy, kind)
        who = clean_text(contact, "contact", max_len=500)
        by = clean_text(added_by, "added_by", max_len=200)
        if dicom_node is None and public_key is None:
            raise InvalidInputError(
                "a recipient needs a DICOM node (AE title, host, port) or an age public key, "
                "so a share can reach it."
            )
        key = check_public_key(public_key) if public_key is not None else None
        if not isinstance(data_sharing_agreement, bool):
            raise InvalidInputError("data_sharing_agreement must be true or false.")
        stamp = ts(now)
        node = dicom_node
        with transaction(self.conn) as c:
            cur = c.execute(
                insert(recipients).values(
                    organisation=org,
                    kind=kind,
                    contact=who,
                    dicom_aet=node.aet if node else None,
                    dicom_host=node.host if node else None,
                    dicom_port=node.port if node else None,
                    public_key=key,
                    data_sharing_agreement=int(data_sharing_agreement),
                    added_by=by,
                    added_at=stamp,
                )
            )
        return self.get(int(cur.lastrowid))

    def get(self, recipient_id: int) -> Recipient:
        row = self.conn.execute(
            select(recipients).where(recipients.c.id == int(recipient_id))
        ).fetchone()
        if row is None:
            raise NotFoundError(
                f"recipient {recipient_id} does not exist; "
                "list them with `archive recipients list`."
            )
        node = None
        if row["dicom_aet"] is not None:
            node = DicomNode(row["dicom_aet"], row["dicom_host"], row["dicom_port"])
        return Recipient(
            id=row["id"],
            organisation=row["organisation"],
            kind=row["kind"],
            contact=row["contact"],
            dicom_node=node,
            public_key=row["public_key"],
            data_sharing_agreement=bool(row["data_sharing_agreement"]),
            added_by=row["added_by"],
            added_at=parse_ts(row["added_at"]),
            active=bool(row["active"]),
        )

    def list(self, *, include_inactive: bool = False) -> list[Recipient]:
        statement = select(recipients.c.id).order_by(recipients.c.id)
        if not include_inactive:
            statement = statement.where(recipients.c.active == 1)
        return [self.get(i) for i in self.conn.execute(statement).scalars()]

    def set_data_sharing_agreement(self, recipient_id: int, on_file: bool) -> Recipient:
        """Record that an agreement was signed (or has lapsed)."""
        self.get(recipient_id)
        with transaction(self.conn) as c:
            c.execute(
                update(recipients)
                .where(recipients.c.id == int(recipient_id))
                .values(data_sharing_agreement=int(bool(on_file)))
            )
        return self.get(recipient_id)

    def deactivate(self, recipient_id: int) -> Recipient:
        """Stop future shares to a recipient; its history stays in the register."""
        self.get(recipient_id)
        with transaction(self.conn) as c:
            c.execute(
                update(recipients).where(recipients.c.id == int(recipient_id)).values(active=0)
            )
        return self.get(recipient_id)
