"""Turn what a trainer types into a storage-neutral query.

Users type things like `subtle pneumothorax CT -tension "air bronchogram" pneumo*`.
The parser keeps words, quoted phrases, `-excluded` terms and `prefix*` terms, drops
common English words ("a", "on", "for") so they do not veto a match, and never passes
user syntax through: each backend renders the parsed form in its own quoted syntax
(FTS5 here; `to_tsquery` for PostgreSQL), so a stray quote or operator cannot break or
widen a search.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

STOPWORDS = frozenset(
    "a an and are as at be by for from has have in into is it of on or that the this "
    "to was were with without show shows showing case cases".split()
)
_TOKEN = re.compile(r'(-?)"([^"]*)"?|(-?)([^\s"]+)')
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class Term:
    words: tuple[str, ...]  # one word, or several for a phrase
    prefix: bool = False


@dataclass(frozen=True)
class ParsedQuery:
    include: tuple[Term, ...] = ()
    exclude: tuple[Term, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.include and not self.exclude


def parse_query(text: str) -> ParsedQuery:
    """Parse free text into include/exclude terms (see module docstring)."""
    include: list[Term] = []
    exclude: list[Term] = []
    stop_only: list[Term] = []
    for match in _TOKEN.finditer(text or ""):
        if match.group(2) is not None:
            negative, body, phrase = match.group(1) == "-", match.group(2), True
        else:
            negative, body, phrase = match.group(3) == "-", match.group(4), False
        prefix = body.endswith("*") and not phrase
        words = tuple(w.lower() for w in _WORD.findall(body))
        if not words:
            continue
        if phrase or len(words) > 1:
            term = Term(words, prefix=False)
        else:
            term = Term(words, prefix=prefix)
        if negative:
            exclude.append(term)
        elif len(words) == 1 and words[0] in STOPWORDS and not prefix and not phrase:
            stop_only.append(term)
        else:
            include.append(term)
    if not include:
        include = stop_only  # a query made only of common words still searches them
    return ParsedQuery(tuple(_dedupe(include)), tuple(_dedupe(exclude)))


def _dedupe(terms: list[Term]) -> list[Term]:
    seen: set[Term] = set()
    out = []
    for term in terms:
        if term not in seen:
            seen.add(term)
            out.append(term)
    return out


def fts5_term(term: Term) -> str:
    """One term in FTS5 syntax: always a quoted string, so no user operator survives."""
    body = " ".join(term.words).replace('"', '""')
    return f'"{body}"' + ("*" if term.prefix else "")


def fts5_match(terms: tuple[Term, ...], joiner: str) -> str:
    return f" {joiner} ".join(fts5_term(t) for t in terms)
