#!/usr/bin/env python3
"""What the stats roll-ups' triggers cost the writer: trace rows written as the writer writes them,
into a store without the roll-ups' triggers (dropped after migrating) and one with them, alternated.

SQLite: the writer's upsert, `executemany` in transactions of 50 new traces, with the server's
pragmas; the CPU of this process. PostgreSQL: a COPY of 200 new traces a transaction and the
upserts pipelined; the CPU of the database backend (read from /proc: the database on this
machine). A fifth of the traces (`--rewrite`) is written again with one more span, as a trace
whose spans come in two requests is. Rows are ~2 KB, like the benchmark's.

    .venv/bin/python bench/rollup_cost.py                 # SQLite
    .venv/bin/python bench/rollup_cost.py --db postgres
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).parent.parent))

import psycopg  # noqa: E402

from tracehub.store import db, keys, tracerow  # noqa: E402

REVISIONS = ("without", "with")  # the roll-ups' triggers
TRIGGERS = ("trace_hours_insert", "trace_hours_update", "trace_hours_delete", "trace_hours_eval_insert",
            "trace_hours_eval_update", "trace_hours_eval_delete")
COLUMNS = list(tracerow.TRACE_COLUMNS)
UPSERT = (f"INSERT INTO traces ({', '.join(COLUMNS)}) VALUES ({{params}})"
          f" ON CONFLICT (project_id, trace_id) DO UPDATE SET "
          + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS if c not in ("project_id", "trace_id", "seq")))


def trace_row(i: int, spans: int, now: int, rng: random.Random) -> tuple[Any, ...]:
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    start = now - 3 * 3_600_000_000_000 + i * 300_000_000
    row.update(project_id=1, trace_id=f"{i:032x}", status="success", start_ns=start,
               end_ns=start + rng.randrange(10**9, 10**10), span_count=spans, running_span_count=0,
               missing_parent_count=0, error_count=0, input_tokens=100, output_tokens=50, cost_usd=0.001,
               updated_ns=now, seq=i + 1, last_span_ns=now, graph_name="g", name="agent",
               input_text="q" * 1000, output_text="a" * 1000, own_text=False)
    return tuple(row[c] for c in COLUMNS)


def prepare(engine: Any, revision: str) -> None:
    """A migrated store with the default project, without the roll-ups' triggers for "without"."""
    db.migrate(engine)
    keys.ensure_default_project(engine)
    if revision == "without":
        on = "" if engine.dialect.name == "sqlite" else " ON traces"
        with engine.begin() as conn:
            for trigger in TRIGGERS:
                table = "evaluation_results" if "eval" in trigger else "traces"
                conn.exec_driver_sql(f"DROP TRIGGER {trigger}" + (on.replace("traces", table) if on else ""))
    engine.dispose()


def sqlite_run(revision: str, traces: int, rewrite: float) -> float:
    """CPU µs a trace."""
    with tempfile.TemporaryDirectory(prefix="tracehub_bench_") as tmp:
        path = f"{tmp}/rollups.db"
        engine = db.create_engine(f"sqlite:///{path}")
        prepare(engine, revision)
        conn = sqlite3.connect(path, isolation_level=None)
        for pragma in db.SQLITE_PRAGMAS:
            conn.execute(pragma)
        sql = UPSERT.format(params=", ".join("?" * len(COLUMNS)))
        rng, now = random.Random(1), time.time_ns()
        again = int(50 * rewrite)
        t = time.process_time()
        for b in range(0, traces, 50):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(sql, [trace_row(i, 10, now, rng) for i in range(b, b + 50)])
            conn.executemany(sql, [trace_row(i, 11, now, rng) for i in range(b, b + again)])
            conn.execute("COMMIT")
        spent = time.process_time() - t
        conn.close()
    return spent / traces * 1e6


def postgres_run(revision: str, traces: int, rewrite: float, admin_url: str) -> float:
    """The backend's CPU µs a trace."""
    name = f"tracehub_bench_rollups_{revision}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name}")
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        engine = db.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
        prepare(engine, revision)
        with psycopg.connect(url) as conn:
            backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
            conn.commit()

            def cpu() -> float:
                fields = Path(f"/proc/{backend}/stat").read_text().split(")")[1].split()
                return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

            sql = UPSERT.format(params=", ".join(["%s"] * len(COLUMNS)))
            rng, now = random.Random(1), time.time_ns()
            again = int(200 * rewrite)
            cur = conn.cursor()
            before = cpu()
            for b in range(0, traces, 200):
                with cur.copy(f"COPY traces ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                    for i in range(b, b + 200):
                        copy.write_row(trace_row(i, 10, now, rng))
                if again:
                    with conn.pipeline():
                        cur.executemany(sql, [trace_row(i, 11, now, rng) for i in range(b, b + again)])
                conn.commit()
            spent = cpu() - before
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    return spent / traces * 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--pg-admin", default="postgresql://postgres@127.0.0.1:5432/test")
    p.add_argument("--traces", type=int, default=20_000)
    p.add_argument("--rewrite", type=float, default=0.2, help="share of the traces written a second time")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    run: Callable[[str], float] = ((lambda r: sqlite_run(r, args.traces, args.rewrite)) if args.db == "sqlite"
                                   else (lambda r: postgres_run(r, args.traces, args.rewrite, args.pg_admin)))
    found: dict[str, list[float]] = {r: [] for r in REVISIONS}
    for _ in range(args.rounds):
        for revision in REVISIONS:
            found[revision].append(run(revision))
            print(f"{args.db} {revision}: {found[revision][-1]:.1f} µs a trace", flush=True)
    low, high = (statistics.median(found[r]) for r in REVISIONS)
    print(f"{args.db}: median {low:.1f} -> {high:.1f} µs of CPU a trace ({args.traces:,} traces,"
          f" {args.rewrite:.0%} written again): +{high - low:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
