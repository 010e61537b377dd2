"""The audit page: filters (who, action, outcome, dates, target), a detail column, and
the HTTP filter's per-request lines (access.decision) left out unless asked for.

    GET /audit?user=&action=&outcome=&since=&until=&case=&requests=1

`since` and `until` are dates (YYYY-MM-DD, `until` inclusive) or ISO times. The newest
200 matching records are shown, newest first; `archive audit show` exports them all.
Reading the log is authorised by actions.toml (audit.view) and is itself audited.
"""

from __future__ import annotations

import json
from datetime import date, timedelta

from archive.web import acts
from archive.web.app import UI, Context, WebApp, WebError, WebResponse, route
from archive.web.markup import Markup, join, render, table

PER_REQUEST = "access.decision"  # the HTTP filter's line for every request
SHOWN = 200
OUTCOMES = ("success", "denied", "failure")


def _until(value: str) -> str | None:
    """An inclusive date becomes the next midnight; a time stays as given."""
    value = value.strip()
    if not value:
        return None
    try:
        return (date.fromisoformat(value) + timedelta(days=1)).isoformat()
    except ValueError:
        return value


def _detail(record: dict) -> str:
    detail = record.get("detail") or {}
    if not isinstance(detail, dict) or not detail:
        return ""
    text = ", ".join(
        f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in sorted(detail.items())
    )
    return text if len(text) <= 300 else text[:297] + "..."


def _form(q: dict, actions: list[str]) -> Markup:
    def field(name: str, label: str, kind: str = "text") -> Markup:
        return render(
            '<label for="$n">$l</label><input id="$n" name="$n" type="$k" value="$v">',
            n=name,
            l=label,
            k=kind,
            v=q.get(name, ""),
        )

    def select(name: str, label: str, options: list[str]) -> Markup:
        current = q.get(name, "")
        opts = join(
            [render('<option value="">Any</option>')]
            + [
                render(
                    '<option value="$o"$s>$o</option>',
                    o=o,
                    s=Markup(" selected") if o == current else Markup(""),
                )
                for o in options
            ]
        )
        return render(
            '<label for="$n">$l</label><select id="$n" name="$n">$o</select>',
            n=name,
            l=label,
            o=opts,
        )

    checked = Markup(" checked") if q.get("requests") else Markup("")
    return render(
        '<form method="get" action="$ui/audit"><fieldset><legend>Filter</legend>'
        "$user$action$outcome$since$until$target"
        '<p><input type="checkbox" id="requests" name="requests" value="1"$checked> '
        '<label for="requests" class="inline">Include the filter\'s per-request lines '
        "(access.decision)</label></p>"
        '<p><button type="submit">Filter</button></p></fieldset></form>'
        '<p><a href="$ui/audit/verify">Verify the whole log</a></p>',
        ui=UI,
        user=field("user", "Who (user name)"),
        action=select("action", "Action", actions),
        outcome=select("outcome", "Outcome", list(OUTCOMES)),
        since=field("since", "From (date)", "date"),
        until=field("until", "To (date, inclusive)", "date"),
        target=field("case", "Target (case, item, request...)"),
        checked=checked,
    )


@route("GET", r"/audit")
def _audit_log(app: WebApp, ctx: Context, groups) -> WebResponse:
    from archive.audit import audit_source, query
    from archive.audit.events import AuditError
    from archive.audit.query import iter_records

    acts.check(app, ctx, "audit.view")
    q = ctx.request.query
    directory = audit_source(app.backend.home)
    filters = {k: (q.get(k) or "").strip() or None for k in ("user", "action", "case", "outcome")}
    try:
        rows = query(
            directory, **filters, since=(q.get("since") or "").strip() or None,
            until=_until(q.get("until") or ""),
        )  # fmt: skip
    except AuditError as exc:
        raise WebError(400, str(exc)) from None
    asked = filters["action"] or ""
    if not q.get("requests") and not asked.startswith(PER_REQUEST):
        rows = [r for r in rows if r.get("action") != PER_REQUEST]
    actions = sorted({str(r.get("action")) for r in iter_records(directory)})
    acts.audited(app, ctx, "audit.query", "success", rows=len(rows),
                 filters=",".join(sorted(k for k, v in q.items() if v)))  # fmt: skip
    shown = list(reversed(rows))[:SHOWN]
    body = [
        (r.get("seq"), r.get("timestamp"), r.get("actor"), r.get("action"), r.get("outcome"),
         r.get("target") or "", _detail(r))
        for r in shown
    ]  # fmt: skip
    page = join([
        _form(q, actions),
        table(("Seq", "Time", "Who", "Action", "Outcome", "Target", "Detail"), body,
              f"Newest {len(shown)} of {len(rows)} record(s)"),
    ])  # fmt: skip
    return app.html(ctx, "Audit log", page)
