"""The School Board's page: propose a share, record a recipient's signed undertaking.

    GET  /board                           proposals needing an undertaking, and the forms
    POST /board/propose                   a proposal in the signed-in member's own name
    POST /board/{proposal}/undertaking    the signed copy (base64, read by static/upload.js:
                                          Orthanc 1.10 keeps multipart bodies) and who signed

Voting stays on /shares (each member votes for themselves there). The proposer is the
signed-in member (BoardVote.of_principal), never a typed name. The domain checks the
purpose, the recipient, withdrawn cases and each case's level against the recipient's
data-sharing agreement when the proposal is made; the undertaking must be signed for the
recipient's own organisation, and its copy is kept encrypted in the vault (the backend's
`undertaking_store`). Both call the sharing use cases (archive.governance.sharing.usecases:
share.propose, share.undertaking in actions.toml), which authorise and audit once each.
"""

from __future__ import annotations

import base64
import binascii
from datetime import date

from archive.web import acts
from archive.web.app import UI, Context, WebApp, WebError, WebResponse, route
from archive.web.markup import Markup, join, render


def _shares(app: WebApp):
    from archive.governance import Shares

    return Shares(app.backend.db(), app.backend.governance_policy)


def _hidden(csrf: str) -> Markup:
    return render('<input type="hidden" name="csrf" value="$c">', c=csrf)


def _propose_form(app: WebApp, ctx: Context) -> Markup:
    from archive.governance import Recipients

    policy = app.backend.governance_policy
    recipients = Recipients(app.backend.db(), policy).list()
    if not recipients:
        return render("<p>No recipient is registered yet; personnel keep the register "
                      "(<code>archive recipients add</code>).</p>")  # fmt: skip
    rec = join(render('<option value="$i">$o ($k)</option>', i=r.id, o=r.organisation,
                      k=r.kind) for r in recipients)  # fmt: skip
    purposes = join(render('<option value="$p">$p</option>', p=p) for p in policy.share_purposes)
    return render(
        '<form method="post" action="$ui/board/propose"><fieldset><legend>Propose a share'
        '</legend>$h<label for="cases">Released case ids (comma separated)</label>'
        '<input id="cases" name="cases" required size="60">'
        '<label for="recipient">Recipient</label><select id="recipient" name="recipient">$rec'
        '</select><label for="purpose">Purpose</label><select id="purpose" name="purpose">'
        "$purposes</select><p>The proposal is made in your name; the Board decides and "
        "each member votes for themselves on the shares page.</p>"
        '<p><button type="submit">Propose</button></p></fieldset></form>',
        ui=UI, h=_hidden(ctx.session.csrf), rec=rec, purposes=purposes,
    )  # fmt: skip


def _undertaking_forms(app: WebApp, ctx: Context) -> Markup:
    shares = _shares(app)
    blocks = []
    for p in shares.list():
        if p.status not in ("proposed", "approved") or shares.undertaking_for(p.id):
            continue
        recipient = shares.recipients.get(p.recipient_id)
        blocks.append(render(
            '<form method="post" action="$ui/board/$id/undertaking" class="undertaking">'
            "<fieldset><legend>Signed undertaking for $ref ($org)</legend>"
            '$h<label for="signatory$id">Signed by</label>'
            '<input id="signatory$id" name="signatory" required>'
            '<label for="role$id">Their role</label><input id="role$id" name="role" required>'
            '<label for="org$id">Organisation</label>'
            '<input id="org$id" name="organisation" value="$org" required>'
            '<label for="signed$id">Signed on</label>'
            '<input id="signed$id" name="signed_on" type="date" required>'
            '<label for="file$id">The signed copy (scan or PDF)</label>'
            '<input id="file$id" type="file" required data-into="copy$id">'
            '<input id="copy$id" name="signed_base64" type="hidden">'
            '<p><button type="submit">Record the undertaking</button></p></fieldset></form>',
            ui=UI, id=p.id, ref=p.reference, org=recipient.organisation,
            h=_hidden(ctx.session.csrf),
        ))  # fmt: skip
    if not blocks:
        return render("<p>No proposal is waiting for a signed undertaking.</p>")
    script = render('<script src="$ui/static/upload.js"></script>', ui=UI)
    return join([*blocks, script])


DONE = {"proposed": "Proposal {} recorded in your name; the Board decides on the shares page.",
        "undertaking": "Signed undertaking for {} recorded."}  # fmt: skip


@route("GET", r"/board")
def _board(app: WebApp, ctx: Context, groups) -> WebResponse:
    may_propose = acts.allowed(app, ctx.principal, "share.propose")
    may_record = acts.allowed(app, ctx.principal, "share.undertaking")
    if not (may_propose or may_record):
        acts.check(app, ctx, "share.propose")  # refused, audited, with the reason
    parts = [render('<p><a href="$ui/shares">Proposals, decisions and votes</a></p>', ui=UI)]
    if may_propose:
        parts.append(_propose_form(app, ctx))
    if may_record:
        parts += [render("<h2>Signed undertakings</h2>"), _undertaking_forms(app, ctx)]
    what, ref = ctx.request.query.get("done", ""), ctx.request.query.get("ref", "")
    flash = DONE[what].format(ref) if what in DONE else ""
    return app.html(ctx, "Board: proposals and undertakings", join(parts), flash=flash)


@route("POST", r"/board/propose")
def _propose(app: WebApp, ctx: Context, groups) -> WebResponse:
    from archive.governance.sharing import usecases as sharing
    from archive.web.app import _ports, _shown

    cases = [c.strip().upper() for c in ctx.form.get("cases", "").split(",") if c.strip()]
    if not cases:
        raise WebError(400, "Give at least one released case id.")
    try:
        recipient = int(ctx.form.get("recipient", ""))
    except ValueError:
        raise WebError(400, "Choose a recipient from the list.") from None
    # A form naming anyone else (proposer, voters) is refused by the use case, audited.
    made = _shown(sharing.propose(_ports(app, ctx), ctx.principal, cases, recipient,
                                  ctx.form.get("purpose", ""), fields=dict(ctx.form)))  # fmt: skip
    return app.redirect(f"/board?done=proposed&ref={made.reference}")


@route("POST", r"/board/([0-9]{1,12})/undertaking")
def _undertaking(app: WebApp, ctx: Context, groups) -> WebResponse:
    from archive.governance.sharing import usecases as sharing
    from archive.web.app import _ports, _shown

    pid = int(groups[0])
    try:  # the signed copy travels base64 in the form (static/upload.js)
        data = base64.b64decode(ctx.form.get("signed_base64", ""), validate=True)
    except (binascii.Error, ValueError):
        raise WebError(400, "The signed copy could not be read; attach it again.") from None
    if not data:
        raise WebError(400, "Attach the signed copy (a scan or PDF) and send the form again.")
    try:
        signed_on = date.fromisoformat(ctx.form.get("signed_on", ""))
    except ValueError:
        raise WebError(400, "Give the signing date as YYYY-MM-DD.") from None
    _shown(sharing.undertaking(
        _ports(app, ctx), ctx.principal, pid, data, signatory=ctx.form.get("signatory", ""),
        role=ctx.form.get("role", ""), organisation=ctx.form.get("organisation", ""),
        signed_on=signed_on, vault=app.backend.undertaking_store(),
    ))  # fmt: skip
    return app.redirect(f"/board?done=undertaking&ref=SHARE-{pid:06d}")
