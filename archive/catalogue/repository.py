"""All of the catalogue's statements, behind one small class per database.

`Catalogue` (catalogue.py) holds the rules: validation, identifier checks, id format,
auditing. It talks to storage only through the methods of `SqliteCatalogueRepository`,
which `CatalogueRepository` below names as a Protocol.

Statements are SQLAlchemy Core over the tables of tables.py, the same on SQLite and
PostgreSQL (issue 27): upserts with the dialect's `on_conflict_do_update ... returning`,
titles ordered by `lower(title)`. Inside a write transaction the case and collection
rows a use case reads are read FOR UPDATE, so on PostgreSQL two use cases changing
different cases run side by side and two changing the same case take turns (SQLite
ignores it: BEGIN IMMEDIATE already admits one writer).

Full text is each backend's own. `repository_for(conn)` gives
`PostgresCatalogueRepository` on PostgreSQL, which replaces only what SQLite does with
FTS5:
  - schema (schema.PG_SEARCH_COLUMN): a generated `search tsvector` column, per-field
    weights A..D in place of bm25 weights, a GIN index; a stemming configuration without
    stop-word removal (`catalogue_english`), so a query of common words still matches,
    as it does with FTS5's porter tokenizer;
  - search: each parsed term becomes `plainto_tsquery` (a word), `phraseto_tsquery` (a
    phrase) or `to_tsquery(quote_literal(word) || ':*')` (a prefix), joined with `&&`,
    `||` and `tsquery_not`: user text is always a bound parameter, never tsquery syntax;
    ranking by `ts_rank_cd`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from functools import lru_cache
from typing import Any, ClassVar, Protocol

from sqlalchemy import (
    Text,
    and_,
    bindparam,
    cast,
    column,
    delete,
    func,
    insert,
    literal_column,
    not_,
    select,
    table,
    text,
    update,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.selectable import Join

from archive.catalogue.model import (
    Case,
    Collection,
    CollectionItem,
    SearchFilters,
    SeriesSummary,
)
from archive.catalogue.query import ParsedQuery, Term, fts5_match
from archive.catalogue.schema import FTS_COLUMNS, ROOM, STEPS
from archive.catalogue.tables import (
    case_modalities,
    cases,
    collection_editors,
    collection_items,
    collections,
    sequences,
    series,
)
from archive.db import dialect, migrate, prepared

# bm25 weights per FTS column (same order as schema.FTS_COLUMNS): a word in the title
# or diagnosis says far more about what a case teaches than one in the discussion.
BM25_WEIGHTS = {
    "title": 10.0,
    "diagnosis": 8.0,
    "keywords": 6.0,
    "findings": 4.0,
    "clinical_history": 2.0,
    "differential": 3.0,
    "discussion": 1.0,
    "teaching_points": 2.0,
    "anatomy": 3.0,
    "category": 3.0,
    "body_part": 3.0,
    "modalities": 3.0,
    "study_description": 1.5,
}

# Domain field name -> column name, where they differ (REFERENCES is an SQL keyword).
_COLUMN = {"references": "case_references"}
_JSON_LIST_FIELDS = ("keywords", "authors")
_CASE_COLUMNS = frozenset(c.name for c in cases.columns) - {"id"}
_COLLECTION_COLUMNS = frozenset(c.name for c in collections.columns) - {"id"}

# At most this many narrowed searches when no case has every word (bounds the cost).
PARTIAL_ATTEMPTS = 3

# The case table as every search names it, and SQLite's FTS5 table (schema.SQLITE_FTS).
c = cases.alias("c")
fts = table("catalogue_cases_fts", column("rowid"))
_FTS_TABLE = literal_column("catalogue_cases_fts")
_BM25 = func.bm25(_FTS_TABLE, *(literal_column(repr(BM25_WEIGHTS[n])) for n in FTS_COLUMNS))

_ORDER = {
    "added": (c.c.added_at.asc(), c.c.id.asc()),
    "-added": (c.c.added_at.desc(), c.c.id.desc()),
    "title": ((c.c.title == "").asc(), func.lower(c.c.title).asc(), c.c.case_id.asc()),
}


# Statements of the hot paths (a case per stable study, a page per search), built once:
# building and hashing a Core statement costs more than SQLite running it.
def _by(column: Any) -> dict[bool, Any]:
    """SELECT the case by a unique column; [True] reads it FOR UPDATE (in a write)."""
    plain = select(cases).where(column == bindparam("key"))
    return {False: plain, True: plain.with_for_update()}


_BY_CASE_ID = _by(cases.c.case_id)
_BY_STUDY = _by(cases.c.study_uid)
_BY_IDS = select(cases).where(cases.c.id.in_(bindparam("ids", expanding=True)))
_ROWID = select(cases.c.id).where(cases.c.case_id == bindparam("key"))
_INSERT_CASE = insert(cases)
_UPDATE_CASE = update(cases).where(cases.c.case_id == bindparam("which_case"))
_DELETE_SERIES = delete(series).where(series.c.case_rowid == bindparam("rowid"))
_INSERT_SERIES = insert(series)
_SERIES_OF = (
    select(series)
    .where(series.c.case_rowid.in_(bindparam("ids", expanding=True)))
    .order_by(series.c.case_rowid, series.c.position)
)
_MODALITIES = select(cases.c.modalities).where(cases.c.id == bindparam("rowid"))
_DELETE_MODALITIES = delete(case_modalities).where(
    case_modalities.c.case_rowid == bindparam("rowid")
)
_INSERT_MODALITIES = insert(case_modalities)


def _next_value(insert_for: Any) -> Any:
    return (
        insert_for(sequences)
        .on_conflict_do_update(
            index_elements=[sequences.c.scope],
            set_={"last_value": sequences.c.last_value + 1},
        )
        .returning(sequences.c.last_value)
    )


class FtsJoin(Join):
    """FTS5 matches joined to their case rows. On SQLite: `CROSS JOIN` (FTS5 is read
    first) and `INDEXED BY catalogue_cases_facets`: the narrow covering index answers
    the per-match rowid look-ups and the filters without reading the wide rows
    (measured: 2-3x at 100k cases). SQLAlchemy renders no table hints for SQLite."""

    inherit_cache = True


@compiles(FtsJoin, "sqlite")
def _fts_join(element: FtsJoin, compiler: Any, **kw: Any) -> str:
    kw["asfrom"] = True
    left = compiler.process(element.left, **kw)
    right = compiler.process(element.right, **kw)
    on_kw = {k: v for k, v in kw.items() if k != "asfrom"}
    onclause = compiler.process(element.onclause, **on_kw)
    return f"{left} CROSS JOIN {right} INDEXED BY catalogue_cases_facets ON {onclause}"


def _fts_match(match: str) -> Any:
    return _FTS_TABLE.op("MATCH")(match)


_STATEMENT_CACHE = 512  # shapes: 2^7 filter sets x 4 sorts x (text, plain, excluded)
_FILTER_NAMES = ("body_part", "category", "difficulty", "level")
_FTS_FREQUENCY = select(func.count()).select_from(
    select(literal_column("1"))
    .select_from(fts)
    .where(_fts_match(bindparam("match")))
    .limit(50000)
    .subquery()
)


def _filter_values(filters: SearchFilters) -> tuple[tuple, dict[str, Any]]:
    """The filters as a shape (which are set) and the values to bind."""
    params: dict[str, Any] = {}
    if filters.status:
        params["status"] = list(filters.status)
    for name in _FILTER_NAMES:
        values = getattr(filters, name)
        if values:
            params[name] = list(values)
    if filters.modality:
        params["modality"] = list(filters.modality)
    if filters.collection:
        params["collection"] = list(filters.collection)
    return tuple(sorted(params)), params


@lru_cache(maxsize=256)
def _filter_clauses(shape: tuple) -> tuple[Any, ...]:
    """The WHERE clauses of a filter shape, values as expanding bound parameters."""
    where: list[Any] = []
    if "status" in shape:
        where.append(c.c.status.in_(bindparam("status", expanding=True)))
    else:
        where.append(c.c.status != "withdrawn")
    for name in _FILTER_NAMES:
        if name in shape:
            where.append(c.c[name].in_(bindparam(name, expanding=True)))
    if "modality" in shape:
        where.append(
            c.c.id.in_(
                select(case_modalities.c.case_rowid).where(
                    case_modalities.c.modality.in_(bindparam("modality", expanding=True))
                )
            )
        )
    if "collection" in shape:
        where.append(
            c.c.id.in_(
                select(collection_items.c.case_rowid)
                .join(collections, collections.c.id == collection_items.c.collection_rowid)
                .where(collections.c.collection_id.in_(bindparam("collection", expanding=True)))
            )
        )
    return tuple(where)


def _fts_statements(shape: tuple, order: tuple) -> tuple[Any, Any]:
    """Count and page of an FTS5 search for a filter shape and an order; the MATCH
    expression, limit and offset are bound parameters."""
    source = FtsJoin(fts, c, c.c.id == fts.c.rowid)
    condition = and_(_fts_match(bindparam("match")), *_filter_clauses(shape))
    return (
        select(func.count()).select_from(source).where(condition),
        select(c.c.id)
        .select_from(source)
        .where(condition)
        .order_by(*order)
        .limit(bindparam("limit"))
        .offset(bindparam("offset")),
    )


class CatalogueRepository(Protocol):
    """What Catalogue needs from storage; one implementation per database."""

    def transaction(self) -> Any: ...
    def next_value(self, scope: str) -> int: ...
    def get_case(self, case_id: str) -> Case | None: ...
    def case_for_study(self, study_uid: str) -> Case | None: ...
    def cases_for_pseudonym(self, pseudonym: str) -> list[Case]: ...
    def insert_case(self, values: dict[str, Any]) -> None: ...
    def update_case(self, case_id: str, values: dict[str, Any]) -> None: ...
    def replace_series(self, case_id: str, series: Sequence[SeriesSummary]) -> None: ...
    def search(
        self,
        query: ParsedQuery,
        filters: SearchFilters,
        limit: int,
        offset: int,
        sort: str,
    ) -> tuple[int, list[Case], str]: ...
    def insert_collection(self, values: dict[str, Any]) -> None: ...
    def refresh_statistics(self) -> None: ...
    def update_collection(self, collection_id: str, values: dict[str, Any]) -> None: ...
    def get_collection(self, collection_id: str, include_withdrawn: bool) -> Collection | None: ...
    def list_collections(self) -> list[Collection]: ...
    def collection_case_ids(self, collection_id: str) -> list[str]: ...
    def set_collection_items(
        self, collection_id: str, case_ids: Sequence[str], now: str
    ) -> None: ...
    def set_collection_editors(
        self, collection_id: str, editors: Sequence[str], by: str, now: str
    ) -> None: ...
    def delete_collection(self, collection_id: str) -> None: ...


def repository_for(conn: Any) -> SqliteCatalogueRepository:
    """The catalogue's repository for this connection's database."""
    if dialect(conn) == "postgresql":
        return PostgresCatalogueRepository(conn)
    return SqliteCatalogueRepository(conn)


class SqliteCatalogueRepository:
    """The embedded default: SQLite with FTS5 (external content, trigger-synced)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        migrate(conn, ROOM, STEPS)

    # -- transactions and sequences -------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction; nested use joins the outer transaction."""
        if self.conn.in_transaction:
            yield
            return
        with self.conn.write():
            yield

    def _locked(self, statement: Any) -> Any:
        """Inside a write transaction, the rows read are locked until it ends."""
        return statement.with_for_update() if self.conn.in_transaction else statement

    def next_value(self, scope: str) -> int:
        """Next number in a named sequence; call inside a transaction (atomic: the
        upsert locks the sequence's row until the transaction ends)."""
        statement = prepared(self.conn, _next_value)
        return int(self.conn.execute(statement, {"scope": scope, "last_value": 1}).scalar())

    # -- cases --------------------------------------------------------------------
    def get_case(self, case_id: str) -> Case | None:
        statement = _BY_CASE_ID[self.conn.in_transaction]
        found = self._cases(self.conn.execute(statement, {"key": case_id}).fetchall())
        return found[0] if found else None

    def case_for_study(self, study_uid: str) -> Case | None:
        statement = _BY_STUDY[self.conn.in_transaction]
        found = self._cases(self.conn.execute(statement, {"key": study_uid}).fetchall())
        return found[0] if found else None

    def cases_for_pseudonym(self, pseudonym: str) -> list[Case]:
        rows = self.conn.execute(
            select(cases).where(cases.c.patient_pseudonym == pseudonym).order_by(cases.c.id)
        ).fetchall()
        return self._cases(rows)

    def insert_case(self, values: dict[str, Any]) -> None:
        self.conn.execute(_INSERT_CASE, self._columns(values))

    def update_case(self, case_id: str, values: dict[str, Any]) -> None:
        self.conn.execute(_UPDATE_CASE, {**self._columns(values), "which_case": case_id})

    def replace_series(self, case_id: str, summaries: Sequence[SeriesSummary]) -> None:
        rowid = self._case_rowid(case_id)
        self.conn.execute(_DELETE_SERIES, {"rowid": rowid})
        rows = [
            {
                "case_rowid": rowid,
                "position": n,
                "series_uid": s.series_uid,
                "modality": s.modality,
                "description": s.description,
                "instance_count": s.instance_count,
                "orthanc_series_id": s.orthanc_series_id,
            }
            for n, s in enumerate(summaries, start=1)
        ]
        if rows:
            self.conn.execute(_INSERT_SERIES, rows)
        modalities = self.conn.execute(_MODALITIES, {"rowid": rowid}).scalar()
        self.conn.execute(_DELETE_MODALITIES, {"rowid": rowid})
        kinds = [{"modality": m, "case_rowid": rowid} for m in dict.fromkeys(modalities.split())]
        if kinds:
            self.conn.execute(_INSERT_MODALITIES, kinds)

    # -- search -------------------------------------------------------------------
    # Every search statement is built once per shape (which filters are set, the sort,
    # whether words are excluded) with its values as bound parameters, and kept: building
    # a Core statement and computing its cache key cost more than SQLite running it
    # (bench_search: ~1.7x slower when they were built per call). `_statements` is per
    # class, so the PostgreSQL repository keeps its own.
    _statements: ClassVar[dict[tuple, Any]] = {}

    def _statement(self, key: tuple, build: Callable[[], Any]) -> Any:
        found = self._statements.get(key)
        if found is None:
            if len(self._statements) > _STATEMENT_CACHE:  # a bound, never a leak
                self._statements.clear()
            found = self._statements.setdefault(key, build())
        return found

    def search(
        self,
        query: ParsedQuery,
        filters: SearchFilters,
        limit: int,
        offset: int,
        sort: str,
    ) -> tuple[int, list[Case], str]:
        where = _filter_values(filters)
        if not query.include:
            return (*self._plain(where, query.exclude, limit, offset, sort), "all")

        total, rows = self._text_search(query.include, query.exclude, where, limit, offset, sort)
        if total or len(query.include) == 1:
            return total, self._cases(rows), "all"
        # No case has every word. Rather than OR-ing them (which ranks tens of thousands
        # of weak matches and costs 100+ ms at 100k cases), drop words no case contains,
        # then the most common words first, until the most distinctive ones match.
        frequency = {t: self._document_frequency(t) for t in query.include}
        kept = [t for t in query.include if frequency[t] > 0]
        for _ in range(PARTIAL_ATTEMPTS):
            if not kept:
                break
            total, rows = self._text_search(tuple(kept), query.exclude, where, limit, offset, sort)
            if total or len(kept) == 1:
                break
            kept.remove(max(kept, key=lambda t: frequency[t]))
        return total, self._cases(rows), "partial"

    def _excluded(self, exclude: tuple[Term, ...]) -> tuple[Any, Any, dict[str, Any]]:
        """A filter dropping cases that contain any of the terms: (shape key, clause,
        parameters)."""
        return (
            "fts",
            c.c.id.not_in(select(fts.c.rowid).where(_fts_match(bindparam("exclude")))),
            {"exclude": fts5_match(exclude, "OR")},
        )

    def _order(self, sort: str, default: tuple) -> tuple:
        return _ORDER.get(sort, default)

    def _text_search(
        self,
        include: tuple[Term, ...],
        exclude: tuple[Term, ...],
        where: tuple[tuple, dict[str, Any]],
        limit: int,
        offset: int,
        sort: str,
    ) -> tuple[int, list[Any]]:
        shape, params = where
        match = fts5_match(include, "AND")
        if exclude:
            match = f"({match}) NOT ({fts5_match(exclude, 'OR')})"
        params = {**params, "match": match, "limit": limit, "offset": offset}
        count, page = self._statement(
            ("fts", shape, sort if sort in _ORDER else ""),
            lambda: _fts_statements(shape, _ORDER.get(sort, (_BM25.asc(), c.c.id.desc()))),
        )
        total = self.conn.execute(count, params).scalar()
        if not total:
            return 0, []
        return total, self._rows_by_id(self.conn.execute(page, params).scalars())

    def _rows_by_id(self, ids: list[int]) -> list[Any]:
        """Whole rows for one page only: sorting carries ids, not kilobytes of text."""
        if not ids:
            return []
        rows = {r.id: r for r in self.conn.execute(_BY_IDS, {"ids": list(ids)})}
        return [rows[i] for i in ids]

    def refresh_statistics(self) -> None:
        """Give the query planner current row statistics (ANALYZE) for the catalogue.

        Without them SQLite may read the wide case rows instead of the covering index;
        Catalogue calls this as the catalogue grows, operators may call it any time.
        """
        for name in (cases.name, case_modalities.name, series.name):
            self.conn.execute(text(f"ANALYZE {name}"))

    def _document_frequency(self, term: Term) -> int:
        """How many cases contain a term (capped: only the order matters)."""
        return self.conn.execute(_FTS_FREQUENCY, {"match": fts5_match((term,), "AND")}).scalar()

    def _plain(
        self,
        where: tuple[tuple, dict[str, Any]],
        exclude: tuple[Term, ...],
        limit: int,
        offset: int,
        sort: str,
    ) -> tuple[int, list[Case]]:
        shape, params = where
        params = {**params, "limit": limit, "offset": offset}
        extra: list[Any] = []
        kind: Any = None
        if exclude:
            kind, clause, more = self._excluded(exclude)
            extra, params = [clause], {**params, **more}
        order = self._order(sort, _ORDER["-added"])

        def build() -> tuple[Any, Any]:
            condition = and_(True, *_filter_clauses(shape), *extra)
            return (
                select(func.count()).select_from(c).where(condition),
                select(c.c.id)
                .where(condition)
                .order_by(*order)
                .limit(bindparam("limit"))
                .offset(bindparam("offset")),
            )

        # An exclusion whose clause depends on the terms themselves (kind None) is built
        # for this call only.
        count, page = (
            build()
            if exclude and kind is None
            else self._statement(("plain", shape, kind, sort if sort in _ORDER else ""), build)
        )
        total = self.conn.execute(count, params).scalar()
        ids = self.conn.execute(page, params).scalars()
        return total, self._cases(self._rows_by_id(ids))

    # -- collections ----------------------------------------------------------------
    def insert_collection(self, values: dict[str, Any]) -> None:
        if not set(values) <= _COLLECTION_COLUMNS:
            raise ValueError("not a catalogue_collections column")
        self.conn.execute(insert(collections).values(values))

    def update_collection(self, collection_id: str, values: dict[str, Any]) -> None:
        if not set(values) <= _COLLECTION_COLUMNS:
            raise ValueError("not a catalogue_collections column")
        self.conn.execute(
            update(collections).where(collections.c.collection_id == collection_id).values(values)
        )

    @staticmethod
    def _with_size() -> Any:
        size = (
            select(func.count())
            .where(collection_items.c.collection_rowid == collections.c.id)
            .scalar_subquery()
            .label("size")
        )
        return select(collections, size)

    def get_collection(self, collection_id: str, include_withdrawn: bool) -> Collection | None:
        row = self.conn.execute(
            self._with_size().where(collections.c.collection_id == collection_id)
        ).fetchone()
        if row is None:
            return None
        statement = (
            select(c.c.case_id, c.c.title, c.c.status)
            .select_from(collection_items.join(c, c.c.id == collection_items.c.case_rowid))
            .where(collection_items.c.collection_rowid == row.id)
            .order_by(collection_items.c.position)
        )
        if not include_withdrawn:
            statement = statement.where(c.c.status != "withdrawn")
        items = self.conn.execute(statement).fetchall()
        collection = self._collection(
            row,
            [CollectionItem(r.case_id, n, r.title, r.status) for n, r in enumerate(items, start=1)],
        )
        return replace(collection, editors=self._editors(row.id))

    def _editors(self, rowid: int) -> list[str]:
        return self.conn.execute(
            select(collection_editors.c.editor)
            .where(collection_editors.c.collection_rowid == rowid)
            .order_by(collection_editors.c.editor)
        ).scalars()

    def _collection_rowid(self, collection_id: str) -> int | None:
        return self.conn.execute(
            self._locked(
                select(collections.c.id).where(collections.c.collection_id == collection_id)
            )
        ).scalar()

    def set_collection_editors(
        self, collection_id: str, editors: Sequence[str], by: str, now: str
    ) -> None:
        """The users the owner shares editing with: exactly `editors`."""
        rowid = self._collection_rowid(collection_id)
        self.conn.execute(
            delete(collection_editors).where(collection_editors.c.collection_rowid == rowid)
        )
        rows = [
            {"collection_rowid": rowid, "editor": editor, "added_by": by, "added_at": now}
            for editor in editors
        ]
        if rows:
            self.conn.execute(insert(collection_editors), rows)

    def delete_collection(self, collection_id: str) -> None:
        """The collection, its order and its editors; the cases stay in the catalogue."""
        rowid = self._collection_rowid(collection_id)
        if rowid is None:
            return
        for owned in (collection_items, collection_editors):
            self.conn.execute(delete(owned).where(owned.c.collection_rowid == rowid))
        self.conn.execute(delete(collections).where(collections.c.id == rowid))

    def list_collections(self) -> list[Collection]:
        rows = self.conn.execute(self._with_size().order_by(collections.c.id)).fetchall()
        return [self._collection(r, []) for r in rows]

    def collection_case_ids(self, collection_id: str) -> list[str]:
        """Every case in the collection in order, withdrawn ones included."""
        return self.conn.execute(
            select(c.c.case_id)
            .select_from(
                collection_items.join(
                    collections, collections.c.id == collection_items.c.collection_rowid
                ).join(c, c.c.id == collection_items.c.case_rowid)
            )
            .where(collections.c.collection_id == collection_id)
            .order_by(collection_items.c.position)
        ).scalars()

    def set_collection_items(self, collection_id: str, case_ids: Sequence[str], now: str) -> None:
        """Make the collection hold exactly `case_ids`, in that order."""
        rowid = self._collection_rowid(collection_id)
        added = {
            r.case_rowid: r.added_at
            for r in self.conn.execute(
                select(collection_items.c.case_rowid, collection_items.c.added_at).where(
                    collection_items.c.collection_rowid == rowid
                )
            )
        }
        self.conn.execute(
            delete(collection_items).where(collection_items.c.collection_rowid == rowid)
        )
        rows = []
        for n, case_id in enumerate(case_ids, start=1):
            case_rowid = self._case_rowid(case_id)
            rows.append(
                {
                    "collection_rowid": rowid,
                    "case_rowid": case_rowid,
                    "position": n,
                    "added_at": added.get(case_rowid, now),
                }
            )
        if rows:
            self.conn.execute(insert(collection_items), rows)

    # -- row mapping ----------------------------------------------------------------
    def _case_rowid(self, case_id: str) -> int:
        rowid = self.conn.execute(_ROWID, {"key": case_id}).scalar()
        if rowid is None:
            raise KeyError(case_id)
        return int(rowid)

    @staticmethod
    def _columns(values: dict[str, Any]) -> dict[str, Any]:
        """Column names come from code, never from input: anything else is a bug."""
        columns: dict[str, Any] = {}
        for name, value in values.items():
            column_name = _COLUMN.get(name, name)
            if column_name not in _CASE_COLUMNS:
                raise ValueError(f"not a catalogue_cases column: {name}")
            if name in _JSON_LIST_FIELDS:
                value = json.dumps(list(value), ensure_ascii=False)
            elif name == "modalities":
                value = " ".join(value)
            columns[column_name] = value
        return columns

    def _cases(self, rows: list[Any]) -> list[Case]:
        if not rows:
            return []
        ids = [r.id for r in rows]
        by_case: dict[int, list[SeriesSummary]] = {i: [] for i in ids}
        for s in self.conn.execute(_SERIES_OF, {"ids": ids}):
            by_case[s.case_rowid].append(
                SeriesSummary(
                    series_uid=s.series_uid,
                    modality=s.modality,
                    description=s.description,
                    instance_count=s.instance_count,
                    orthanc_series_id=s.orthanc_series_id,
                )
            )
        return [self._case(r, by_case[r.id]) for r in rows]

    @staticmethod
    def _case(row: Any, series: list[SeriesSummary]) -> Case:
        return Case(
            case_id=row["case_id"],
            study_uid=row["study_uid"],
            orthanc_study_id=row["orthanc_study_id"],
            patient_pseudonym=row["patient_pseudonym"],
            modalities=row["modalities"].split(),
            body_part=row["body_part"],
            series_count=row["series_count"],
            instance_count=row["instance_count"],
            age_band=row["age_band"],
            sex=row["sex"],
            level=row["level"],
            intake=row["intake"],
            status=row["status"],
            added_at=row["added_at"],
            updated_at=row["updated_at"],
            study_description=row["study_description"],
            series=series,
            title=row["title"],
            clinical_history=row["clinical_history"],
            findings=row["findings"],
            diagnosis=row["diagnosis"],
            differential=row["differential"],
            discussion=row["discussion"],
            teaching_points=row["teaching_points"],
            anatomy=row["anatomy"],
            references=row["case_references"],
            keywords=json.loads(row["keywords"]),
            authors=json.loads(row["authors"]),
            category=row["category"],
            difficulty=row["difficulty"],
            review_state=row["review_state"],
            edited_by=row["edited_by"],
            edited_at=row["edited_at"],
            vocabulary_version=row["vocabulary_version"],
        )

    @staticmethod
    def _collection(row: Any, items: list[CollectionItem]) -> Collection:
        return Collection(
            collection_id=row["collection_id"],
            title=row["title"],
            description=row["description"],
            owner=row["owner"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            items=items,
            size=row["size"],
        )


# -- PostgreSQL -----------------------------------------------------------------------

# Text search configuration made by schema.PG_TEXT_SEARCH (stemming, no stop-word removal).
PG_TEXT_CONFIG = "catalogue_english"
_CONFIG = literal_column(f"'{PG_TEXT_CONFIG}'")  # a fixed name, never input
_SEARCH = literal_column("c.search")  # schema.PG_SEARCH_COLUMN, outside tables.py


def pg_term(term: Term) -> Any:
    """One parsed term as a tsquery expression; the user's words are bound parameters."""
    if len(term.words) > 1:
        return func.phraseto_tsquery(_CONFIG, " ".join(term.words))
    if term.prefix:
        prefix = func.quote_literal(cast(term.words[0], Text)).op("||")(":*")
        return func.to_tsquery(_CONFIG, prefix)
    return func.plainto_tsquery(_CONFIG, term.words[0])


def pg_tsquery(terms: tuple[Term, ...], joiner: str) -> Any:
    """Terms joined with `&&` or `||` (tsquery operators)."""
    query = pg_term(terms[0])
    for term in terms[1:]:
        query = query.op(joiner)(pg_term(term))
    return query.self_group()


class PostgresCatalogueRepository(SqliteCatalogueRepository):
    """The catalogue on PostgreSQL: FTS5 replaced by a weighted tsvector (see above).
    The filters are prebuilt as on SQLite; a tsquery's shape follows the user's terms
    (phrase, prefix, word, how many), so the text part is built per call."""

    _statements: ClassVar[dict[tuple, Any]] = {}

    def _excluded(self, exclude: tuple[Term, ...]) -> tuple[Any, Any, dict[str, Any]]:
        return None, not_(_SEARCH.op("@@")(pg_tsquery(exclude, "||"))), {}

    def _text_search(
        self,
        include: tuple[Term, ...],
        exclude: tuple[Term, ...],
        where: tuple[tuple, dict[str, Any]],
        limit: int,
        offset: int,
        sort: str,
    ) -> tuple[int, list[Any]]:
        shape, params = where
        query = pg_tsquery(include, "&&")
        if exclude:
            query = query.op("&&")(func.tsquery_not(pg_tsquery(exclude, "||")))
        condition = and_(_SEARCH.op("@@")(query), *_filter_clauses(shape))
        total = self.conn.execute(
            select(func.count()).select_from(c).where(condition), params
        ).scalar()
        if not total:
            return 0, []
        order = _ORDER.get(sort, (func.ts_rank_cd(_SEARCH, query).desc(), c.c.id.desc()))
        ids = self.conn.execute(
            select(c.c.id).where(condition).order_by(*order).limit(limit).offset(offset), params
        ).scalars()
        return total, self._rows_by_id(ids)

    def _document_frequency(self, term: Term) -> int:
        matching = (
            select(literal_column("1"))
            .select_from(c)
            .where(_SEARCH.op("@@")(pg_tsquery((term,), "&&")))
            .limit(50000)
            .subquery()
        )
        return self.conn.execute(select(func.count()).select_from(matching)).scalar()
