"""Escaping templates: every value is HTML-escaped unless it is already `Markup`.

string.Template keeps the templates plain text; `render` escapes each substituted value
(quotes included, so attribute values are safe too), which makes forgetting to escape
impossible rather than merely unlikely.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from string import Template


class Markup(str):
    """A string that is already safe HTML (the output of `render`, `join` or `esc`)."""


def esc(value: object) -> Markup:
    if isinstance(value, Markup):
        return value
    return Markup(html.escape("" if value is None else str(value), quote=True))


def render(template: str, **values: object) -> Markup:
    """Substitute `$name` with each value escaped (Markup passes through)."""
    return Markup(Template(template).substitute({k: esc(v) for k, v in values.items()}))


def join(parts: Iterable[object], sep: str = "") -> Markup:
    return Markup(sep.join(esc(p) for p in parts))


def table(headers: Iterable[str], rows: Iterable[Iterable[object]], caption: str) -> Markup:
    """An accessible table: a caption and column headers with scope."""
    head = join(render('<th scope="col">$h</th>', h=h) for h in headers)
    body = join(
        render("<tr>$cells</tr>", cells=join(render("<td>$c</td>", c=c) for c in row))
        for row in rows
    )
    return render(
        "<table><caption>$caption</caption><thead><tr>$head</tr></thead>"
        "<tbody>$body</tbody></table>",
        caption=caption,
        head=head,
        body=body or Markup(""),
    )


NAV = (
    ("cases", "Catalogue"),
    ("teach/today", "Case of the day"),
    ("removals", "Removal requests"),
    ("approvals", "Approvals"),
    ("shares", "Board: shares"),
    ("users", "Users"),
    ("quarantine", "Quarantine"),
    ("audit", "Audit log"),
    ("closure", "Closure plan"),
    ("workstation", "At a workstation"),
    ("collections", "Collections"),
    ("board", "Board: propose and undertakings"),
)


def page(
    title: str,
    body: Markup,
    *,
    user: str | None = None,
    pages: Iterable[str] = (),
    csrf: str = "",
    flash: str = "",
    error: bool = False,
) -> Markup:
    """The whole document: skip link, navigation for the pages this user may open, main."""
    allowed = set(pages)
    links = join(
        render('<li><a href="/teaching/ui/$slug">$label</a></li>', slug=slug, label=label)
        for slug, label in NAV
        if slug in allowed
    )
    account = Markup("")
    if user:
        account = render(
            '<form method="post" action="/teaching/ui/logout" class="logout">'
            '<input type="hidden" name="csrf" value="$csrf">'
            "<span>Signed in as <strong>$user</strong></span> "
            '<button type="submit">Sign out</button></form>',
            csrf=csrf,
            user=user,
        )
    notice = Markup("")
    if flash:
        notice = render(
            '<p class="$cls" role="$role">$flash</p>',
            cls="error" if error else "notice",
            role="alert" if error else "status",
            flash=flash,
        )
    return render(
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>$title – Teaching archive</title>"
        '<link rel="stylesheet" href="/teaching/ui/static/style.css">'
        '<link rel="icon" type="image/png" href="/teaching/ui/static/favicon.png"></head><body>'
        '<a class="skip" href="#main">Skip to content</a>'
        '<header><p class="brand"><a href="/teaching/ui/">Teaching archive</a></p>$account'
        '<nav aria-label="Main"><ul>$links</ul></nav></header>'
        '<main id="main"><h1>$title</h1>$notice$body</main></body></html>\n',
        title=title,
        account=account,
        links=links,
        notice=notice,
        body=body,
    )
