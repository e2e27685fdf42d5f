"""The schema at work: upgrading a database that holds data, and the plans its queries get."""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import sqlalchemy as sa

from conftest import ServerProcess
from otlp_helpers import make_span, new_trace_id, post, request_of
from tracehub.store import db, keys, search
from tracehub.store.batchwrite import Sql
from tracehub.store.schema import SEARCH_DOCUMENT_PG

BACKENDS = pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])

# Rows as an older schema takes them, written with SQL (the server of that time is gone).
TRACE = {"status": "success", "start_ns": 1, "span_count": 0, "running_span_count": 0,
         "missing_parent_count": 0, "error_count": 0, "input_tokens": 0, "output_tokens": 0,
         "cost_usd": 0, "updated_ns": 1}
SPAN = {"name": "op", "kind": "INTERNAL", "span_type": "span", "status": "success", "start_ns": 1,
        "end_ns": 2, "attributes": "{}", "scope": "{}", "events": "[]", "links": "[]"}


def store_at(url: str, revision: str) -> sa.Engine:
    """A database at `revision` with the default project."""
    engine = db.create_engine(url)
    db.migrate(engine, revision)
    keys.ensure_default_project(engine)
    return engine


def insert(conn: sa.Connection, table: str, **row: Any) -> None:
    """One row of the default project."""
    conn.execute(sa.text(f"INSERT INTO {table} (project_id, {', '.join(row)})"
                         f" VALUES ((SELECT id FROM projects), {', '.join(':' + c for c in row)})"), row)


@BACKENDS
def test_awaited_parents_are_derived_from_stored_spans(
        backend: str, database_url_factory: Callable[[str], str],
        server_factory: Callable[..., ServerProcess]) -> None:
    url = database_url_factory(backend)
    engine = store_at(url, "0006")
    tid, root, stored, lost_a, lost_b = (secrets.token_hex(16), *(secrets.token_hex(8) for _ in range(4)))
    children = [(secrets.token_hex(8), root), (secrets.token_hex(8), stored),
                (secrets.token_hex(8), lost_a), (secrets.token_hex(8), lost_b),
                (secrets.token_hex(8), lost_b)]
    with engine.begin() as conn:
        insert(conn, "traces", **{**TRACE, "status": "running", "span_count": 6, "missing_parent_count": 3},
               trace_id=tid)
        for span_id, parent in [(stored, None), *children]:
            insert(conn, "spans", **SPAN, resource="{}", trace_id=tid, span_id=span_id, parent_span_id=parent)
    db.migrate(engine)
    with engine.connect() as conn:
        awaited = conn.execute(sa.text("SELECT awaited_parents FROM traces")).scalar_one()
    engine.dispose()
    assert sorted(awaited.split()) == sorted([root, lost_a, lost_b])

    server = server_factory(database_url=url)
    tid_bytes = bytes.fromhex(tid)
    for span_id, open_after in ((lost_b, 2), (lost_a, 1), (root, 0)):
        parent = b"" if span_id == root else bytes.fromhex(root)
        r = post(server, request_of(make_span(tid_bytes, bytes.fromhex(span_id), parent)))
        assert r.status_code == 200, r.text
        trace = server.client.get(f"/api/v1/traces/{tid}").json()["trace"]
        assert trace["open_span_count"] == open_after
    assert trace["status"] == "success" and trace["span_count"] == 9
    assert server.client.get("/api/v1/traces").json()["total"] == 1  # counted by migration 0008


@BACKENDS
def test_resources_move_out_of_span_rows_and_back(
        backend: str, database_url_factory: Callable[[str], str],
        server_factory: Callable[..., ServerProcess]) -> None:
    url = database_url_factory(backend)
    engine = store_at(url, "0009")
    tid = secrets.token_hex(16)
    a = '{"service.name":"a","host.name":"서버-1"}'
    b = '{"service.name":"b"}'
    spans = {secrets.token_hex(8): resource for resource in (a, a, b, "{}")}
    with engine.begin() as conn:
        insert(conn, "traces", **{**TRACE, "span_count": 4}, trace_id=tid)
        for span_id, resource in spans.items():
            insert(conn, "spans", **SPAN, resource=resource, trace_id=tid, span_id=span_id)
    db.migrate(engine)
    with engine.connect() as conn:
        stored = dict(conn.execute(sa.text("SELECT resource_id, CAST(attributes AS TEXT) FROM resources")).all())
        named = dict(conn.execute(sa.text("SELECT span_id, resource_id FROM spans")).all())
    assert sorted(stored.values()) == sorted([a, b])
    assert {s: stored.get(rid, "{}") if rid is not None else "{}" for s, rid in named.items()} == spans
    assert sum(rid is None for rid in named.values()) == 1
    db.downgrade(engine, "0009")
    with engine.connect() as conn:
        back = dict(conn.execute(sa.text("SELECT span_id, CAST(resource AS TEXT) FROM spans")).all())
    assert {s: json.loads(r) for s, r in back.items()} == {s: json.loads(r) for s, r in spans.items()}
    db.migrate(engine)
    engine.dispose()

    server = server_factory(database_url=url)
    got = {s["span_id"]: s["resource"] for s in server.client.get(f"/api/v1/traces/{tid}").json()["spans"]}
    assert got == {s: json.loads(r) for s, r in spans.items()}


def _index_as_of_0010(conn: sa.Connection, backend: str) -> None:
    """What the search indexer of revision 0010 did with every span: one document each."""
    if backend == "postgres":
        conn.execute(sa.text(f"INSERT INTO span_search (id, project_id, trace_id, doc)"
                             f" SELECT id, project_id, trace_id, {SEARCH_DOCUMENT_PG} FROM spans"))
    else:
        conn.execute(sa.text("INSERT INTO spans_fts (rowid, name, input_text, output_text, attributes)"
                             " SELECT id, name, input_text, output_text, attributes FROM spans"))
    assert conn.execute(sa.text("UPDATE search_state SET indexed_upto = (SELECT max(id) FROM spans)"
                                " WHERE name = 'spans'")).rowcount == 1


@BACKENDS
def test_stored_spans_are_keyed_by_their_trace_number(
        backend: str, database_url_factory: Callable[[str], str],
        server_factory: Callable[..., ServerProcess]) -> None:
    url = database_url_factory(backend)
    engine = store_at(url, "0010")
    traces = {secrets.token_hex(16): [secrets.token_hex(8) for _ in range(2)] for _ in range(3)}
    with engine.begin() as conn:
        for tid, span_ids in traces.items():
            insert(conn, "traces", **{**TRACE, "span_count": 2}, trace_id=tid)
            for span_id in span_ids:
                insert(conn, "spans", **SPAN, trace_id=tid, span_id=span_id, input_text=f"질문 {span_id}")
    with engine.begin() as conn:  # in the search index before the table is rebuilt (SQLite)
        _index_as_of_0010(conn, backend)
    db.migrate(engine)
    with engine.connect() as conn:
        seqs = dict(conn.execute(sa.text("SELECT trace_id, seq FROM traces")).all())
        keyed = conn.execute(sa.text("SELECT trace_id, trace_seq FROM spans")).all()
    engine.dispose()
    assert len(set(seqs.values())) == 3 and None not in seqs.values()
    assert all(seqs[tid] == seq for tid, seq in keyed) and len(keyed) == 6

    server = server_factory(database_url=url)
    tid, (old, _) = next(iter(traces.items()))
    new = secrets.token_hex(8)
    for span_id in (old, new, old):  # a stored span again is a duplicate; a new one joins the trace
        r = post(server, request_of(make_span(bytes.fromhex(tid), bytes.fromhex(span_id))))
        assert r.status_code == 200, r.text
    got = server.client.get(f"/api/v1/traces/{tid}").json()
    assert sorted(s["span_id"] for s in got["spans"]) == sorted([*traces[tid], new])
    assert got["trace"]["span_count"] == 3
    other_tid, other_spans = list(traces.items())[1]
    found = server.client.get("/api/v1/traces", params={"search": f"질문 {other_spans[1]}"}).json()["items"]
    assert [t["trace_id"] for t in found] == [other_tid]
    fresh = new_trace_id()
    assert post(server, request_of(make_span(fresh, b"\x07" * 8))).status_code == 200
    server.stop()
    engine = db.create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT seq FROM traces WHERE trace_id = :t"),
                            {"t": fresh.hex()}).scalar_one() > max(seqs.values())
    db.downgrade(engine, "0010")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM spans")).scalar_one() == 8
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:  # the old key is back
        insert(conn, "spans", **SPAN, trace_id=tid, span_id=new)
    engine.dispose()


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


@pytest.mark.postgres
def test_postgres_json_columns_move_from_jsonb_to_json_and_back(
        database_url_factory: Callable[[str], str]) -> None:
    engine = store_at(database_url_factory("postgres"), "0008")
    attributes = '{"z": "그 다음", "a": {"n": 1.5}}'

    def state(conn: sa.Connection) -> dict[str, tuple[str, str | None]]:
        return {f"{table}.{column}": (kind, compression) for table, column, kind, compression
                in conn.exec_driver_sql(
                    "SELECT c.relname, a.attname, format_type(a.atttypid, NULL), a.attcompression"
                    " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
                    " WHERE c.relname IN ('spans', 'traces') AND a.attname IN ('attributes', 'scope')")}

    def reloptions(conn: sa.Connection) -> list[str] | None:
        return conn.exec_driver_sql("SELECT reloptions FROM pg_class WHERE relname = 'spans'").scalar()

    with engine.begin() as conn:
        assert set(kind for kind, _ in state(conn).values()) == {"jsonb"}
        insert(conn, "spans", **{**SPAN, "attributes": attributes}, resource="{}",
               trace_id=secrets.token_hex(16), span_id=secrets.token_hex(8))
    db.migrate(engine, "0011")
    with engine.connect() as conn:
        lz4 = conn.exec_driver_sql("SELECT attcompression FROM pg_attribute WHERE attname = 'input_text'"
                                   " AND attrelid = 'spans'::regclass").scalar()
        assert state(conn) == {"spans.attributes": ("json", lz4), "spans.scope": ("json", lz4),
                               "traces.attributes": ("json", lz4)}
        assert reloptions(conn) == ["toast_tuple_target=8160"]
        stored = conn.exec_driver_sql("SELECT attributes::text FROM spans").scalar()
        assert stored is not None and json.loads(stored) == {"a": {"n": 1.5}, "z": "그 다음"}
    db.downgrade(engine, "0008")
    with engine.connect() as conn:
        assert set(kind for kind, _ in state(conn).values()) == {"jsonb"}
        assert reloptions(conn) is None
    engine.dispose()


@pytest.mark.postgres
def test_postgres_span_documents_become_text_and_back(
        database_url_factory: Callable[[str], str], server_factory: Callable[..., ServerProcess]) -> None:
    url = database_url_factory("postgres")
    engine = store_at(url, "0011")
    documents = {"attributes": '{"z": "그 다음", "n": 18446744073709551616, "nul": "a\\u0000b"}',
                 "scope": '{"name": "s", "version": "1"}', "events": '[{"name": "e", "time_unix_nano": 5, "attributes": {}}]',
                 "links": "[]"}
    tid = secrets.token_hex(16)

    def kinds(conn: sa.Connection) -> dict[str, tuple[str, str | None]]:
        return {column: (kind, compression) for column, kind, compression in conn.exec_driver_sql(
            "SELECT a.attname, format_type(a.atttypid, NULL), a.attcompression FROM pg_attribute a"
            " WHERE a.attrelid = 'spans'::regclass AND a.attname = ANY(%(c)s)", {"c": list(documents)})}

    with engine.begin() as conn:
        seq = conn.exec_driver_sql("SELECT nextval('trace_seq')").scalar()
        insert(conn, "traces", **{**TRACE, "span_count": 1}, trace_id=tid, seq=seq)
        insert(conn, "spans", **{**SPAN, **documents}, trace_id=tid, span_id="00000000000000aa", trace_seq=seq)
        lz4 = conn.exec_driver_sql("SELECT attcompression FROM pg_attribute WHERE attname = 'input_text'"
                                   " AND attrelid = 'spans'::regclass").scalar()
    db.migrate(engine)
    with engine.connect() as conn:
        assert kinds(conn) == dict.fromkeys(documents, ("text", lz4))
        assert conn.exec_driver_sql("SELECT format_type(atttypid, NULL) FROM pg_attribute WHERE attname ="
                                    " 'attributes' AND attrelid = 'traces'::regclass").scalar() == "json"
    server = server_factory(database_url=url)
    r = server.client.get(f"/api/v1/traces/{tid}")
    assert r.status_code == 200, server.log_text()
    span = r.json()["spans"][0]
    assert span["attributes"] == {"z": "그 다음", "n": 18446744073709551616, "nul": "a\x00b"}
    assert [e["name"] for e in span["events"]] == ["e"] and span["links"] == []
    # New spans go in through the writer's COPY, which binds their JSON into the text columns.
    later = new_trace_id()
    r = post(server, request_of(make_span(later, b"\x0b" * 8, name="after", k="값")))
    assert r.status_code == 200, r.text
    assert server.client.get(f"/api/v1/traces/{later.hex()}").json()["spans"][0]["attributes"] == {"k": "값"}
    server.stop()
    db.downgrade(engine, "0011")
    with engine.connect() as conn:
        assert kinds(conn) == dict.fromkeys(documents, ("json", lz4))
        assert conn.exec_driver_sql("SELECT attributes::text FROM spans WHERE span_id = '00000000000000aa'"
                                    ).scalar() == documents["attributes"]
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


@BACKENDS
def test_traces_stored_waiting_for_a_root_or_a_lost_parent_complete(
        backend: str, database_url_factory: Callable[[str], str],
        server_factory: Callable[..., ServerProcess]) -> None:
    url = database_url_factory(backend)
    engine = store_at(url, "0012")
    looped, orphaned = secrets.token_hex(16), secrets.token_hex(16)
    a, b, child, lost = (secrets.token_hex(8) for _ in range(4))
    stored = ((looped, None, ((a, b), (b, a))), (orphaned, lost, ((child, lost),)))
    with engine.begin() as conn:
        for n, (tid, missing, spans) in enumerate(stored):
            seq = n + 1 if backend == "sqlite" else conn.exec_driver_sql("SELECT nextval('trace_seq')").scalar()
            insert(conn, "traces", **{**TRACE, "status": "running", "span_count": len(spans),
                                      "missing_parent_count": int(missing is not None)},
                   trace_id=tid, seq=seq, awaited_parents=missing)
            for span_id, parent in spans:
                insert(conn, "spans", **SPAN, trace_id=tid, trace_seq=seq, span_id=span_id, parent_span_id=parent)
    db.migrate(engine)
    with engine.connect() as conn:
        status: dict[str, str] = dict(conn.execute(sa.text("SELECT trace_id, status FROM traces")).all())
    assert status == {looped: "success", orphaned: "running"}  # the lost parent is given up when read
    db.downgrade(engine, "0012")
    db.migrate(engine)
    engine.dispose()

    server = server_factory(database_url=url)
    got = server.client.get(f"/api/v1/traces/{looped}").json()
    assert got["trace"]["status"] == "success" and [n["cycle"] for n in got["tree"]] == [True]
    t = server.client.get(f"/api/v1/traces/{orphaned}").json()["trace"]  # its row last changed long ago
    assert (t["status"], t["has_open_spans"], t["parents_not_received"]) == ("success", False, 1)
    fresh, local_root = new_trace_id(), secrets.token_bytes(8)
    remote = make_span(fresh, local_root, parent=secrets.token_bytes(8), name="GET /")
    remote.flags = 0x300  # the parent is remote
    assert post(server, request_of(remote)).status_code == 200
    got = server.client.get(f"/api/v1/traces/{fresh.hex()}").json()
    assert (got["trace"]["root_span_id"], got["spans"][0]["parent_remote"]) == (local_root.hex(), True)


@BACKENDS
def test_the_schema_module_describes_what_the_migrations_make(backend: str,
                                                             database_url_factory: Callable[[str], str]) -> None:
    from tracehub.store.schema import metadata

    engine = store_at(database_url_factory(backend), "head")
    db.downgrade(engine, "0013")  # the newest migration goes back and forth
    db.migrate(engine)
    inspector = sa.inspect(engine)
    for table in metadata.sorted_tables:
        made = {c["name"]: c["nullable"] for c in inspector.get_columns(table.name)}
        assert made == {c.name: c.nullable for c in table.columns}, table.name
    engine.dispose()


@BACKENDS
def test_stored_spans_are_packed_into_bodies_and_stay_as_sent(
        backend: str, database_url_factory: Callable[[str], str],
        server_factory: Callable[..., ServerProcess]) -> None:
    """Migration 0020 packs the rows stored before into bodies: the detail shows them as they were,
    search finds them once the index is filled again, and a downgrade gives the columns back."""
    url = database_url_factory(backend)
    engine = store_at(url, "0019")
    tid, word = secrets.token_hex(16), f"보관 {secrets.token_hex(3)}"
    attributes = json.dumps({"input.value": f"질문 {word}", "n": 7, "deep": {"list": [1, "둘"]}}, ensure_ascii=False)
    rows = {secrets.token_hex(8): (f"질문 {word}", "answer " * 40, attributes),
            secrets.token_hex(8): (None, None, "{}")}
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE projects SET trace_count = 1"))
        insert(conn, "traces", **{**TRACE, "span_count": 2, "seq": 1}, trace_id=tid)
        for span_id, (i, o, a) in rows.items():
            insert(conn, "spans", **{**SPAN, "attributes": a, "scope": '{"name": "s"}'}, trace_id=tid, trace_seq=1,
                   span_id=span_id, input_text=i, output_text=o)
    db.migrate(engine)
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT input_text, output_text, attributes, body FROM spans")).all()
    engine.dispose()
    assert all(i is None and o is None and a == "" and body for i, o, a, body in stored)

    server = server_factory(database_url=url)
    spans = {s["span_id"]: s for s in server.client.get(f"/api/v1/traces/{tid}").json()["spans"]}
    for span_id, (i, o, a) in rows.items():
        assert (spans[span_id]["input_text"], spans[span_id]["output_text"]) == (i, o)
        assert spans[span_id]["attributes"] == json.loads(a) and spans[span_id]["scope"] == {"name": "s"}
    deadline = time.monotonic() + 30
    while server.client.get("/readyz").json().get("search_unindexed_rows"):
        assert time.monotonic() < deadline, "the search index was not filled again"
        time.sleep(0.2)
    found = server.client.get("/api/v1/traces", params={"search": word}).json()["items"]
    assert [t["trace_id"] for t in found] == [tid]
    server.stop()

    engine = db.create_engine(url)
    db.downgrade(engine, "0019")
    with engine.connect() as conn:
        back = {s: (i, o, a) for s, i, o, a in conn.execute(
            sa.text("SELECT span_id, input_text, output_text, attributes FROM spans"))}
    engine.dispose()
    assert {s: (i, o, json.loads(a)) for s, (i, o, a) in back.items()} == \
        {s: (i, o, json.loads(a)) for s, (i, o, a) in rows.items()}
