"""The pages' HTML, built only through markup.render (every value escaped)."""

from __future__ import annotations

from datetime import datetime
from importlib import resources
from urllib.parse import urlencode

from archive.web.markup import Markup, join, render, table

UI = "/teaching/ui"
STATUS_TEXT = {400: "Not done", 401: "Sign in", 403: "Refused", 404: "Not found",
               429: "Too many attempts"}  # fmt: skip


def stylesheet() -> bytes:
    return resources.files("archive.web").joinpath("static/style.css").read_bytes()


STATIC = {"style.css": "text/css; charset=utf-8", "mask.js": "text/javascript; charset=utf-8",
          "upload.js": "text/javascript; charset=utf-8", "favicon.png": "image/png"}  # fmt: skip


def static_file(name: str):
    """A file of archive/web/static by its exact name (nothing else is served), or None.
    The favicon is linked from every page, so browsers never ask for /favicon.ico (which
    the HTTP filter would deny and audit on every page)."""
    from archive.web.app import WebResponse

    if name not in STATIC:
        return None
    data = resources.files("archive.web").joinpath(f"static/{name}").read_bytes()
    return WebResponse(200, data, STATIC[name])


def _doc(title: str, body: Markup) -> str:
    from archive.web.markup import page

    return page(title, body)


def error_page(status: int, message: str) -> str:
    title = STATUS_TEXT.get(status, "Error")
    body = render('<p class="error" role="alert">$m</p><p><a href="$ui/">Home</a> · '
                  '<a href="$ui/login">Sign in</a></p>', m=message, ui=UI)  # fmt: skip
    return _doc(title, body)


def login_page(message: str = "", csrf: str = "") -> str:
    notice = render('<p class="error" role="alert">$m</p>', m=message) if message else Markup("")
    body = render(
        '$notice<form method="post" action="$ui/login">$hidden<fieldset><legend>Your archive'
        ' account</legend><label for="user">User name</label>'
        '<input id="user" name="user" autocomplete="username" required>'
        '<label for="password">Password</label>'
        '<input id="password" name="password" type="password" autocomplete="current-password"'
        ' required><p><button type="submit">Sign in</button></p></fieldset></form>',
        notice=notice,
        ui=UI,
        hidden=_hidden(csrf),
    )
    return _doc("Sign in", body)


def home(principal, pages: list[str]) -> Markup:
    from archive.web.markup import NAV

    labels = dict(NAV)
    items = join(
        render('<li><a href="$ui/$p">$label</a></li>', ui=UI, p=p, label=labels[p])
        for p in pages
        if p in labels
    )
    training = "valid" if principal.trained else "not recorded or expired"
    return render(
        "<p>Roles: $roles. Training: $training.</p><ul>$items</ul>",
        roles=", ".join(principal.roles) or "none",
        training=training,
        items=items,
    )


def _hidden(csrf: str) -> Markup:
    return render('<input type="hidden" name="csrf" value="$c">', c=csrf)


def facet_choices(vocabulary) -> dict[str, list[tuple[str, str]]]:
    """The search facets' options, from the catalogue's vocabulary (and the levels)."""
    import tomllib

    from archive.catalogue.model import LEVELS
    from archive.paths import POLICIES_DIR

    try:  # the modalities' defined terms live beside the rest of the vocabulary
        raw = tomllib.loads((POLICIES_DIR / "catalogue" / "vocabulary.toml").read_text())
        modalities = [str(m) for m in raw.get("modalities", {}).get("terms", [])]
    except (OSError, tomllib.TOMLDecodeError):
        modalities = []
    return {
        "modality": [(m, m) for m in modalities],
        "body_part": [(b, b.title()) for b in vocabulary.body_parts],
        "category": [(k, v) for k, v in vocabulary.categories.items()],
        "difficulty": [(k, f"{k}: {v}") for k, v in vocabulary.difficulties.items()],
        "level": [(v, v) for v in LEVELS],
    }


def search(q: dict, results, params: dict, choices: dict | None = None) -> Markup:
    def field(name: str, label: str) -> Markup:
        options = (choices or {}).get(name)
        if options:  # a select drawn from the vocabulary (issue 22)
            current = q.get(name, "")
            opts = join([render('<option value="">Any</option>')] + [
                render('<option value="$v"$s>$t</option>', v=v, t=t,
                       s=Markup(" selected") if v == current else Markup(""))
                for v, t in options
            ])  # fmt: skip
            return render('<label for="$n">$l</label><select id="$n" name="$n">$o</select>',
                          n=name, l=label, o=opts)  # fmt: skip
        return render(
            '<label for="$n">$l</label><input id="$n" name="$n" value="$v">',
            n=name, l=label, v=q.get(name, ""),
        )  # fmt: skip

    form = render(
        '<form method="get" action="$ui/cases" role="search"><fieldset><legend>Search</legend>'
        '$q$mod$bp$cat$diff$lvl<p><button type="submit">Search</button></p></fieldset></form>',
        ui=UI,
        q=field("q", "Words"),
        mod=field("modality", "Modality"),
        bp=field("body_part", "Body part"),
        cat=field("category", "Category"),
        diff=field("difficulty", "Difficulty"),
        lvl=field("level", "Access level"),
    )
    cards = join(
        render(
            '<li><a href="$ui/cases/$id"><strong>$title</strong></a><br>$mods · $part · '
            "$n series$thumb</li>",
            ui=UI,
            id=c.case_id,
            title=c.title or f"Case {c.case_id}",
            mods="/".join(c.modalities),
            part=c.body_part or "–",
            n=c.series_count,
            thumb=render(
                '<br><img src="$ui/cases/$id/series/1/thumbnail" alt="$alt" '
                'width="200" loading="lazy">',
                ui=UI,
                id=c.case_id,
                alt=f"First series of case {c.case_id}",
            )  # fmt: skip
            if c.series
            else Markup(""),
        )
        for c in results.items
    )
    pages = Markup("")
    if results.total > results.page * results.per_page:
        nxt = urlencode({**params, "page": results.page + 1})
        pages = render('<p><a href="$ui/cases?$n" rel="next">Next page</a></p>', ui=UI, n=nxt)
    return render(
        '$form<p role="status">$total case(s) found.</p><ul class="cards">$cards</ul>$pages',
        form=form, total=results.total, cards=cards, pages=pages,
    )  # fmt: skip


NOTE_FIELDS = (
    ("clinical_history", "Clinical history"),
    ("findings", "Findings"),
    ("diagnosis", "Diagnosis"),
    ("differential", "Differential"),
    ("discussion", "Discussion"),
    ("teaching_points", "Teaching points"),
    ("anatomy", "Anatomy"),
    ("references", "References"),
)


def case(c, *, csrf: str, workstations: list[str] | None, purposes) -> Markup:
    facts = table(
        ("Case", "Modalities", "Body part", "Age band", "Sex", "Level", "Status"),
        [(c.case_id, "/".join(c.modalities), c.body_part, c.age_band, c.sex, c.level, c.status)],
        "Facts",
    )
    notes = join(
        render("<h2>$label</h2><p>$text</p>", label=label, text=getattr(c, name))
        for name, label in NOTE_FIELDS
        if getattr(c, name, "")
    ) or render("<p>No teaching notes yet.</p>")
    thumbs = join(
        render(
            '<li><a href="$ui/cases/$id/series/$n/thumbnail?size=preview" class="preview">'
            '<img src="$ui/cases/$id/series/$n/thumbnail" alt="$alt" width="192" '
            'loading="lazy"></a><br>$desc</li>',
            ui=UI,
            id=c.case_id,
            n=n,
            alt=f"Series {n} of case {c.case_id}",
            desc=getattr(s, "description", "") or f"Series {n}",
        )  # fmt: skip
        for n, s in enumerate(c.series, start=1)
    )
    pull = Markup("")
    if workstations is not None:
        options = join(render('<option value="$w">$w</option>', w=w) for w in workstations)
        pull = render(
            '<form method="post" action="$ui/pulls"><fieldset><legend>Pull to a suite '
            'workstation</legend>$h<input type="hidden" name="case" value="$id">'
            '<label for="workstation">Workstation</label><select id="workstation" '
            'name="workstation">$o</select><p><button type="submit">Pull</button></p>'
            "</fieldset></form>",
            ui=UI, h=_hidden(csrf), id=c.case_id, o=options,
        )  # fmt: skip
    removal = Markup("")
    if purposes is not None:
        options = join(render('<option value="$p">$p</option>', p=p) for p in purposes)
        removal = render(
            '<form method="post" action="$ui/removals"><fieldset><legend>Request removal '
            '(needs written approval)</legend>$h<input type="hidden" name="cases" value="$id">'
            '<label for="purpose">Purpose</label><select id="purpose" name="purpose">$o'
            '</select><label for="destination">Where will the images go?</label>'
            '<input id="destination" name="destination" required>'
            '<p><button type="submit">Request removal</button></p></fieldset></form>',
            ui=UI, h=_hidden(csrf), id=c.case_id, o=options,
        )  # fmt: skip
    return render(
        '$facts<ul class="thumbs">$thumbs</ul>$notes$pull$removal',
        facts=facts, thumbs=thumbs, notes=notes, pull=pull, removal=removal,
    )  # fmt: skip


def edit_link(case_id: str) -> Markup:
    return render('<p><a href="$ui/cases/$id/edit" class="edit">Edit the teaching text</a> · '
                  '<a href="$ui/collections">Collections</a></p>', ui=UI, id=case_id)  # fmt: skip


def back_to_case(case_id: str) -> Markup:
    return render('<p><a href="$ui/cases/$id">Back to the case</a></p>', ui=UI, id=case_id)


def _decision_text(r) -> str:
    if r.approval:
        a = r.approval
        return f"approved by {a.approver} ({a.reference}), until {a.expires_at:%Y-%m-%d}"
    if r.refusal:
        return f"refused by {r.refusal.approver}: {r.refusal.reason}"
    return "waiting for written approval"


def removals(rows, csrf: str = "") -> Markup:
    from archive.web.downloads import link_form

    def download(r, status):
        if csrf and status in ("approved", "exported") and r.approval is not None:
            return link_form(r.id, csrf)
        return "–"

    return table(
        ("Request", "Cases", "Purpose", "Destination", "Status", "Decision", "Download"),
        [
            (
                r.id,
                ", ".join(r.case_ids),
                r.purpose,
                r.destination,
                status,
                _decision_text(r),
                download(r, status),
            )
            for r, status in rows
        ],
        "Your requests and their status",
    )


def approvals(pending, cases: dict, csrf: str) -> Markup:
    if not pending:
        return render("<p>No removal request is waiting.</p>")
    blocks = []
    for r in pending:
        case_list = join(
            render(
                '<li><a href="$ui/cases/$id">$id</a>: $what</li>',
                ui=UI,
                id=cid,
                what=(
                    f"{c.title or 'untitled'} ({'/'.join(c.modalities)}, level {c.level})"
                    if c
                    else "no longer in the catalogue"
                ),
            )  # fmt: skip
            for cid, c in ((cid, cases.get(cid)) for cid in r.case_ids)
        )
        blocks.append(
            render(
                '<section aria-labelledby="req$id"><h2 id="req$id">Request $id by $who</h2>'
                "<p>Purpose: $purpose. Destination: $dest. Asked $when.</p><ul>$cases</ul>"
                '<form method="post" action="$ui/approvals/$id/approve" class="approve">'
                '$h<label for="text$id">Written permission (terms)</label>'
                '<textarea id="text$id" name="text" rows="2" required></textarea>'
                '<p><button type="submit">Approve</button></p></form>'
                '<form method="post" action="$ui/approvals/$id/refuse" class="refuse">'
                '$h<label for="reason$id">Reason for refusal</label>'
                '<input id="reason$id" name="reason" required>'
                '<p><button type="submit">Refuse</button></p></form></section>',
                id=r.id,
                who=r.requester,
                purpose=r.purpose,
                dest=r.destination,
                when=r.created_at.strftime("%Y-%m-%d %H:%M"),
                cases=case_list,
                ui=UI,
                h=_hidden(csrf),
            )  # fmt: skip
        )
    return join(blocks)


def shares(proposals, csrf: str) -> Markup:
    link = render(
        '<p><a href="$ui/shares/register">Share register</a> · '
        '<a href="$ui/shares/register.csv">Export the register (CSV)</a></p>',
        ui=UI,
    )
    blocks = [link]
    for p, decision in proposals:
        head = render(
            '<h2 id="p$id">$ref: $purpose</h2><p>Cases: $cases. Recipient $rid. '
            "Proposed by $who. Status: <strong>$status</strong>.</p>",
            id=p.id, ref=p.reference, purpose=p.purpose, cases=", ".join(p.case_ids),
            rid=p.recipient_id, who=p.proposer, status=p.status,
        )  # fmt: skip
        if decision is not None:
            voters = ", ".join(v.member for v in decision.votes if v.counted and v.self_cast)
            body = render(
                "<p>Decision: $d. Members who voted themselves (counted): $v "
                "($n of $q).</p>",
                d=f"{decision.outcome}, {decision.reference}", v=voters or "none",
                n=decision.quorum_counted, q=decision.quorum_required,
            )  # fmt: skip
            if decision.outcome == "approved" and not decision.in_force:
                body = join([body, render(
                    '<form method="post" action="$ui/shares/$id/vote">$h<p><button '
                    'type="submit">Cast my vote for this decision</button></p></form>',
                    ui=UI, id=p.id, h=_hidden(csrf),
                )])  # fmt: skip
        elif p.status == "proposed":
            body = render(
                '<form method="post" action="$ui/shares/$id/decide"><fieldset><legend>Record '
                'the Board decision</legend>$h<label for="date$id">Meeting date</label>'
                '<input id="date$id" name="meeting_date" type="date" required>'
                '<label for="minute$id">Minute reference</label>'
                '<input id="minute$id" name="minute" required>'
                "<p>Recording it is your own vote; every other member casts theirs "
                "in their own session.</p>"
                '<label for="text$id">Decision text</label>'
                '<textarea id="text$id" name="text" rows="2" required></textarea>'
                '<label for="outcome$id">Outcome</label><select id="outcome$id" name="outcome">'
                '<option value="approved">Approved</option><option value="rejected">Rejected'
                '</option></select><p><button type="submit">Record decision</button></p>'
                "</fieldset></form>",
                ui=UI, id=p.id, h=_hidden(csrf),
            )  # fmt: skip
        else:
            body = Markup("")
        blocks.append(render('<section aria-labelledby="p$id">$h$b</section>', id=p.id, h=head,
                             b=body))  # fmt: skip
    if len(blocks) == 1:
        blocks.append(render("<p>No share proposals.</p>"))
    return join(blocks)


def register(log) -> Markup:
    rows = [
        (e["share_id"], e["executed_at"], e["recipient"], e["purpose"], e["proposal"],
         f"{e['meeting_date']} {e['minute_reference']}", ", ".join(e["case_ids"]),
         e["instance_count"], e["status"])
        for e in log
    ]  # fmt: skip
    return join([
        render('<p><a href="$ui/shares/register.csv">Export as CSV</a></p>', ui=UI),
        table(("Share", "Sent", "Recipient", "Purpose", "Proposal", "Board minute", "Cases",
               "Images", "Status"), rows, "Every share, oldest first"),
    ])  # fmt: skip


def users(items, now: datetime, csrf: str) -> Markup:
    rows = []
    for u in items:
        d = u.as_dict(now)
        t = d["training"]
        form = render(
            '<form method="post" action="$ui/users/$n/training" class="inline">$h'
            '<label for="t-$n">Training date for $n</label>'
            '<input id="t-$n" name="trained_on" type="date" required> '
            '<button type="submit">Record training</button></form>',
            ui=UI, n=u.name, h=_hidden(csrf),
        )  # fmt: skip
        rows.append((
            u.name, ", ".join(u.roles), "disabled" if u.disabled else "active",
            f"until {t['expires_on']}" if t and d["trained"] else "none valid", form,
        ))  # fmt: skip
    return table(("User", "Roles", "Account", "Training", "Record training"), rows, "Users")


def verify(report) -> Markup:
    verdict = "The audit log verifies." if report.ok else "The audit log does NOT verify."
    problems = join(render("<li>$p</li>", p=p) for p in report.problems)
    return render(
        '<p role="status" class="$cls"><strong>$v</strong> $n record(s), $c checkpoint(s), '
        "last sequence $s.</p><ul>$problems</ul>",
        cls="notice" if report.ok else "error", v=verdict, n=report.records,
        c=report.checkpoints, s=report.last_seq, problems=problems,
    )  # fmt: skip


def closure(plan: dict, decisions=(), csrf: str = "") -> Markup:
    """The one closure plan (the CLI prints the same text) and the Board's decisions,
    each with a form for a member to cast their own vote."""
    blocks = [render("<pre>$text</pre>", text=plan["text"])]
    for d in decisions:
        voters = ", ".join(v.member for v in d.votes if v.counted and v.self_cast)
        blocks.append(render(
            '<h2 id="d$id">Board decision $id: $outcome</h2><p>$ref. Members who voted '
            "themselves (counted): $v ($n of $q).</p>",
            id=d.id, outcome=d.outcome, ref=d.reference, v=voters or "none",
            n=d.quorum_counted, q=d.quorum_required,
        ))  # fmt: skip
        if not d.in_force:
            blocks.append(render(
                '<form method="post" action="$ui/closure/$id/vote">$h<p><button '
                'type="submit">Cast my vote for this decision</button></p></form>',
                ui=UI, id=d.id, h=_hidden(csrf),
            ))  # fmt: skip
    return join(blocks)
