"""What a benchmark's database holds a stored span, by part (spans, search index, traces, other),
measured once the search index covers every row, against the span's OTLP protobuf size."""

from __future__ import annotations

import os
import sqlite3
import time
import urllib.parse
from typing import Any

from server import http_get_json


def wait_for_index(api_url: str, key: str, timeout: float) -> dict[str, Any]:
    """Poll GET /readyz until the search index covers every committed row (`search_unindexed_rows`
    0) or `timeout` s pass: the stored bytes are then measured with the index complete."""
    t = time.perf_counter()
    first: dict[str, Any] | None = None
    last: dict[str, Any] = {}
    polls = 0
    while True:
        polls += 1
        try:
            status, doc = http_get_json(f"{api_url}/readyz", key, timeout=30)
        except OSError as exc:
            status, doc = 0, {"error": str(exc)}
        if isinstance(doc, dict) and "search_unindexed_rows" in doc:
            last = doc
            first = first or doc
            if doc["search_unindexed_rows"] == 0:
                break
        elif status in (200, 503):
            return {"caught_up": None, "error": "GET /readyz does not report search_unindexed_rows"}
        if time.perf_counter() - t > timeout:
            break
        time.sleep(0.5)
    left = last.get("search_unindexed_rows")
    return {"caught_up": left == 0, "rows_left": left, "wait_s": round(time.perf_counter() - t, 2),
            "polls": polls, "rows_at_start": (first or {}).get("search_unindexed_rows"),
            "lag_s_at_start": (first or {}).get("search_lag_s")}


def store_group(table: str) -> str:
    """The part of the storage a table counts in, with its indexes (and TOAST on PostgreSQL):
    FTS5 tables and their shadow / vocab tables on SQLite and the *_search document tables on
    PostgreSQL are the search index; the trace rows and their hourly roll-ups are traces."""
    if table == "spans":
        return "spans"
    if "_fts" in table or table.endswith(("_vocab", "_search")):
        return "search"
    if table == "traces" or table.startswith("trace_hour"):
        return "traces"
    return "other"


def sqlite_stored(path: str) -> dict[str, Any]:
    """Bytes of the pages each table uses with its indexes (dbstat), read from a read-only
    connection beside the running server (the WAL's newer pages included), and the file sizes."""
    conn = sqlite3.connect(f"file:{urllib.parse.quote(path)}?mode=ro", uri=True, timeout=60)
    try:
        owner = dict(conn.execute("SELECT name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')"))
        tables: dict[str, int] = {}
        btrees: dict[str, int] = {}
        for name, size in conn.execute("SELECT name, pgsize FROM dbstat WHERE aggregate = TRUE"):
            table = owner.get(name, name)
            tables[table] = tables.get(table, 0) + int(size)
            btrees[name] = int(size)
        span_rows = conn.execute("SELECT count(*) FROM spans").fetchone()[0]
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0] * page
    finally:
        conn.close()
    wal = path + "-wal"
    # the largest tables and indexes each on its own
    return {"tables": tables, "span_rows": span_rows,
            "btrees": dict(sorted(btrees.items(), key=lambda kv: -kv[1])[:12]),
            "files": {"main": os.path.getsize(path), "wal": os.path.getsize(wal) if os.path.exists(wal) else 0,
                      "free_pages": free}}


def pg_stored(dsn: str) -> dict[str, Any]:
    """pg_total_relation_size (heap, TOAST, indexes) of each table, partitions counted under
    their root, and pg_database_size (the catalogs included)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT r.relname, pg_total_relation_size(c.oid), pg_table_size(c.oid),"
            " pg_indexes_size(c.oid) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " JOIN pg_class r ON r.oid = coalesce(pg_partition_root(c.oid), c.oid)"
            " WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
            " AND n.nspname NOT LIKE 'pg_toast%'").fetchall()
        span_rows = conn.execute("SELECT count(*) FROM spans").fetchone()[0]  # type: ignore[index]
        db_size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]  # type: ignore[index]
    tables: dict[str, int] = {}
    split: dict[str, list[int]] = {}  # table (heap, TOAST) and its indexes
    for name, size, table_size, index_size in rows:
        tables[name] = tables.get(name, 0) + int(size)
        both = split.setdefault(name, [0, 0])
        both[0] += int(table_size)
        both[1] += int(index_size)
    largest = sorted(split.items(), key=lambda kv: -sum(kv[1]))[:6]
    return {"tables": tables, "span_rows": span_rows, "database_bytes": int(db_size),
            "table_and_indexes": {k: {"table": v[0], "indexes": v[1]} for k, v in largest}}


def measure_stored(store_db: str, otlp_bytes_per_span: float) -> dict[str, Any]:
    """What the database holds a stored span, by part, against the span's OTLP protobuf size."""
    pg = store_db.startswith(("postgresql:", "postgres:"))
    t = time.perf_counter()
    found = pg_stored(store_db) if pg else sqlite_stored(store_db)
    groups = dict.fromkeys(("spans", "search", "traces", "other"), 0)
    for table, size in found["tables"].items():
        groups[store_group(table)] += size
    total = sum(groups.values())
    n = found["span_rows"]
    found["tables"] = dict(sorted(found["tables"].items(), key=lambda kv: -kv[1]))
    return {"database": "postgresql" if pg else "sqlite", **found, "bytes": {**groups, "total": total},
            "bytes_per_span": {k: round(v / n) for k, v in {**groups, "total": total}.items()} if n else None,
            "otlp_bytes_per_span": round(otlp_bytes_per_span),
            "ratio": round(total / n / otlp_bytes_per_span, 3) if n else None,
            "measure_s": round(time.perf_counter() - t, 2)}

