"""Personnel's quarantine review in the browser: preview, mask, OCR check, release or reject.

    GET  /quarantine                      held items, each with a small preview
    GET  /quarantine/{item}               the review page: a large preview with a canvas
                                          to draw mask rectangles (static/mask.js)
    GET  /quarantine/{item}/preview       PNG (?size=large: up to 768 px)
    POST /quarantine/{item}/mask          regions "x,y,w,h;..." in image pixels: masked
                                          in every frame, then OCR outside them
    POST /quarantine/{item}/ocr           the OCR check alone: words left outside the
                                          masked regions (nothing changes)
    POST /quarantine/{item}/release       release as the signed-in reviewer
    POST /quarantine/{item}/reject        reject as the signed-in reviewer (ciphertext removed)

The reviewer is always the signed-in person (people act for themselves): the forms have
no reviewer field. Masking, rejecting and releasing call the quarantine use cases
(archive.quarantine.usecases: quarantine.review in actions.toml, a release never by whoever
ingested the study), each audited once; the OCR check alone is authorised by the same
rule. Release goes through the same function as POST /teaching/quarantine/{id}/release
(the Backend's `release_quarantine`), which stores the reviewed bytes into Orthanc.
Previews show the burnt-in text as held: they are answered from memory, never written.
"""

from __future__ import annotations

import io

from archive.core import Resource
from archive.errors import ArchiveError
from archive.web import acts
from archive.web.app import UI, Context, WebApp, WebError, WebResponse, outcome, route
from archive.web.markup import join, render, table

ITEM = r"([A-Za-z0-9_-]{1,80})"
LARGE = 768
MAX_REGIONS = 50


def _store(app: WebApp):
    return app.backend.quarantine()


def _item(app: WebApp, item_id: str):
    try:
        return _store(app).get(item_id)
    except ArchiveError:
        raise WebError(404, f"There is no held item {item_id}; see the quarantine list.") from None


def _resource(ctx: Context, item) -> Resource:
    """The item as the rules see it: its requester is whoever ingested it ("rest:alice"
    and "alice" are the same person)."""
    from archive.quarantine.review import same_person

    mine = same_person(ctx.principal.user, item.ingested_by or "")
    requester = ctx.principal.user if mine else (item.ingested_by or None)
    return Resource("quarantine", item.id, item.status, requester=requester)


def _masking(app: WebApp):
    from archive.pixels import load_masking_policy

    return load_masking_policy(acts.policies_dir(app))


@route("GET", r"/quarantine")
def _list(app: WebApp, ctx: Context, groups) -> WebResponse:
    acts.check(app, ctx, "quarantine.view")
    items = _store(app).list("held")
    acts.audited(app, ctx, "quarantine.list", "success", items=len(items))
    rows = [
        (render('<a href="$ui/quarantine/$id">$id</a>', ui=UI, id=i.id), i.received_at,
         i.reason, i.kind, i.modality, i.ingested_by,
         "–" if i.mask_regions is None else f"{len(i.mask_regions)} region(s), "
         f"{i.ocr_words_left} word(s) left",
         render('<img src="$ui/quarantine/$id/preview" alt="$alt" width="128" loading="lazy">',
                ui=UI, id=i.id, alt=f"Preview of held item {i.id}"))
        for i in items
    ]  # fmt: skip
    body = join([
        render("<p>Open an item to review it: draw mask rectangles over burnt-in text, run "
               "the OCR check, then release or reject it as yourself. Previews show the "
               "held pixels, burnt-in text included.</p>"),
        table(("Item", "Received", "Reason", "Kind", "Modality", "Ingested by", "Masked",
               "Preview"), rows, f"{len(items)} held item(s)"),
    ])  # fmt: skip
    return app.html(ctx, "Quarantine", body, flash=_done(ctx))


DONE = {"released": "Item {} released: it is stored and catalogued as reviewed.",
        "rejected": "Item {} rejected; its encrypted copy is removed."}  # fmt: skip


def _done(ctx: Context) -> str:
    what, item = ctx.request.query.get("done", ""), ctx.request.query.get("item", "")
    return DONE[what].format(item) if what in DONE else ""


@route("GET", rf"/quarantine/{ITEM}/preview")
def _preview(app: WebApp, ctx: Context, groups) -> WebResponse:
    import pydicom

    from archive.pixels import render_preview

    acts.check(app, ctx, "quarantine.view", target=groups[0])
    size = LARGE if ctx.request.query.get("size") == "large" else 256
    store = _store(app)
    try:
        store.get(groups[0])
        data = store.read(groups[0])
        image = render_preview(pydicom.dcmread(io.BytesIO(data), force=True), max_size=size)
    except ArchiveError:
        raise WebError(404, "No such held item.") from None
    except Exception:  # noqa: BLE001 - undecodable pixels: no preview, never a traceback
        raise WebError(415, "This item has no image that can be previewed; reject it.") from None
    acts.audited(app, ctx, "quarantine.preview", "success", groups[0], size=size)
    return WebResponse(200, image, "image/png")


def _geometry(app: WebApp, item_id: str) -> tuple[int, int]:
    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(_store(app).read(item_id)), stop_before_pixels=True,
                             force=True)  # fmt: skip
        return int(ds.get("Columns") or 0), int(ds.get("Rows") or 0)
    except Exception:  # noqa: BLE001 - the page still shows; masking will say why not
        return 0, 0


@route("GET", rf"/quarantine/{ITEM}")
def _review(app: WebApp, ctx: Context, groups) -> WebResponse:
    item = _item(app, groups[0])
    acts.check(app, ctx, "quarantine.view", target=item.id)
    acts.audited(app, ctx, "quarantine.view", "success", item.id)
    columns, rows = _geometry(app, item.id)
    h = render('<input type="hidden" name="csrf" value="$c">', c=ctx.session.csrf)
    base = f"{UI}/quarantine/{item.id}"
    regions = ";".join(",".join(str(v) for v in r) for r in item.mask_regions or ())
    facts = table(
        ("Item", "Reason", "Kind", "Modality", "Ingested by", "Status", "Masked by",
         "OCR words left"),
        [(item.id, item.reason, item.kind, item.modality, item.ingested_by, item.status,
          item.masked_by or "–", "not checked" if item.ocr_words_left is None
          else item.ocr_words_left)],
        "Held item",
    )  # fmt: skip
    if item.status != "held":
        return app.html(ctx, f"Held item {item.id}", facts)
    result = ctx.request.query.get("ocr", "")
    flash = ""
    if result.isdigit():
        flash = ("OCR check: no words left outside the masked regions; you may release it."
                 if result == "0" else f"OCR check: {result} word(s) still found outside the "
                 "masked regions; mask them, or reject the item.")  # fmt: skip
    elif ctx.request.query.get("masked"):
        flash = f"Masked; OCR finds {item.ocr_words_left} word(s) left outside the regions."
    body = render(
        "$facts"
        '<div class="mask-stage" data-columns="$cols" data-rows="$rows">'
        '<img id="q-preview" src="$b/preview?size=large" alt="Large preview of held item $id">'
        '<canvas id="q-canvas" aria-hidden="true"></canvas></div>'
        "<p>Drag on the image to draw rectangles: over burnt-in text to mask it, or around "
        "the diagnostic image itself so that OCR leaves it out. They are sent in the image's "
        "own pixels; you can also type them as x,y,width,height separated by ';'.</p>"
        '<form method="post" action="$b/mask" id="mask-form"><fieldset><legend>Mask</legend>$h'
        '<p role="radiogroup" aria-label="What you draw">'
        '<input type="radio" id="draw-regions" name="draw" value="regions" checked> '
        '<label class="inline" for="draw-regions">Mask rectangles</label> '
        '<input type="radio" id="draw-area" name="draw" value="image_area"> '
        '<label class="inline" for="draw-area">Image area (not OCRed)</label></p>'
        '<label for="regions">Mask rectangles (x,y,width,height; ...)</label>'
        '<input id="regions" name="regions" value="$regions" size="60" required>'
        '<label for="image_area">Image area (x,y,width,height; ...; optional)</label>'
        '<input id="image_area" name="image_area" value="$area" size="60">'
        '<p><button type="button" id="mask-clear">Clear drawing</button> '
        '<button type="submit">Mask and check</button></p></fieldset></form>'
        '<form method="post" action="$b/ocr" class="inline">$h'
        '<button type="submit" id="ocr-check">Run the OCR check</button></form>'
        '<form method="post" action="$b/release"><fieldset><legend>Release as $me</legend>$h'
        '<label for="release-note">Note (optional)</label>'
        '<input id="release-note" name="note" maxlength="500">'
        '<p><button type="submit" id="release">Release</button></p></fieldset></form>'
        '<form method="post" action="$b/reject"><fieldset><legend>Reject as $me</legend>$h'
        '<label for="reject-note">Why (recorded)</label>'
        '<input id="reject-note" name="note" maxlength="500" required>'
        '<p><button type="submit" id="reject">Reject</button></p></fieldset></form>'
        '<script src="$ui/static/mask.js"></script>',
        facts=facts, cols=columns, rows=rows, b=base, id=item.id, h=h, regions=regions,
        area=";".join(",".join(str(v) for v in r) for r in item.image_area),
        me=ctx.principal.user, ui=UI,
    )  # fmt: skip
    return app.html(ctx, f"Review held item {item.id}", body, flash=flash)


def _regions(text: str, required: bool = True) -> list[tuple[int, int, int, int]]:
    from archive.quarantine.review import parse_region

    parts = [p for p in (text or "").replace("\n", ";").split(";") if p.strip()]
    if not parts and required:
        raise WebError(400, "Draw or type at least one rectangle (x,y,width,height).")
    if len(parts) > MAX_REGIONS:
        raise WebError(400, f"At most {MAX_REGIONS} rectangles at a time.")
    try:
        return [parse_region(p) for p in parts]
    except ArchiveError as exc:
        raise WebError(400, f"{exc}.") from None


def _room(app: WebApp, ctx: Context):
    from archive.quarantine.usecases import QuarantineRoom

    return QuarantineRoom(acts.ports(app, ctx), _store(app), _masking(app))


@route("POST", rf"/quarantine/{ITEM}/mask")
def _mask(app: WebApp, ctx: Context, groups) -> WebResponse:
    from archive.quarantine.usecases import mask_item

    item = _item(app, groups[0])
    regions = _regions(ctx.form.get("regions", ""))
    area = _regions(ctx.form.get("image_area", ""), required=False)
    done = outcome(mask_item(_room(app, ctx), ctx.principal, item.id, regions, area))
    return app.redirect(f"/quarantine/{item.id}?masked={done.result.words_left}")


@route("POST", rf"/quarantine/{ITEM}/ocr")
def _ocr(app: WebApp, ctx: Context, groups) -> WebResponse:
    import pydicom

    from archive.pixels import Region, verify_masked

    item = _item(app, groups[0])
    policy, store = _masking(app), _store(app)

    def check() -> int:
        ds = pydicom.dcmread(io.BytesIO(store.read(item.id)))
        if "PixelData" not in ds:
            from archive.quarantine.store import QuarantineError

            raise QuarantineError(f"item {item.id} has no pixels OCR could check")
        hits = verify_masked(ds, policy, tuple(Region(*r) for r in item.mask_regions or ()),
                             tuple(Region(*r) for r in item.image_area))  # fmt: skip
        return len(hits)

    words = acts.outside(app, ctx, "quarantine.review", _resource(ctx, item), check,
                         target=item.id, step="ocr", next_step="Reject the item.")  # fmt: skip
    return app.redirect(f"/quarantine/{item.id}?ocr={int(words)}")


@route("POST", rf"/quarantine/{ITEM}/release")
def _release(app: WebApp, ctx: Context, groups) -> WebResponse:
    item = _item(app, groups[0])
    # The release use case (archive.quarantine.usecases.release_item, run by the plugin
    # that can store into Orthanc) authorises (never the ingester), re-checks consent and
    # OCR, and writes the one record; its refusal comes back as a page with the reason.
    app.backend.release_quarantine(ctx.principal, item.id, ctx.form.get("note", "")[:500])
    return app.redirect(f"/quarantine?done=released&item={item.id}")


@route("POST", rf"/quarantine/{ITEM}/reject")
def _reject(app: WebApp, ctx: Context, groups) -> WebResponse:
    from archive.quarantine.usecases import reject_item

    item = _item(app, groups[0])
    note = ctx.form.get("note", "").strip()[:500]
    if not note:
        raise WebError(400, "Say why the item is rejected; the reason is recorded.")
    outcome(reject_item(_room(app, ctx), ctx.principal, item.id, note))
    return app.redirect(f"/quarantine?done=rejected&item={item.id}")
