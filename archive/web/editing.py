"""Trainers' pages: edit a case's teaching text, and make and keep collections.

    GET  /cases/{case}/edit                      the teaching-text form (case.edit)
    POST /cases/{case}/edit                      save it (all fields or none)
    GET  /collections                            every collection; a form to make one
    POST /collections                            make one (collection.create; you own it)
    GET  /collections/{col}                      its cases in order, and the owner's forms
    POST /collections/{col}/rename               title and description (collection.edit)
    POST /collections/{col}/add                  add cases (at a position)
    POST /collections/{col}/remove               take one case out
    POST /collections/{col}/move                 move one case to a position
    POST /collections/{col}/editors              the owner shares editing (or stops)

Every act calls a use case of archive.catalogue.usecases (edit_case, create_collection,
add/remove/move, edit_collection, share_collection): the action's rule in actions.toml
(roles, training, owner or shared editor), one transaction, one audit record; a refusal
is shown with its reason and next step. Identifiers typed into teaching text are refused
by the catalogue's check; the form comes back with the reason and what was typed is not
lost (it is shown again).
"""

from __future__ import annotations

from urllib.parse import urlencode

from archive.core import Resource
from archive.web import acts
from archive.web.app import UI, Context, WebApp, WebError, WebResponse, outcome, route
from archive.web.markup import Markup, join, render, table

CASE = r"([A-Za-z0-9-]{1,64})"
TEXTS = (
    ("title", "Title", 1),
    ("clinical_history", "Clinical history", 3),
    ("findings", "Findings", 4),
    ("diagnosis", "Diagnosis", 2),
    ("discussion", "Discussion", 5),
)
LISTS = (("keywords", "Tags (comma separated)"),)


def _hidden(csrf: str) -> Markup:
    return render('<input type="hidden" name="csrf" value="$c">', c=csrf)


def _room(app: WebApp):
    return app.backend.catalogue_room()


def _catalogue(app: WebApp, ctx: Context):
    """The catalogue for reading (vocabulary, forms); acts go through the use cases."""
    return _room(app).catalogue()


def _case(app: WebApp, ctx: Context, case_id: str):
    """The case to fill the form with (the edit use case checks it again when saving);
    only editors get past the form's authorisation, so nothing is shown to others."""
    from archive.catalogue import CaseNotFoundError

    try:
        return _catalogue(app, ctx).get(case_id)
    except CaseNotFoundError:
        raise WebError(404, f"There is no case {case_id}.") from None


# -- teaching text ------------------------------------------------------------------------
def _edit_form(app: WebApp, ctx: Context, case, values: dict[str, str]) -> Markup:
    vocab = _catalogue(app, ctx).vocabulary

    def text(name: str, label: str, rows: int) -> Markup:
        if rows == 1:
            return render('<label for="$n">$l</label><input id="$n" name="$n" value="$v" '
                          'size="60">', n=name, l=label, v=values.get(name, ""))  # fmt: skip
        return render('<label for="$n">$l</label><textarea id="$n" name="$n" rows="$r" '
                      'cols="70">$v</textarea>', n=name, l=label, r=rows,
                      v=values.get(name, ""))  # fmt: skip

    def select(name: str, label: str, choices: dict[str, str]) -> Markup:
        current = values.get(name, "")
        options = join([render('<option value="">(none)</option>')] + [
            render('<option value="$k"$s>$k: $d</option>', k=k, d=d,
                   s=Markup(" selected") if k == current else Markup(""))
            for k, d in choices.items()
        ])  # fmt: skip
        return render('<label for="$n">$l</label><select id="$n" name="$n">$o</select>',
                      n=name, l=label, o=options)  # fmt: skip

    fields = join(
        [text(n, label, rows) for n, label, rows in TEXTS]
        + [text(n, label, 1) for n, label in LISTS]
        + [select("category", "Category", vocab.categories),
           select("difficulty", "Difficulty", vocab.difficulties)]
    )  # fmt: skip
    return render(
        '<form method="post" action="$ui/cases/$id/edit" class="edit-case"><fieldset>'
        "<legend>Teaching text of $id</legend>$h$fields"
        '<p><button type="submit">Save</button> <a href="$ui/cases/$id">Cancel</a></p>'
        "</fieldset></form>",
        ui=UI, id=case.case_id, h=_hidden(ctx.session.csrf), fields=fields,
    )  # fmt: skip


def _values_of(case) -> dict[str, str]:
    values = {n: getattr(case, n, "") or "" for n, _, _ in TEXTS}
    values.update({n: ", ".join(getattr(case, n, []) or []) for n, _ in LISTS})
    values.update(category=case.category or "", difficulty=case.difficulty or "")
    return values


@route("GET", rf"/cases/{CASE}/edit")
def _edit_page(app: WebApp, ctx: Context, groups) -> WebResponse:
    case = _case(app, ctx, groups[0].upper())
    acts.check(app, ctx, "case.edit", Resource("case", case.case_id, case.status),
               case.case_id)  # fmt: skip
    body = _edit_form(app, ctx, case, _values_of(case))
    return app.html(ctx, f"Edit {case.case_id}", body)


@route("POST", rf"/cases/{CASE}/edit")
def _edit_save(app: WebApp, ctx: Context, groups) -> WebResponse:
    from archive.catalogue import usecases as uc

    acts.check(app, ctx, "case.edit", target=groups[0].upper())
    case = _case(app, ctx, groups[0].upper())
    typed = {n: ctx.form.get(n, "") for n, _, _ in TEXTS}
    typed.update({n: ctx.form.get(n, "") for n, _ in LISTS})
    typed.update(category=ctx.form.get("category", ""), difficulty=ctx.form.get("difficulty", ""))
    changes: dict = {n: typed[n] for n, _, _ in TEXTS}
    changes.update({n: [t.strip() for t in typed[n].split(",") if t.strip()] for n, _ in LISTS})
    changes.update(category=typed["category"], difficulty=typed["difficulty"])
    try:
        outcome(uc.edit_case(_room(app), ctx.principal, case.case_id, changes))
    except WebError as exc:
        if exc.status in (401, 403, 404):
            raise
        # Bad input: the same form with what was typed, and the reason.
        body = _edit_form(app, ctx, case, typed)
        return app.html(ctx, f"Edit {case.case_id}", body, exc.status, exc.message, error=True)
    return app.redirect(f"/cases/{case.case_id}?edited=1")


# -- collections ---------------------------------------------------------------------------
def _editors(collection) -> list[str]:
    return list(getattr(collection, "editors", None) or [])


def _resource(collection) -> Resource:
    return Resource("collection", collection.collection_id, owner=collection.owner,
                    shared_with=frozenset(_editors(collection)))  # fmt: skip


def _collection(app: WebApp, ctx: Context, collection_id: str):
    from archive.catalogue import usecases as uc

    return outcome(uc.view_collection(_room(app), ctx.principal, collection_id)).collection


def _may_edit(app: WebApp, ctx: Context, collection) -> bool:
    return bool(_room(app).may(ctx.principal, "collection.edit", _resource(collection)))


@route("GET", r"/collections")
def _collections(app: WebApp, ctx: Context, groups) -> WebResponse:
    from archive.catalogue import usecases as uc

    items = outcome(uc.list_collections(_room(app), ctx.principal)).items
    rows = [
        (render('<a href="$ui/collections/$id">$id</a>', ui=UI, id=c.collection_id), c.title,
         c.owner, c.size, ", ".join(_editors(c)) or "–")
        for c in items
    ]  # fmt: skip
    body = [table(("Collection", "Title", "Owner", "Cases", "Shared editing with"), rows,
                  f"{len(items)} collection(s)")]  # fmt: skip
    if acts.allowed(app, ctx.principal, "collection.create"):
        body.append(render(
            '<form method="post" action="$ui/collections"><fieldset><legend>New collection'
            '</legend>$h<label for="title">Title</label><input id="title" name="title" '
            'required maxlength="200"><label for="description">Description</label>'
            '<textarea id="description" name="description" rows="2"></textarea>'
            '<p><button type="submit">Create</button></p></fieldset></form>',
            ui=UI, h=_hidden(ctx.session.csrf)))  # fmt: skip
    flash = "Collection deleted." if ctx.request.query.get("gone") else ""
    return app.html(ctx, "Collections", join(body), flash=flash)


@route("POST", r"/collections")
def _create(app: WebApp, ctx: Context, groups) -> WebResponse:
    from archive.catalogue import usecases as uc

    made = outcome(uc.create_collection(_room(app), ctx.principal, ctx.form.get("title", ""),
                                        ctx.form.get("description", ""))).collection  # fmt: skip
    return app.redirect(f"/collections/{made.collection_id}?done=created")


DONE = {"created": "Collection created; you own it.", "renamed": "Title saved.",
        "added": "Added.", "removed": "Removed.", "moved": "Order saved.",
        "editors": "Editing shared as shown."}  # fmt: skip


@route("GET", rf"/collections/{CASE}")
def _show(app: WebApp, ctx: Context, groups) -> WebResponse:
    c = _collection(app, ctx, groups[0].upper())
    editable = _may_edit(app, ctx, c)
    h = _hidden(ctx.session.csrf)
    base = f"{UI}/collections/{c.collection_id}"

    def controls(item) -> Markup:
        if not editable:
            return Markup("")
        up = render('<form method="post" action="$b/move" class="inline">$h<input type="hidden" '
                    'name="case" value="$id"><input type="hidden" name="position" value="$p">'
                    '<button type="submit" aria-label="Move $id up">Up</button></form> ',
                    b=base, h=h, id=item.case_id, p=max(1, item.position - 1))  # fmt: skip
        rm = render('<form method="post" action="$b/remove" class="inline">$h<input '
                    'type="hidden" name="case" value="$id"><button type="submit" '
                    'aria-label="Remove $id">Remove</button></form>',
                    b=base, h=h, id=item.case_id)  # fmt: skip
        return join([up, rm])

    rows = [
        (item.position, render('<a href="$ui/cases/$id">$id</a>', ui=UI, id=item.case_id),
         item.title or "untitled", item.status, controls(item))
        for item in c.items
    ]  # fmt: skip
    parts = [
        render("<p>$d</p><p>Owner: <strong>$o</strong>. Shared editing with: $e.</p>",
               d=c.description or "", o=c.owner, e=", ".join(_editors(c)) or "nobody"),
        table(("#", "Case", "Title", "Status", "Change"), rows, f"{c.size} case(s), in order"),
    ]  # fmt: skip
    if editable:
        parts.append(render(
            '<form method="post" action="$b/add"><fieldset><legend>Add cases</legend>$h'
            '<label for="cases">Case ids (comma separated)</label><input id="cases" '
            'name="cases" required><label for="position">At position (empty: at the end)'
            '</label><input id="position" name="position" type="number" min="1">'
            '<p><button type="submit">Add</button></p></fieldset></form>'
            '<form method="post" action="$b/rename"><fieldset><legend>Title and description'
            '</legend>$h<label for="title">Title</label><input id="title" name="title" '
            'value="$t" required maxlength="200"><label for="description">Description'
            '</label><textarea id="description" name="description" rows="2">$d</textarea>'
            '<p><button type="submit">Save</button></p></fieldset></form>',
            b=base, h=h, t=c.title, d=c.description))  # fmt: skip
        if ctx.principal.user == c.owner:
            parts.append(render(
                '<form method="post" action="$b/editors"><fieldset><legend>Share editing'
                '</legend>$h<label for="editors">User names who may edit (comma separated; '
                'empty: only you)</label><input id="editors" name="editors" value="$e">'
                '<p><button type="submit">Save sharing</button></p></fieldset></form>',
                b=base, h=h, e=", ".join(_editors(c))))  # fmt: skip
    else:
        parts.append(render('<p role="note">You may read this collection; only its owner '
                            "$o, or someone they share editing with, changes it.</p>",
                            o=c.owner))  # fmt: skip
    done = DONE.get(ctx.request.query.get("done", ""), "")
    return app.html(ctx, c.title, join(parts), flash=done)


def _change(app: WebApp, ctx: Context, collection_id: str, verb: str, call) -> WebResponse:
    """Run one collection use case (it authorises as owner or shared editor and audits)."""
    from archive.catalogue import usecases as uc

    changed = outcome(call(uc, _room(app))).collection
    return app.redirect(f"/collections/{changed.collection_id}?" + urlencode({"done": verb}))


def _position(raw: str) -> int | None:
    raw = (raw or "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise WebError(400, "The position is a whole number, 1 for first.")
    return int(raw)


@route("POST", rf"/collections/{CASE}/rename")
def _rename(app: WebApp, ctx: Context, groups) -> WebResponse:
    title, description = ctx.form.get("title", ""), ctx.form.get("description", "")
    return _change(
        app,
        ctx,
        groups[0],
        "renamed",
        lambda uc, room: uc.edit_collection(
            room, ctx.principal, groups[0], title=title, description=description
        ),
    )


@route("POST", rf"/collections/{CASE}/add")
def _add(app: WebApp, ctx: Context, groups) -> WebResponse:
    cases = [x.strip().upper() for x in ctx.form.get("cases", "").split(",") if x.strip()]
    if not cases:
        raise WebError(400, "Give at least one case id to add.")
    position = _position(ctx.form.get("position", ""))
    return _change(
        app,
        ctx,
        groups[0],
        "added",
        lambda uc, room: uc.add_to_collection(room, ctx.principal, groups[0], cases, position),
    )


@route("POST", rf"/collections/{CASE}/remove")
def _remove(app: WebApp, ctx: Context, groups) -> WebResponse:
    case = ctx.form.get("case", "").strip().upper()
    return _change(
        app,
        ctx,
        groups[0],
        "removed",
        lambda uc, room: uc.remove_from_collection(room, ctx.principal, groups[0], [case]),
    )


@route("POST", rf"/collections/{CASE}/move")
def _move(app: WebApp, ctx: Context, groups) -> WebResponse:
    case = ctx.form.get("case", "").strip().upper()
    position = _position(ctx.form.get("position", "")) or 1
    return _change(
        app,
        ctx,
        groups[0],
        "moved",
        lambda uc, room: uc.move_in_collection(room, ctx.principal, groups[0], case, position),
    )


@route("POST", rf"/collections/{CASE}/editors")
def _share(app: WebApp, ctx: Context, groups) -> WebResponse:
    """The owner shares editing with exactly these users (collection.share: owner only)."""
    names = sorted({n.strip() for n in ctx.form.get("editors", "").split(",") if n.strip()})
    store = app.backend.access_store()
    unknown = [n for n in names if store.get_user(n) is None]
    if unknown:
        raise WebError(400, f"No account named {unknown[0]}; give archive user names.")
    return _change(
        app,
        ctx,
        groups[0],
        "editors",
        lambda uc, room: uc.share_collection(room, ctx.principal, groups[0], names),
    )
