"""One-time, audited download links for approved removal packages.

    POST /removals/{id}/link                   make a link (the package's age public key)
    GET  /removals/{id}/download/{token}       use it: once, by its maker, within LIFETIME

A link is made by the request's requester for an approved (or already partly downloaded)
request (actions.toml `removal.link`: the owner is the requester) and is bound to that
person's sign-in: it is useless to anyone else, and spent on first use whatever happens
next (fail closed). Only the token's SHA-256 is stored. Using it spends one of the
approval's downloads through the same function as GET /teaching/removals/{id}/download
(the Backend's `export_removal`), which checks expiry, the download limit, withdrawn
cases and levels again and writes its own durable records; the package is age-encrypted
to the key given when the link was made (a public key: nothing secret is kept).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import BigInteger, Column, Integer, MetaData, Table, Text, insert, select, update

from archive.core import Refusal, Refused, Resource
from archive.db import create_tables, migrate
from archive.governance.removals.usecases import approver_of
from archive.web import acts
from archive.web.app import UI, Context, WebApp, WebError, WebResponse, route
from archive.web.markup import render

LIFETIME = timedelta(minutes=15)
_metadata = MetaData()
links = Table(
    "web_download_links",
    _metadata,
    Column("token_sha256", Text, primary_key=True),
    Column("request_id", BigInteger().with_variant(Integer(), "sqlite"), nullable=False),
    Column("user_name", Text, nullable=False),
    Column("recipient", Text, nullable=False),
    Column("created_at", Text, nullable=False),
    Column("expires_at", Text, nullable=False),
    Column("used_at", Text),
)
# Homes made before issue 27 ran step 1 as the equivalent SQL script.
SCHEMA = [create_tables(_metadata, [links])]


def _links(app: WebApp):
    conn = app.backend.db()
    migrate(conn, "web_links", SCHEMA)
    return conn


def _removal(app: WebApp, ctx: Context, rid: int):
    from archive.governance import RemovalRequests
    from archive.governance.errors import GovernanceError

    try:
        item = RemovalRequests(app.backend.db(), app.backend.governance_policy).get(rid)
    except GovernanceError:
        raise WebError(404, f"There is no removal request {rid}.") from None
    return item, Resource("removal", str(rid), item.status_at(ctx.now), owner=item.requester,
                          shared_with=approver_of(item))  # fmt: skip


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@route("POST", r"/removals/([0-9]{1,12})/link")
def _make(app: WebApp, ctx: Context, groups) -> WebResponse:
    import pyrage

    rid = int(groups[0])
    recipient = ctx.form.get("recipient", "").strip()
    try:
        pyrage.x25519.Recipient.from_str(recipient)
    except (pyrage.RecipientError, TypeError, ValueError):
        raise WebError(400, "Give the age public key (age1...) the package is encrypted to; "
                       "make one with age-keygen.") from None  # fmt: skip
    conn = _links(app)
    _, resource = _removal(app, ctx, rid)
    token = secrets.token_urlsafe(32)

    def make(tx) -> str:
        tx.execute(
            insert(links).values(
                token_sha256=_hash(token), request_id=rid, user_name=ctx.principal.user,
                recipient=recipient, created_at=ctx.now.isoformat(),
                expires_at=(ctx.now + LIFETIME).isoformat(),
            )
        )  # fmt: skip
        return token

    assert conn is app.backend.db()
    acts.do(app, ctx, "removal.link", resource, make, target=str(rid), step="make",
            expires_in=int(LIFETIME.total_seconds()))  # fmt: skip
    link = f"{UI}/removals/{rid}/download/{token}"
    body = render(
        '<p>Your one-time link for request $rid: <a id="download-link" href="$link" '
        'download>Download the encrypted package</a>.</p><p>It works once, only while you '
        "are signed in as $me, for $m minutes; each use spends one of the approval's "
        'downloads. <a href="$ui/removals">Back to your requests</a></p>',
        rid=rid, link=link, me=ctx.principal.user, m=int(LIFETIME.total_seconds() // 60), ui=UI,
    )  # fmt: skip
    return app.html(ctx, "Download link", body)


@route("GET", r"/removals/([0-9]{1,12})/download/([A-Za-z0-9_-]{20,100})")
def _use(app: WebApp, ctx: Context, groups) -> WebResponse:
    rid, token = int(groups[0]), groups[1]
    _links(app)
    _, resource = _removal(app, ctx, rid)

    def spend(tx) -> str:
        c = links.c
        row = tx.execute(
            select(c.user_name, c.recipient, c.expires_at, c.used_at)
            .where(c.token_sha256 == _hash(token), c.request_id == rid)
            .with_for_update()
        ).fetchone()
        why = None
        if row is None or row[0] != ctx.principal.user:
            why = "this link is not yours or does not exist"
        elif row[3] is not None:
            why = "this link was used already"
        elif datetime.fromisoformat(row[2]) <= ctx.now:
            why = "this link has expired"
        if why:
            raise Refused(Refusal("removal.link", why, "Make a new link on your removal "
                                  "requests page.", "conflict"))  # fmt: skip
        tx.execute(
            update(links).where(c.token_sha256 == _hash(token)).values(used_at=ctx.now.isoformat())
        )
        return str(row[1])

    recipient = acts.do(app, ctx, "removal.link", resource, spend, target=str(rid), step="use")
    package, reference = app.backend.export_removal(ctx.principal, rid, {"recipient": recipient})
    disposition = ("Content-Disposition", f'attachment; filename="{reference}.tar.age"')
    return WebResponse(200, package, "application/octet-stream", [disposition])


def link_form(rid: int, csrf: str):
    """The form on the requester's removals page, for an approved request."""
    return render(
        '<form method="post" action="$ui/removals/$rid/link" class="inline link-form">'
        '<input type="hidden" name="csrf" value="$c"><label for="key$rid">age public key'
        '</label><input id="key$rid" name="recipient" required size="30" placeholder="age1...">'
        ' <button type="submit">Make a one-time download link</button></form>',
        ui=UI, rid=rid, c=csrf,
    )  # fmt: skip
