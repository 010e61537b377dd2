"""All of the catalogue's SQL, behind one small class per database.

`Catalogue` (catalogue.py) holds the rules: validation, identifier checks, id format,
auditing. It talks to storage only through the methods of `SqliteCatalogueRepository`,
which `CatalogueRepository` below names as a Protocol.

With `[database] kind = "postgresql"` the connection is an
archive.db_postgres.PostgresConnection, which translates the portable statements, and
`repository_for(conn)` gives `PostgresCatalogueRepository` instead. That subclass
replaces only what SQLite does with FTS5:
  - schema (schema.PG_STEP_1): a generated `search tsvector` column, per-field weights
    A..D in place of bm25 weights, a GIN index; a stemming configuration without
    stop-word removal (`catalogue_english`), so a query of common words still matches,
    as it does with FTS5's porter tokenizer;
  - search: each parsed term becomes `plainto_tsquery` (a word), `phraseto_tsquery` (a
    phrase) or `to_tsquery(quote_literal(word) || ':*')` (a prefix), joined with `&&`,
    `||` and `!!`: user text is always a bound parameter, never tsquery syntax;
    ranking by `ts_rank_cd`;
  - `next_value`: `INSERT ... ON CONFLICT ... DO UPDATE ... RETURNING` (atomic);
  - title order: `lower(title)` for `COLLATE NOCASE`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Protocol

from archive.catalogue.model import (
    Case,
    Collection,
    CollectionItem,
    SearchFilters,
    SeriesSummary,
)
from archive.catalogue.query import ParsedQuery, Term, fts5_match
from archive.catalogue.schema import FTS_COLUMNS, ROOM, STEPS
from archive.db import dialect, migrate

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
_BM25 = "bm25(catalogue_cases_fts, {})".format(", ".join(str(BM25_WEIGHTS[c]) for c in FTS_COLUMNS))

# Domain field name -> column name, where they differ (REFERENCES is an SQL keyword).
_COLUMN = {"references": "case_references"}
_JSON_LIST_FIELDS = ("keywords", "authors")
_CASE_COLUMNS = frozenset(
    (
        "case_id study_uid orthanc_study_id patient_pseudonym modalities body_part"
        " series_count instance_count age_band sex level intake status study_description"
        " added_at updated_at title clinical_history findings diagnosis differential"
        " discussion teaching_points anatomy case_references keywords authors category"
        " difficulty review_state edited_by edited_at vocabulary_version"
    ).split()
)
_COLLECTION_COLUMNS = frozenset(
    "collection_id title description owner created_at updated_at".split()
)

# At most this many narrowed searches when no case has every word (bounds the cost).
PARTIAL_ATTEMPTS = 3

_ORDER = {
    "added": "c.added_at ASC, c.id ASC",
    "-added": "c.added_at DESC, c.id DESC",
    "title": "c.title = '' ASC, c.title COLLATE NOCASE ASC, c.case_id ASC",
}


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

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        migrate(conn, ROOM, STEPS)

    # -- transactions and sequences -------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE..COMMIT; nested use joins the outer transaction."""
        if self.conn.in_transaction:
            yield
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def next_value(self, scope: str) -> int:
        """Next number in a named sequence; call inside a transaction (atomic)."""
        self.conn.execute(
            "INSERT INTO catalogue_sequences (scope, last_value) VALUES (?, 1)"
            " ON CONFLICT (scope) DO UPDATE SET last_value = last_value + 1",
            (scope,),
        )
        row = self.conn.execute(
            "SELECT last_value FROM catalogue_sequences WHERE scope = ?", (scope,)
        ).fetchone()
        return int(row[0])

    # -- cases --------------------------------------------------------------------
    def get_case(self, case_id: str) -> Case | None:
        rows = self.conn.execute(
            "SELECT * FROM catalogue_cases WHERE case_id = ?", (case_id,)
        ).fetchall()
        cases = self._cases(rows)
        return cases[0] if cases else None

    def case_for_study(self, study_uid: str) -> Case | None:
        rows = self.conn.execute(
            "SELECT * FROM catalogue_cases WHERE study_uid = ?", (study_uid,)
        ).fetchall()
        cases = self._cases(rows)
        return cases[0] if cases else None

    def cases_for_pseudonym(self, pseudonym: str) -> list[Case]:
        rows = self.conn.execute(
            "SELECT * FROM catalogue_cases WHERE patient_pseudonym = ? ORDER BY id",
            (pseudonym,),
        ).fetchall()
        return self._cases(rows)

    def insert_case(self, values: dict[str, Any]) -> None:
        columns, params = self._columns(values)
        marks = ", ".join("?" for _ in columns)
        self.conn.execute(
            f"INSERT INTO catalogue_cases ({', '.join(columns)}) VALUES ({marks})",  # noqa: S608
            params,
        )

    def update_case(self, case_id: str, values: dict[str, Any]) -> None:
        columns, params = self._columns(values)
        assignments = ", ".join(f"{c} = ?" for c in columns)
        self.conn.execute(
            f"UPDATE catalogue_cases SET {assignments} WHERE case_id = ?",  # noqa: S608
            (*params, case_id),
        )

    def replace_series(self, case_id: str, series: Sequence[SeriesSummary]) -> None:
        rowid = self._case_rowid(case_id)
        self.conn.execute("DELETE FROM catalogue_series WHERE case_rowid = ?", (rowid,))
        self.conn.executemany(
            "INSERT INTO catalogue_series (case_rowid, position, series_uid, modality,"
            " description, instance_count, orthanc_series_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    rowid,
                    n,
                    s.series_uid,
                    s.modality,
                    s.description,
                    s.instance_count,
                    s.orthanc_series_id,
                )
                for n, s in enumerate(series, start=1)
            ],
        )
        modalities = self.conn.execute(
            "SELECT modalities FROM catalogue_cases WHERE id = ?", (rowid,)
        ).fetchone()[0]
        self.conn.execute("DELETE FROM catalogue_case_modalities WHERE case_rowid = ?", (rowid,))
        self.conn.executemany(
            "INSERT OR IGNORE INTO catalogue_case_modalities (modality, case_rowid) VALUES (?, ?)",
            [(m, rowid) for m in modalities.split()],
        )

    # -- search -------------------------------------------------------------------
    def search(
        self,
        query: ParsedQuery,
        filters: SearchFilters,
        limit: int,
        offset: int,
        sort: str,
    ) -> tuple[int, list[Case], str]:
        where, params = self._filters(filters)
        if not query.include:
            if query.exclude:
                clause, args = self._excluded(query.exclude)
                where.append(clause)
                params.extend(args)
            return (*self._plain(where, params, limit, offset, sort), "all")

        total, rows = self._text_search(
            query.include, query.exclude, where, params, limit, offset, sort
        )
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
            total, rows = self._text_search(
                tuple(kept), query.exclude, where, params, limit, offset, sort
            )
            if total or len(kept) == 1:
                break
            kept.remove(max(kept, key=lambda t: frequency[t]))
        return total, self._cases(rows), "partial"

    def _excluded(self, exclude: tuple[Term, ...]) -> tuple[str, list[Any]]:
        """A filter dropping cases that contain any of the terms."""
        return (
            "c.id NOT IN (SELECT rowid FROM catalogue_cases_fts WHERE catalogue_cases_fts MATCH ?)",
            [fts5_match(exclude, "OR")],
        )

    def _order(self, sort: str, default: str) -> str:
        return _ORDER.get(sort, default)

    def _text_search(
        self,
        include: tuple[Term, ...],
        exclude: tuple[Term, ...],
        where: list[str],
        params: list[Any],
        limit: int,
        offset: int,
        sort: str,
    ) -> tuple[int, list[sqlite3.Row]]:
        match = fts5_match(include, "AND")
        if exclude:
            match = f"({match}) NOT ({fts5_match(exclude, 'OR')})"
        clauses = ["catalogue_cases_fts MATCH ?", *where]
        base = (
            # The narrow covering index answers the per-match rowid lookups and the
            # filters without reading the wide rows (measured: 2-3x at 100k cases).
            "FROM catalogue_cases_fts CROSS JOIN catalogue_cases c"
            " INDEXED BY catalogue_cases_facets"
            " ON c.id = catalogue_cases_fts.rowid WHERE " + " AND ".join(clauses)
        )
        args = [match, *params]
        total = self.conn.execute(f"SELECT count(*) {base}", args).fetchone()[0]
        if not total:
            return 0, []
        order = _ORDER.get(sort, f"{_BM25} ASC, c.id DESC")
        ids = self.conn.execute(
            f"SELECT c.id {base} ORDER BY {order} LIMIT ? OFFSET ?",
            (*args, limit, offset),
        ).fetchall()
        return total, self._rows_by_id([r[0] for r in ids])

    def _rows_by_id(self, ids: list[int]) -> list[sqlite3.Row]:
        """Whole rows for one page only: sorting carries ids, not kilobytes of text."""
        if not ids:
            return []
        marks = ", ".join("?" for _ in ids)
        rows = {
            r["id"]: r
            for r in self.conn.execute(
                f"SELECT * FROM catalogue_cases WHERE id IN ({marks})",  # noqa: S608
                ids,
            )
        }
        return [rows[i] for i in ids]

    def refresh_statistics(self) -> None:
        """Give the query planner current row statistics (ANALYZE) for the catalogue.

        Without them SQLite may read the wide case rows instead of the covering index;
        Catalogue calls this as the catalogue grows, operators may call it any time.
        """
        for table in ("catalogue_cases", "catalogue_case_modalities", "catalogue_series"):
            self.conn.execute(f"ANALYZE {table}")

    def _document_frequency(self, term: Term) -> int:
        """How many cases contain a term (capped: only the order matters)."""
        return self.conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM catalogue_cases_fts"
            " WHERE catalogue_cases_fts MATCH ? LIMIT 50000)",
            (fts5_match((term,), "AND"),),
        ).fetchone()[0]

    def _plain(
        self, where: list[str], params: list[Any], limit: int, offset: int, sort: str
    ) -> tuple[int, list[Case]]:
        clause = " WHERE " + " AND ".join(where) if where else ""
        total = self.conn.execute(
            f"SELECT count(*) FROM catalogue_cases c{clause}",  # noqa: S608
            params,
        ).fetchone()[0]
        order = self._order(sort, _ORDER["-added"])
        ids = self.conn.execute(
            f"SELECT c.id FROM catalogue_cases c{clause} ORDER BY {order} LIMIT ? OFFSET ?",  # noqa: S608
            (*params, limit, offset),
        ).fetchall()
        return total, self._cases(self._rows_by_id([r[0] for r in ids]))

    @staticmethod
    def _filters(filters: SearchFilters) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        params: list[Any] = []

        def any_of(column: str, values: tuple[str, ...]) -> None:
            where.append(f"{column} IN ({', '.join('?' for _ in values)})")
            params.extend(values)

        if filters.status:
            any_of("c.status", filters.status)
        else:
            where.append("c.status != 'withdrawn'")
        for name in ("body_part", "category", "difficulty", "level"):
            values = getattr(filters, name)
            if values:
                any_of(f"c.{name}", values)
        if filters.modality:
            marks = ", ".join("?" for _ in filters.modality)
            where.append(
                "c.id IN (SELECT case_rowid FROM catalogue_case_modalities"  # noqa: S608
                f" WHERE modality IN ({marks}))"
            )
            params.extend(filters.modality)
        if filters.collection:
            marks = ", ".join("?" for _ in filters.collection)
            where.append(
                "c.id IN (SELECT i.case_rowid FROM catalogue_collection_items i"  # noqa: S608
                " JOIN catalogue_collections k ON k.id = i.collection_rowid"
                f" WHERE k.collection_id IN ({marks}))"
            )
            params.extend(filters.collection)
        return where, params

    # -- collections ----------------------------------------------------------------
    def insert_collection(self, values: dict[str, Any]) -> None:
        if not set(values) <= _COLLECTION_COLUMNS:
            raise ValueError("not a catalogue_collections column")
        columns = list(values)
        self.conn.execute(
            f"INSERT INTO catalogue_collections ({', '.join(columns)})"  # noqa: S608
            f" VALUES ({', '.join('?' for _ in columns)})",
            [values[c] for c in columns],
        )

    def update_collection(self, collection_id: str, values: dict[str, Any]) -> None:
        if not set(values) <= _COLLECTION_COLUMNS:
            raise ValueError("not a catalogue_collections column")
        assignments = ", ".join(f"{c} = ?" for c in values)
        self.conn.execute(
            f"UPDATE catalogue_collections SET {assignments} WHERE collection_id = ?",  # noqa: S608
            (*values.values(), collection_id),
        )

    def get_collection(self, collection_id: str, include_withdrawn: bool) -> Collection | None:
        row = self.conn.execute(
            "SELECT k.*, (SELECT count(*) FROM catalogue_collection_items i"
            "  WHERE i.collection_rowid = k.id) AS size"
            " FROM catalogue_collections k WHERE collection_id = ?",
            (collection_id,),
        ).fetchone()
        if row is None:
            return None
        hide = "" if include_withdrawn else " AND c.status != 'withdrawn'"
        items = self.conn.execute(
            "SELECT c.case_id, c.title, c.status FROM catalogue_collection_items i"  # noqa: S608
            " JOIN catalogue_cases c ON c.id = i.case_rowid"
            f" WHERE i.collection_rowid = ?{hide} ORDER BY i.position",
            (row["id"],),
        ).fetchall()
        collection = self._collection(
            row,
            [
                CollectionItem(r["case_id"], n, r["title"], r["status"])
                for n, r in enumerate(items, start=1)
            ],
        )
        return replace(collection, editors=self._editors(row["id"]))

    def _editors(self, rowid: int) -> list[str]:
        return [
            r[0]
            for r in self.conn.execute(
                "SELECT editor FROM catalogue_collection_editors WHERE collection_rowid = ?"
                " ORDER BY editor",
                (rowid,),
            )
        ]

    def set_collection_editors(
        self, collection_id: str, editors: Sequence[str], by: str, now: str
    ) -> None:
        """The users the owner shares editing with: exactly `editors`."""
        krow = self.conn.execute(
            "SELECT id FROM catalogue_collections WHERE collection_id = ?", (collection_id,)
        ).fetchone()
        self.conn.execute(
            "DELETE FROM catalogue_collection_editors WHERE collection_rowid = ?", (krow[0],)
        )
        self.conn.executemany(
            "INSERT INTO catalogue_collection_editors (collection_rowid, editor, added_by,"
            " added_at) VALUES (?, ?, ?, ?)",
            [(krow[0], editor, by, now) for editor in editors],
        )

    def delete_collection(self, collection_id: str) -> None:
        """The collection, its order and its editors; the cases stay in the catalogue."""
        krow = self.conn.execute(
            "SELECT id FROM catalogue_collections WHERE collection_id = ?", (collection_id,)
        ).fetchone()
        if krow is None:
            return
        for table in ("catalogue_collection_items", "catalogue_collection_editors"):
            self.conn.execute(
                f"DELETE FROM {table} WHERE collection_rowid = ?",  # noqa: S608 - fixed names
                (krow[0],),
            )
        self.conn.execute("DELETE FROM catalogue_collections WHERE id = ?", (krow[0],))

    def list_collections(self) -> list[Collection]:
        rows = self.conn.execute(
            "SELECT k.*, (SELECT count(*) FROM catalogue_collection_items i"
            "  WHERE i.collection_rowid = k.id) AS size"
            " FROM catalogue_collections k ORDER BY k.id"
        ).fetchall()
        return [self._collection(r, []) for r in rows]

    def collection_case_ids(self, collection_id: str) -> list[str]:
        """Every case in the collection in order, withdrawn ones included."""
        return [
            r[0]
            for r in self.conn.execute(
                "SELECT c.case_id FROM catalogue_collection_items i"
                " JOIN catalogue_collections k ON k.id = i.collection_rowid"
                " JOIN catalogue_cases c ON c.id = i.case_rowid"
                " WHERE k.collection_id = ? ORDER BY i.position",
                (collection_id,),
            )
        ]

    def set_collection_items(self, collection_id: str, case_ids: Sequence[str], now: str) -> None:
        """Make the collection hold exactly `case_ids`, in that order."""
        krow = self.conn.execute(
            "SELECT id FROM catalogue_collections WHERE collection_id = ?", (collection_id,)
        ).fetchone()
        added = {
            r[0]: r[1]
            for r in self.conn.execute(
                "SELECT case_rowid, added_at FROM catalogue_collection_items"
                " WHERE collection_rowid = ?",
                (krow[0],),
            )
        }
        self.conn.execute(
            "DELETE FROM catalogue_collection_items WHERE collection_rowid = ?", (krow[0],)
        )
        rows = []
        for n, case_id in enumerate(case_ids, start=1):
            rowid = self._case_rowid(case_id)
            rows.append((krow[0], rowid, n, added.get(rowid, now)))
        self.conn.executemany(
            "INSERT INTO catalogue_collection_items"
            " (collection_rowid, case_rowid, position, added_at) VALUES (?, ?, ?, ?)",
            rows,
        )

    # -- row mapping ----------------------------------------------------------------
    def _case_rowid(self, case_id: str) -> int:
        row = self.conn.execute(
            "SELECT id FROM catalogue_cases WHERE case_id = ?", (case_id,)
        ).fetchone()
        if row is None:
            raise KeyError(case_id)
        return int(row[0])

    @staticmethod
    def _columns(values: dict[str, Any]) -> tuple[list[str], list[Any]]:
        """Column names come from code, never from input: anything else is a bug."""
        columns, params = [], []
        for name, value in values.items():
            column = _COLUMN.get(name, name)
            if column not in _CASE_COLUMNS:
                raise ValueError(f"not a catalogue_cases column: {name}")
            columns.append(column)
            if name in _JSON_LIST_FIELDS:
                value = json.dumps(list(value), ensure_ascii=False)
            elif name == "modalities":
                value = " ".join(value)
            params.append(value)
        return columns, params

    def _cases(self, rows: list[sqlite3.Row]) -> list[Case]:
        if not rows:
            return []
        ids = [r["id"] for r in rows]
        series: dict[int, list[SeriesSummary]] = {i: [] for i in ids}
        marks = ", ".join("?" for _ in ids)
        for s in self.conn.execute(
            "SELECT * FROM catalogue_series"  # noqa: S608
            f" WHERE case_rowid IN ({marks}) ORDER BY case_rowid, position",
            ids,
        ):
            series[s["case_rowid"]].append(
                SeriesSummary(
                    series_uid=s["series_uid"],
                    modality=s["modality"],
                    description=s["description"],
                    instance_count=s["instance_count"],
                    orthanc_series_id=s["orthanc_series_id"],
                )
            )
        return [self._case(r, series[r["id"]]) for r in rows]

    @staticmethod
    def _case(row: sqlite3.Row, series: list[SeriesSummary]) -> Case:
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
    def _collection(row: sqlite3.Row, items: list[CollectionItem]) -> Collection:
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

_PG_ORDER = {**_ORDER, "title": "c.title = '' ASC, lower(c.title) ASC, c.case_id ASC"}
# Text search configuration made by schema.PG_STEP_1 (stemming, no stop-word removal).
PG_TEXT_CONFIG = "catalogue_english"


def pg_term(term: Term) -> tuple[str, str]:
    """One parsed term as a tsquery expression and its one bound parameter."""
    if len(term.words) > 1:
        return f"phraseto_tsquery('{PG_TEXT_CONFIG}', ?)", " ".join(term.words)
    if term.prefix:
        return f"to_tsquery('{PG_TEXT_CONFIG}', quote_literal(?::text) || ':*')", term.words[0]
    return f"plainto_tsquery('{PG_TEXT_CONFIG}', ?)", term.words[0]


def pg_tsquery(terms: tuple[Term, ...], joiner: str) -> tuple[str, list[str]]:
    """Terms joined with `&&` or `||` (tsquery operators), parameters in order."""
    parts = [pg_term(t) for t in terms]
    return "(" + f" {joiner} ".join(p[0] for p in parts) + ")", [p[1] for p in parts]


class PostgresCatalogueRepository(SqliteCatalogueRepository):
    """The catalogue on PostgreSQL: FTS5 replaced by a weighted tsvector (see above)."""

    def next_value(self, scope: str) -> int:
        row = self.conn.execute(
            "INSERT INTO catalogue_sequences (scope, last_value) VALUES (?, 1)"
            " ON CONFLICT (scope) DO UPDATE"
            " SET last_value = catalogue_sequences.last_value + 1 RETURNING last_value",
            (scope,),
        ).fetchone()
        return int(row[0])

    def _excluded(self, exclude: tuple[Term, ...]) -> tuple[str, list[Any]]:
        query, params = pg_tsquery(exclude, "||")
        return f"NOT (c.search @@ {query})", list(params)

    def _order(self, sort: str, default: str) -> str:
        return _PG_ORDER.get(sort, default)

    def _text_search(
        self,
        include: tuple[Term, ...],
        exclude: tuple[Term, ...],
        where: list[str],
        params: list[Any],
        limit: int,
        offset: int,
        sort: str,
    ) -> tuple[int, list[Any]]:
        query, args = pg_tsquery(include, "&&")
        if exclude:
            excluded, more = pg_tsquery(exclude, "||")
            query = f"({query} && !!{excluded})"
            args = [*args, *more]
        base = f"FROM catalogue_cases c WHERE c.search @@ {query}" + "".join(
            f" AND {clause}" for clause in where
        )
        total = self.conn.execute(f"SELECT count(*) {base}", [*args, *params]).fetchone()[0]
        if not total:
            return 0, []
        order = _PG_ORDER.get(sort, f"ts_rank_cd(c.search, {query}) DESC, c.id DESC")
        rank_args = [] if sort in _PG_ORDER else args
        ids = self.conn.execute(
            f"SELECT c.id {base} ORDER BY {order} LIMIT ? OFFSET ?",
            (*args, *params, *rank_args, limit, offset),
        ).fetchall()
        return total, self._rows_by_id([r[0] for r in ids])

    def _document_frequency(self, term: Term) -> int:
        query, args = pg_tsquery((term,), "&&")
        return self.conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM catalogue_cases"  # noqa: S608
            f" WHERE search @@ {query} LIMIT 50000) AS matching",
            args,
        ).fetchone()[0]
