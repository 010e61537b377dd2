"""The web page "I am at MacLab 3": sign in at a suite workstation, or out (issue 23).

    GET  /teaching/ui/workstation       where you are signed in, and the form
    POST /teaching/ui/workstation       sign in (workstation, minutes)
    POST /teaching/ui/workstation/end   sign out

While signed in, the workstation's C-MOVE and C-GET (OsiriX, Horos, Weasis) are yours:
authorised, audited and inventoried under your name (archive/dicom/sessions.py). The
page calls the same use case as the REST route and the CLI; the route policy decides who
sees it (PAGES["workstation"] in app.py), the use case checks training and ownership.
"""

from __future__ import annotations

from archive.core import Refusal
from archive.dicom import sessions
from archive.web.app import UI, Context, WebApp, WebError, WebResponse, route
from archive.web.markup import Markup, join, render, table

STATUS = {"not_found": 404, "invalid": 400, "training": 403}


def _ports(app: WebApp):
    return sessions.ports_for(
        app.backend.db(), app.backend.record, app.backend.policies_dir, "web", app.clock
    )


def _places(app: WebApp) -> list[tuple[str, str]]:
    """(name, location) of each registered suite workstation."""
    from archive.access.nodes import workstations

    places = workstations(app.backend.db()).all()
    return [(name, places[name].location) for name in app.backend.workstations() if name in places]


def _view(app: WebApp, ctx: Context) -> Markup:
    table_ = sessions.SessionTable(app.backend.db())
    mine = [s for s in table_.all_active(ctx.now) if s.user == ctx.principal.user]
    hidden = render('<input type="hidden" name="csrf" value="$c">', c=ctx.session.csrf)
    parts = []
    for s in mine:
        parts.append(
            render(
                '<p class="notice" role="status">You are signed in at <strong>$ws</strong> until '
                "$until: its C-MOVE and C-GET are recorded as yours.</p>"
                '<form method="post" action="$ui/workstation/end"><input type="hidden" '
                'name="workstation" value="$ws">$h<button type="submit">I have left $ws'
                "</button></form>",
                ws=s.workstation,
                until=s.expires_at.strftime("%H:%M UTC"),
                ui=UI,
                h=hidden,
            )  # fmt: skip
        )
    options = join(
        render('<option value="$n">$loc ($n)</option>', n=name, loc=loc)
        for name, loc in _places(app)
    )
    parts.append(
        render(
            '<form method="post" action="$ui/workstation"><fieldset><legend>I am at a suite '
            "workstation</legend>$h"
            '<label for="workstation">Workstation</label><select id="workstation" '
            'name="workstation">$o</select>'
            '<label for="minutes">For how many minutes (empty: the policy\'s length)</label>'
            '<input id="minutes" name="minutes" inputmode="numeric" pattern="[0-9]*">'
            '<p><button type="submit">Sign in at this workstation</button></p></fieldset></form>',
            ui=UI,
            h=hidden,
            o=options,
        )  # fmt: skip
    )
    everyone = table_.all_active(ctx.now)
    parts.append(
        table(
            ("Workstation", "Signed in", "Until"),
            [(s.workstation, s.user, s.expires_at.strftime("%H:%M UTC")) for s in everyone],
            "Who is at which workstation now",
        )
    )
    return join(parts)


def _done(app: WebApp, ctx: Context, result, flash: str) -> WebResponse:
    if isinstance(result, Refusal):
        message = f"{result.reason}. {result.next}".strip()
        return app.html(ctx, "At a workstation", _view(app, ctx),
                        STATUS.get(result.code, 403), message, error=True)  # fmt: skip
    return app.html(ctx, "At a workstation", _view(app, ctx), flash=flash)


@route("GET", r"/workstation")
def _page(app: WebApp, ctx: Context, groups) -> WebResponse:
    app.require(ctx, "workstation")
    return app.html(ctx, "At a workstation", _view(app, ctx))


@route("POST", r"/workstation")
def _sign_in(app: WebApp, ctx: Context, groups) -> WebResponse:
    app.require(ctx, "workstation")
    raw = ctx.form.get("minutes", "").strip()
    if raw and not raw.isdigit():
        raise WebError(400, "Give the minutes as a whole number, or leave the field empty.")
    name = ctx.form.get("workstation", "")
    result = sessions.start(
        _ports(app), app.backend.access_store(), ctx.principal, name, int(raw) if raw else None
    )
    flash = "" if isinstance(result, Refusal) else (
        f"You are at {result.workstation}: its retrieves are yours until "
        f"{result.expires_at.strftime('%H:%M UTC')}."
    )  # fmt: skip
    return _done(app, ctx, result, flash)


@route("POST", r"/workstation/end")
def _sign_out(app: WebApp, ctx: Context, groups) -> WebResponse:
    app.require(ctx, "workstation")
    result = sessions.sign_out(_ports(app), ctx.principal, ctx.form.get("workstation", ""))
    flash = "" if isinstance(result, Refusal) else f"Signed out of {result.workstation}."
    return _done(app, ctx, result, flash)
