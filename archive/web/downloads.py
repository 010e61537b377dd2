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

from archive.core import Refusal, Refused, Resource
from archive.governance.removals.usecases import approver_of
from archive.web import acts
from archive.web.app import UI, Context, WebApp, WebError, WebResponse, route
from archive.web.markup import render

LIFETIME = timedelta(minutes=15)
SCHEMA = [
    """
    CREATE TABLE web_download_links (
        token_sha256 TEXT PRIMARY KEY,
        request_id INTEGER NOT NULL,
        user_name TEXT NOT NULL,
        recipient TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        used_at TEXT
    );
    """,
]


def _links(app: WebApp):
    from archive.db import migrate

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
            "INSERT INTO web_download_links (token_sha256, request_id, user_name, recipient,"
            " created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
            (_hash(token), rid, ctx.principal.user, recipient, ctx.now.isoformat(),
             (ctx.now + LIFETIME).isoformat()),
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
        row = tx.execute(
            "SELECT user_name, recipient, expires_at, used_at FROM web_download_links"
            " WHERE token_sha256 = ? AND request_id = ?",
            (_hash(token), rid),
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
        tx.execute("UPDATE web_download_links SET used_at = ? WHERE token_sha256 = ?",
                   (ctx.now.isoformat(), _hash(token)))  # fmt: skip
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
