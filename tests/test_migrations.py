"""The schema the migrations make: what schema.py describes, on both databases; databases of the
pre-release migrations refused at start; and the plans and upkeep its queries get."""

from __future__ import annotations

import ast
import re
import secrets
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.schema import CreateIndex

from conftest import ServerProcess
from otlp_helpers import make_span, post, request_of
from tracehub.store import db, partitions, search
from tracehub.store.sql import Sql
from tracehub.store.schema import metadata

BACKENDS = pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
VERSIONS = Path(db.__file__).parent / "migrations" / "versions"

# The search index's own tables, which schema.py leaves to tracehub.store.search: FTS5 tables (with
# their shadow tables) and fts5vocab tables on SQLite, trigram-indexed side tables on PostgreSQL.
SEARCH_TABLES = {
    "sqlite": {f"{fts}{part}" for fts in ("spans_fts", "span_events_fts")
               for part in ("", "_data", "_idx", "_docsize", "_config", "_vocab")} | {"spans_fts_docs"},
    "postgresql": {"span_search", "span_event_search"},
}
# PostgreSQL's partitions of spans and their upkeep, which schema.py leaves to
# tracehub.store.partitions, and the partition key it makes NOT NULL (migration 1002).
PARTITION_TABLES = re.compile(r"span_partitions|spans_p\d+")
PARTITION_KEY = ("spans", "trace_seq")
# Indexes on expressions, which autogenerate cannot compare (SQLite does not reflect them; on
# PostgreSQL it compares their text unparsed): the database states both for comparison instead.
EXPRESSION_INDEXES = [index for table in metadata.sorted_tables for index in table.indexes
                      if any(not isinstance(e, sa.Column) for e in index.expressions)]


def _stated(conn: sa.Connection, index: str) -> str:
    """An index's definition as the database states it, without its name."""
    if conn.dialect.name == "sqlite":
        sql = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = ?", (index,)).scalar_one()
    else:
        sql = conn.exec_driver_sql("SELECT pg_get_indexdef(%s::regclass)", (index,)).scalar_one()
    return " ".join(sql.replace(f" {index} ", " <index> ").split())


def assert_schema_is_described(engine: sa.Engine) -> None:
    dialect = engine.dialect.name
    expressions = {index.name for index in EXPRESSION_INDEXES}

    def compared(obj: Any, name: str | None, kind: str, reflected: bool, _other: Any) -> bool:
        table = obj.table.name if kind in ("index", "unique_constraint", "column") else name
        if dialect == "postgresql" and (PARTITION_TABLES.fullmatch(table or "") or (table, name) == PARTITION_KEY):
            return False
        return table not in SEARCH_TABLES[dialect] and name not in expressions

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True,
                                                         "include_object": compared})
        assert compare_metadata(context, metadata) == []
        conn.rollback()
        for index in EXPRESSION_INDEXES:  # the metadata's, made beside the migrated one and taken back
            assert index.name is not None
            conn.execute(sa.text(str(CreateIndex(index).compile(dialect=conn.dialect)).replace(
                f" {index.name} ", f" {index.name}_described ", 1)))
            assert _stated(conn, f"{index.name}_described") == _stated(conn, index.name), index.name
            conn.rollback()


@BACKENDS
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index",
                            "ignore:autogenerate skipping metadata-specified expression-based index")
def test_the_migrations_make_what_schema_py_describes(backend: str,
                                                      database_url_factory: Callable[[str], str]) -> None:
    engine = db.create_engine(database_url_factory(backend))
    db.migrate(engine)
    assert_schema_is_described(engine)
    db.downgrade(engine, "base")  # the baseline goes back to nothing and up again
    assert sa.inspect(engine).get_table_names() == ["alembic_version"]
    db.migrate(engine)
    assert_schema_is_described(engine)
    with engine.connect() as conn:
        assert dict(conn.execute(sa.text("SELECT name, indexed_upto FROM search_state")).all()) == \
            {"spans": 0, "span_events": 0}
    engine.dispose()


def test_migrations_import_nothing_from_tracehub() -> None:
    """A migration that imported the live schema would make a different schema once it changed."""
    for path in VERSIONS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not [n for n in names if n.split(".")[0] == "tracehub"], path.name


@BACKENDS
def test_a_database_of_the_pre_release_migrations_is_refused_at_start(
        backend: str, database_url_factory: Callable[[str], str], tmp_path: Path) -> None:
    url = database_url_factory(backend)
    engine = db.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
        conn.execute(sa.text("INSERT INTO alembic_version VALUES ('0020')"))
        conn.execute(sa.text("CREATE TABLE spans (id INTEGER PRIMARY KEY)"))
    server = ServerProcess(url, tmp_path)
    with pytest.raises(RuntimeError, match="server exited with 1"):
        server.start()
    log = server.log_text()
    assert ("The database is at migration 0020, from before the first release: its schema cannot be upgraded."
            " Recreate the database") in log and "Traceback" not in log, log
    with engine.connect() as conn:  # left as it was
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one() == "0020"
        assert set(sa.inspect(conn).get_table_names()) == {"alembic_version", "spans"}
    engine.dispose()


@pytest.mark.postgres
def test_postgres_span_rows_stay_inline_and_large_columns_use_lz4(database_url_factory: Callable[[str], str]) -> None:
    """Settings schema.py does not hold, on every partition of spans, the migration's and those
    made later (tracehub.store.partitions): rows up to a page are not moved out to TOAST, and lz4
    compresses the large text columns where the server has it."""
    engine = db.create_engine(database_url_factory("postgres"))
    db.migrate(engine)
    with engine.connect() as conn:
        cur = conn.connection.cursor()
        conn.connection.dbapi_connection.autocommit = True  # type: ignore[union-attr]
        partitions.maintain(cur, time.time_ns() + partitions.PERIOD_NS)  # rolls over, makes the next
        lz4 = conn.exec_driver_sql("SELECT 'lz4' = ANY(enumvals) FROM pg_settings"
                                   " WHERE name = 'default_toast_compression'").scalar()
        tables = [r[0] for r in conn.exec_driver_sql(
            "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'spans'::regclass ORDER BY 1")]
        settings = {table: (dict(conn.exec_driver_sql(
            "SELECT a.attname, a.attcompression FROM pg_attribute a WHERE a.attrelid = %s::regclass"
            " AND a.attname IN ('input_text', 'output_text', 'attributes', 'scope', 'events', 'links', 'body')",
            (table,)).all()), conn.exec_driver_sql("SELECT reloptions FROM pg_class WHERE oid = %s::regclass",
                                                    (table,)).scalar()) for table in tables}
    engine.dispose()
    method = "l" if lz4 else ""
    compression = {**dict.fromkeys(("input_text", "output_text", "attributes", "scope", "events", "links"), method),
                   "body": ""}
    assert settings == dict.fromkeys(["spans_p0", "spans_p1", "spans_p2"], (compression, ["toast_tuple_target=8160"]))


@pytest.mark.postgres
def test_trace_numbers_of_two_writers_never_collide(database_url_factory: Callable[[str], str]) -> None:
    engine = db.create_engine(database_url_factory("postgres"))
    db.migrate(engine)
    a, b = Sql("postgresql"), Sql("postgresql")  # as two server processes would hold them
    with engine.connect() as conn:
        cur = conn.connection.cursor()
        got_a = [*a.next_seqs(cur, 1500), *a.next_seqs(cur, 700)]
        got_b = list(b.next_seqs(cur, 900))
        got_a += a.next_seqs(cur, 5)
    engine.dispose()
    assert got_a == sorted(got_a) and got_b == sorted(got_b)
    assert len(set(got_a)) == 2205 and len(set(got_b)) == 900 and not set(got_a) & set(got_b)


def test_the_sqlite_search_index_drives_the_span_lookup(tmp_path: Path) -> None:
    """Joined to spans the other way, SQLite walked the project's rows and ran the FTS match once
    per row."""
    engine = db.create_engine(f"sqlite:///{tmp_path / 'plan.db'}")
    db.migrate(engine)
    with engine.connect() as conn:
        statements = search.probe_queries(conn, "sqlite", "보증 기간은", {"spans": 0, "span_events": 0})
        assert statements is not None
        plans = []
        for sql, extra in statements:
            params = {"p": 1, "q": "%보증 기간은%", "n": 10, **extra}
            plans.append([row[-1] for row in conn.execute(sa.text(f"EXPLAIN QUERY PLAN {sql}"), params)])
    engine.dispose()
    indexed = [plan for plan in plans if any("VIRTUAL TABLE" in step for step in plan)]
    assert len(indexed) == 2, plans  # spans and span events
    for plan in indexed:
        assert "VIRTUAL TABLE INDEX" in plan[0] and "USING INTEGER PRIMARY KEY (rowid=?)" in plan[1], plan


@pytest.mark.postgres
def test_postgresql_finds_korean_words_of_one_or_two_syllables_through_the_index(
        database_url_factory: Callable[[str], str]) -> None:
    """Shorter than a trigram, a query made pg_trgm read its whole GIN index (or, as strpos, every
    document); behind their marks the short pieces of a document are trigrams it looks up. And the
    probe prices a LIKE on a document as what it costs: with documents of a trace's size (in
    TOAST, the heap small), PostgreSQL chose to read them all instead of the index."""
    engine = db.create_engine(database_url_factory("postgres"))
    db.migrate(engine)
    filler = " ".join(f"question {i} about order {i * 7} and the refund policy" for i in range(400))  # ~20 KB
    with engine.connect() as conn:
        docs = [f"{filler} {i}" for i in range(1500)]
        docs[1234] = "환불은 언제 되나요 내일 " + filler
        conn.execute(sa.text("INSERT INTO span_search (id, project_id, trace_id, doc) VALUES (:i, 1, :t, :d)"),
                     [{"i": i, "t": f"{i:032x}", "d": search.short_pieces(d) + search.SEPARATOR + d}
                      for i, d in enumerate(docs)])
        conn.exec_driver_sql("SELECT gin_clean_pending_list('ix_span_search_doc')")  # as autovacuum would
        conn.exec_driver_sql("ANALYZE span_search")
        for text in ("환불", "날", "일", "뷁", "purple elephant"):
            statements = search.probe_queries(conn, "postgresql", text, {"spans": 3000, "span_events": 0})
            assert statements is not None
            sql, extra = statements[0]
            params = {"p": 1, "q": f"%{text}%", "n": 10, **extra}
            with search._document_cost(conn, "postgresql"):
                plan = " ".join(r[0] for r in conn.execute(sa.text(f"EXPLAIN {sql}"), params))
            assert "Bitmap Index Scan on ix_span_search_doc" in plan, (text, plan)
            found = conn.execute(sa.text(sql), params).scalars().all()
            assert found == ([] if text in ("날", "뷁", "purple elephant") else [f"{1234:032x}"]), text
        assert conn.exec_driver_sql("SHOW cpu_operator_cost").scalar() == "0.0025"  # reset after
        conn.rollback()
    engine.dispose()
    assert search.short_pieces("환불을 doc 날 a환") == " ".join(sorted(
        {"\ua66e환불", "\ua66e불을", "\ua66e\ua66e환", "\ua66e\ua66e불", "\ua66e\ua66e을", "\ua66e\ua66e날",
         "\ua66ea환"}))


def test_new_sqlite_databases_get_16k_pages_and_old_ones_keep_theirs(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    conn = sqlite3.connect(old)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE made_before (x)")
    conn.close()
    for path, size in ((tmp_path / "new.db", 16384), (old, 4096)):
        engine = db.create_engine(f"sqlite:///{path}")
        db.migrate(engine)
        with engine.connect() as c:
            assert c.exec_driver_sql("PRAGMA page_size").scalar() == size
            assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert c.exec_driver_sql("SELECT count(*) FROM spans").scalar() == 0
        engine.dispose()



def _read_until(engine: sa.Engine, sql: str, done: Callable[[list[tuple[Any, ...]]], bool]
                ) -> list[tuple[Any, ...]]:
    """`sql`'s rows once `done` holds, or after 30 s: the server's own thread acts when the
    statistics of the load reach it."""
    deadline = time.monotonic() + 30
    while True:
        with engine.connect() as conn:
            rows = [tuple(r) for r in conn.exec_driver_sql(sql).all()]
        if done(rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


@pytest.mark.postgres
def test_postgres_statistics_follow_the_load(
        database_url_factory: Callable[[str], str], server_factory: Callable[..., ServerProcess]) -> None:
    """Autovacuum looks once a minute; without statistics the writer's lookups scanned every
    stored span of the project for each batch."""
    url = database_url_factory("postgres")
    server = server_factory(database_url=url)
    tid = secrets.token_hex(16)
    spans = [make_span(bytes.fromhex(tid), i.to_bytes(8, "big"), name=f"s{i}") for i in range(1, 1_501)]
    assert post(server, request_of(*spans)).status_code == 200
    engine = db.create_engine(url)
    analyzed = dict(_read_until(
        engine, "SELECT relname, analyze_count FROM pg_stat_user_tables"
        " WHERE relname IN ('spans', 'traces') AND analyze_count > 0", lambda rows: {r[0] for r in rows} == {"spans"}))
    with engine.connect() as conn:
        estimate = conn.exec_driver_sql("SELECT reltuples FROM pg_class WHERE relname = 'spans'").scalar()
    engine.dispose()
    assert analyzed == {"spans": 1} and estimate == 1_500  # one trace row: too few to analyze


@pytest.mark.postgres
def test_postgres_trace_table_is_vacuumed_when_ingest_pauses(
        database_url_factory: Callable[[str], str], server_factory: Callable[..., ServerProcess]) -> None:
    """Until a VACUUM sets the visibility map, a filtered list's total reads every matching row."""
    url = database_url_factory("postgres")
    server = server_factory(database_url=url)
    spans = [make_span(secrets.token_bytes(16), b"\x01" * 8, name=f"t{i}") for i in range(300)]
    assert post(server, request_of(*spans)).status_code == 200
    engine = db.create_engine(url)
    counts = _read_until(engine, "SELECT vacuum_count, n_ins_since_vacuum FROM pg_stat_user_tables"
                         " WHERE relname = 'traces'", lambda rows: rows[0][0] > 0)
    engine.dispose()
    assert counts == [(1, 0)]
