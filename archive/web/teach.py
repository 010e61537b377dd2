"""Teaching modes in the web interface (issue 22): unknown (quiz) presentation, case of
the day and teaching sessions. Every act goes through archive/teach's use cases
(archive.core: authorised by policies/access/actions.toml, one audit record each).

    GET  /teaching/ui/teach/cases/{case}          the case: history first; on reveal the
                                                  findings, diagnosis and discussion, with
                                                  this person's own answer beside them
    POST /teaching/ui/teach/cases/{case}/answer   record one's own answer (before reveal)
    POST /teaching/ui/teach/cases/{case}/reveal   reveal (for oneself)
    POST /teaching/ui/teach/cases/{case}/unknown  trainers: present as an unknown (on=1/0)
    GET  /teaching/ui/teach/today                 the case of the day
    POST /teaching/ui/teach/today                 trainers: choose it (case=ID)
    GET  /teaching/ui/teach/sessions/{collection}[?step=n]   a collection in sequence,
                                                  the viewer filling the window

While a case is an unknown this person has not revealed, nothing that names the
diagnosis is put in the page (title, findings, diagnosis, differential, discussion,
teaching points, keywords, descriptions), and the viewer's DICOMweb metadata is redacted
(archive/dicomweb).
"""

from __future__ import annotations

from importlib import resources
from urllib.parse import urlencode

from archive.core import Refusal
from archive.teach import TeachStore, choose_case_of_day, mark_unknown, quiz_view, record_answer
from archive.teach import reveal as reveal_case
from archive.teach.masking import hidden_cases, masked
from archive.web.app import Context, WebApp, WebError, WebResponse, route
from archive.web.markup import Markup, join, render, table
from archive.web.viewer import ports_of

UI = "/teaching/ui"
FLASH = {"answer": "Your answer is saved.", "reveal": "Revealed.", "unknown": "Saved.",
         "today": "Chosen as the case of the day."}  # fmt: skip
CASE = r"([A-Za-z0-9-]{1,64})"
LABELS = (("findings", "Findings"), ("diagnosis", "Diagnosis"),
          ("differential", "Differential diagnosis"), ("discussion", "Discussion"),
          ("teaching_points", "Teaching points"), ("references", "References"))  # fmt: skip


def _case(app: WebApp, ctx: Context, case_id: str):
    """The case if this person may see it (released, or one who may edit cases); 404
    otherwise. Not audited here: the act on it is."""
    from archive.catalogue import CaseNotFoundError

    room = app.backend.catalogue_room()
    try:
        case = room.catalogue().get(case_id.upper())
    except CaseNotFoundError:
        raise WebError(404, f"There is no case {case_id}.") from None
    if case.status != "available" and not room.may(ctx.principal, "case.edit"):
        raise WebError(404, f"There is no case {case_id}.")
    return case


def _refused(outcome: Refusal) -> WebError:
    status = {"not_found": 404, "invalid": 400, "state": 409, "conflict": 409}
    return WebError(status.get(outcome.code, 403), f"{outcome.reason}. {outcome.next}".strip())


def _hidden_input(ctx: Context) -> Markup:
    return render('<input type="hidden" name="csrf" value="$c">', c=ctx.session.csrf)


def viewer_url(study_uid: str) -> str:
    return f"{UI}/viewer/viewer?" + urlencode({"StudyInstanceUIDs": study_uid})


def _may(app: WebApp, ctx: Context, action: str, case) -> bool:
    """Whether to offer a form (the act itself is authorised again when posted)."""
    from archive.core import Resource, authorise

    resource = Resource(kind="case", id=case.case_id, state=case.status)
    return bool(authorise(ports_of(app).actions, ctx.principal, action, resource))


def hidden_for(app: WebApp, ctx: Context, case_id: str) -> bool:
    """True while `case_id` is an unknown this person has not revealed (for other pages:
    the catalogue's case page sends such a person here instead)."""
    return bool(hidden_cases(app.backend.db(), ports_of(app).actions, ctx.principal, [case_id]))


def case_links(case) -> Markup:
    """For the catalogue's case page: open the images, and the teaching presentation
    (answer and reveal; trainers present it as an unknown or case of the day there)."""
    return render(
        '<p class="teach-links"><a class="open-viewer" href="$v">Open the images in the '
        'viewer</a> · <a href="$ui/teach/cases/$id">Teaching presentation</a></p>',
        v=viewer_url(case.study_uid), ui=UI, id=case.case_id,
    )  # fmt: skip


def mask_unknowns(app: WebApp, ctx: Context, results):
    """The search results with every unknown this person has not revealed shown as
    "Unknown case" (its title, descriptions and teaching text left out)."""
    from dataclasses import replace

    ids = [c.case_id for c in results.items]
    hidden = hidden_cases(app.backend.db(), ports_of(app).actions, ctx.principal, ids)
    if not hidden:
        return results
    items = [masked(c) if c.case_id in hidden else c for c in results.items]
    return replace(results, items=items)


def _quiz_body(app: WebApp, ctx: Context, case, view) -> Markup:
    facts = table(list(view.facts), [list(view.facts.values())], "Facts")
    history = render('<section aria-labelledby="h-history"><h2 id="h-history">Clinical '
                     "history</h2><p>$t</p></section>",
                     t=view.clinical_history or "No history recorded.")  # fmt: skip
    viewer = render('<p><a class="open-viewer" href="$u">Open the images in the viewer</a></p>',
                    u=viewer_url(case.study_uid))  # fmt: skip
    parts = [facts, history, viewer]
    if view.hidden:
        parts.append(render(
            '<form method="post" action="$ui/teach/cases/$id/answer"><fieldset><legend>Your '
            'answer (only you can read it)</legend>$h<label for="answer">What is your '
            'diagnosis?</label><textarea id="answer" name="answer" rows="4" cols="60" '
            'maxlength="4000">$mine</textarea><p><button type="submit">Save my answer'
            '</button></p></fieldset></form>'
            '<form method="post" action="$ui/teach/cases/$id/reveal">$h<p><button '
            'type="submit">Reveal the findings and diagnosis</button></p></form>',
            ui=UI, id=case.case_id, h=_hidden_input(ctx), mine=view.my_answer,
        ))  # fmt: skip
    else:
        answer = Markup("")
        if view.unknown:
            answer = render('<section class="mine" aria-labelledby="h-mine"><h2 id="h-mine">'
                            "Your answer</h2><p>$a</p></section>",
                            a=view.my_answer or "You recorded no answer.")  # fmt: skip
        notes = join(
            render(
                "<section><h2>$label</h2><p>$text</p></section>",
                label=label,
                text=view.revealed.get(name),
            )  # fmt: skip
            for name, label in LABELS
            if view.revealed.get(name)
        ) or render("<p>No teaching notes yet.</p>")
        parts.append(render('<div class="reveal"><div class="answer">$n</div>$a</div>',
                            n=notes, a=answer))  # fmt: skip
    if _may(app, ctx, "quiz.mark", case):
        parts.append(render(
            '<form method="post" action="$ui/teach/cases/$id/unknown">$h<input type="hidden" '
            'name="on" value="$on"><p><button type="submit">$label</button></p></form>',
            ui=UI, id=case.case_id, h=_hidden_input(ctx), on="0" if view.unknown else "1",
            label="Stop presenting as an unknown" if view.unknown else "Present as an unknown",
        ))  # fmt: skip
    if _may(app, ctx, "case_of_day.choose", case):
        parts.append(render(
            '<form method="post" action="$ui/teach/today">$h<input type="hidden" name="case" '
            'value="$id"><p><button type="submit">Make this the case of the day</button></p>'
            "</form>",
            ui=UI, id=case.case_id, h=_hidden_input(ctx),
        ))  # fmt: skip
    parts.append(render('<link rel="stylesheet" href="$ui/teach/static/teach.css">', ui=UI))
    return join(parts)


@route("GET", rf"/teach/cases/{CASE}")
def _quiz(app: WebApp, ctx: Context, groups) -> WebResponse:
    case = _case(app, ctx, groups[0])
    view = quiz_view(ports_of(app), ctx.principal, case)
    if isinstance(view, Refusal):
        raise _refused(view)
    flash = FLASH.get(ctx.request.query.get("done", ""), "")
    return app.html(ctx, view.title, _quiz_body(app, ctx, case, view), flash=flash)


def _act(app: WebApp, ctx: Context, outcome, case_id: str, done: str) -> WebResponse:
    if isinstance(outcome, Refusal):
        raise _refused(outcome)
    return app.redirect(f"/teach/cases/{case_id}?done={done}")


def _scanner():
    try:
        from archive.deid.residual import scan_text
    except ImportError:  # pragma: no cover - the archive ships it
        return lambda text: ["no identifier check available"]  # fail closed
    return lambda text: list(scan_text(text, known=()))


@route("POST", rf"/teach/cases/{CASE}/answer")
def _answer(app: WebApp, ctx: Context, groups) -> WebResponse:
    case = _case(app, ctx, groups[0])
    outcome = record_answer(ports_of(app), ctx.principal, case, ctx.form.get("answer", ""),
                            scan=_scanner())  # fmt: skip
    return _act(app, ctx, outcome, case.case_id, "answer")


@route("POST", rf"/teach/cases/{CASE}/reveal")
def _reveal(app: WebApp, ctx: Context, groups) -> WebResponse:
    case = _case(app, ctx, groups[0])
    return _act(app, ctx, reveal_case(ports_of(app), ctx.principal, case), case.case_id, "reveal")


@route("POST", rf"/teach/cases/{CASE}/unknown")
def _unknown(app: WebApp, ctx: Context, groups) -> WebResponse:
    case = _case(app, ctx, groups[0])
    on = ctx.form.get("on", "1") != "0"
    outcome = mark_unknown(ports_of(app), ctx.principal, case, on)
    return _act(app, ctx, outcome, case.case_id, "unknown")


@route("GET", r"/teach/today")
def _today(app: WebApp, ctx: Context, groups) -> WebResponse:
    chosen = TeachStore(app.backend.db()).case_of_day(ctx.now.date().isoformat())
    if chosen is None:
        body = render("<p>No case of the day has been chosen for today. Trainers choose it "
                      "from a case's teaching page.</p>")  # fmt: skip
        return app.html(ctx, "Case of the day", body)
    return app.redirect(f"/teach/cases/{chosen.case_id}")


@route("POST", r"/teach/today")
def _choose_today(app: WebApp, ctx: Context, groups) -> WebResponse:
    case = _case(app, ctx, ctx.form.get("case", "").strip() or "-")
    outcome = choose_case_of_day(ports_of(app), ctx.principal, case, ctx.now.date())
    return _act(app, ctx, outcome, case.case_id, "today")


@route("GET", r"/teach/sessions/([A-Za-z0-9-]{1,64})")
def _session(app: WebApp, ctx: Context, groups) -> WebResponse:
    """A collection presented in sequence: one case at a time, the viewer filling the
    window, the history (and nothing that gives an unknown away) in a slim bar."""
    from archive.catalogue import CollectionNotFoundError
    from archive.core import authorise

    ports = ports_of(app)
    verdict = authorise(ports.actions, ctx.principal, "collection.view")
    if not verdict:
        raise _refused(verdict)
    try:
        collection = app.backend.catalogue(ctx.principal).get_collection(groups[0].upper())
    except CollectionNotFoundError:
        raise WebError(404, f"There is no collection {groups[0]}.") from None
    items = [i for i in collection.items if i.status == "available"]
    if not items:
        raise WebError(404, "This collection has no released cases to present.")
    try:
        step = min(max(1, int(ctx.request.query.get("step") or 1)), len(items))
    except ValueError:
        step = 1
    case = _case(app, ctx, items[step - 1].case_id)
    view = quiz_view(ports, ctx.principal, case)
    if isinstance(view, Refusal):
        raise _refused(view)
    base = f"{UI}/teach/sessions/{collection.collection_id}?step="
    prev = render('<a href="$u">Previous</a>', u=f"{base}{step - 1}") if step > 1 else Markup("")
    nxt = (render('<a href="$u">Next</a>', u=f"{base}{step + 1}")
           if step < len(items) else Markup(""))  # fmt: skip
    body = render(
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>$title</title>'
        '<link rel="stylesheet" href="$ui/teach/static/teach.css"></head>'
        '<body class="session"><div class="bar"><strong>$ctitle</strong> · $n of $total · '
        '<span class="case">$casetitle</span> · <span class="history">$history</span> '
        '$prev $next <a href="$ui/teach/cases/$id">Answer and reveal</a> '
        '<button type="button" id="fullscreen">Full screen</button></div>'
        '<iframe class="session-viewer" title="Viewer" src="$viewer" allowfullscreen></iframe>'
        '<script src="$ui/teach/static/session.js"></script></body></html>',
        title=f"{collection.title}: {step} of {len(items)}", ui=UI, ctitle=collection.title,
        n=step, total=len(items), casetitle=view.title, history=view.clinical_history,
        prev=prev, next=nxt, id=case.case_id, viewer=viewer_url(case.study_uid),
    )  # fmt: skip
    return WebResponse(200, body.encode())


@route("GET", r"/teach/static/(teach\.css|session\.js)")
def _static(app: WebApp, ctx: Context, groups) -> WebResponse:
    data = resources.files("archive.web").joinpath(f"static/{groups[0]}").read_bytes()
    kind = "text/css; charset=utf-8" if groups[0].endswith(".css") else "text/javascript"
    return WebResponse(200, data, kind)
