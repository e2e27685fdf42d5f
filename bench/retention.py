#!/usr/bin/env python
"""Retention on a loaded database: how long the server's own pass takes to prune `--traces` traces,
and what it does to ingest going on meanwhile.

    .venv/bin/python bench/retention.py                       # SQLite, 100,000 traces (1M spans)
    .venv/bin/python bench/retention.py --traces 20000 --db postgres

1. A real `tracehub serve` on a fresh database (TRACEHUB_RETENTION_INTERVAL_S=1) is loaded with
   `ingest.py`'s traces (10 spans each, ~1 KB inputs and outputs), until queryable and indexed for
   search.
2. Every loaded trace is moved 40 days back with SQL (start, end and the server's last write).
3. Baseline: steady ingest of new traces of the same kind (`--rate` spans/s, one request of
   `--batch-size` spans at a time) for `--baseline-s` seconds, no retention.
4. Prune: `PATCH /api/v1/project {"retention_days": 30}`; the server's next pass deletes the old
   traces while the same steady ingest goes on, until none is left.
Printed: the prune's time from the PATCH and from the first trace gone to the last (traces and spans
a second), the writer's busy share, and for each phase the requests' latency (p50 / p99 / max) and
acknowledged spans a second; the database's size and free pages after.

`--partition` (PostgreSQL) measures the drop of a day's partition of spans instead
(tracehub/store/partitions.py): after step 1 the steady ingest starts, the active partition is
moved over a day back so the server's next pass rolls over, and after sql.SEQ_BLOCK_MAX_AGE_S and
a margin (the server gives up its block of trace numbers; new traces go to the next partition) the
old partition's traces, the steady ones that went there too, are aged as in step 2 and the next
partition's start is moved past partitions.GRACE_NS. Then baseline and prune as in steps 3 and 4,
until the old partition is gone: its trace rows in chunks, then DETACH CONCURRENTLY + DROP TABLE.
A watcher samples the database every WATCH_S for the chunks' transactions (they hold a lock on
span_search) and the DETACH.
"""

from __future__ import annotations

import argparse
import http.client
import os
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import ingest  # noqa: E402  (the workload, the server process, /metrics)
import orjson  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from tracehub.store import partitions  # noqa: E402
from tracehub.store.retention import CHUNK_TRACES  # noqa: E402
from tracehub.store.sql import SEQ_BLOCK_MAX_AGE_S  # noqa: E402

DAY_NS = 86_400 * 10**9
LOAD_ENV, STEADY_ENV = "retention-load", "retention-steady"
WATCH_S = 0.05


class Steady(threading.Thread):
    """Sends `work`'s requests one at a time at `rate` spans/s, each after the one before was
    answered (late ones go at once), recording each answer's latency and when it came."""

    def __init__(self, target: tuple[str, int], key: str, work: ingest.Workload, rate: float) -> None:
        super().__init__(daemon=True)
        self.target, self.key, self.work, self.rate = target, key, work, rate
        self.done: list[tuple[float, float, int]] = []  # (answered at, latency s, spans)
        self.refused = 0
        self.stop = threading.Event()

    def run(self) -> None:
        conn = http.client.HTTPConnection(*self.target, timeout=120)
        headers = {"Content-Type": "application/x-protobuf", "x-api-key": self.key}
        due = time.perf_counter()
        for body, spans in zip(self.work.bodies, self.work.span_counts):
            if self.stop.is_set():
                break
            self.stop.wait(max(0.0, due - time.perf_counter()))
            due += spans / self.rate
            while True:
                t = time.perf_counter()
                conn.request("POST", "/v1/traces", body, headers)
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    self.done.append((time.perf_counter(), time.perf_counter() - t, spans))
                    break
                self.refused += 1
                time.sleep(float(resp.getheader("retry-after") or 1))
        conn.close()

    def between(self, start: float, end: float) -> dict[str, Any]:
        got = [(lat, n) for at, lat, n in self.done if start <= at < end]
        lats = [lat for lat, _ in got]
        return {"requests": len(got), "spans_per_s": sum(n for _, n in got) / max(end - start, 1e-9),
                "p50_ms": _ms(ingest.pct(lats, 50)), "p90_ms": _ms(ingest.pct(lats, 90)),
                "p99_ms": _ms(ingest.pct(lats, 99)), "max_ms": _ms(max(lats) if lats else None),
                "over_250ms": sum(lat > 0.25 for lat in lats), "over_1s": sum(lat > 1 for lat in lats)}


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 1)


def api(handle: ingest.ServerHandle, method: str, path: str, key: str, body: Any = None) -> Any:
    u = handle.api_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(u[0], int(u[1]), timeout=60)
    try:
        conn.request(method, path, orjson.dumps(body) if body is not None else None,
                     {"x-api-key": key, "content-type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{method} {path}: {resp.status} {data[:300]!r}")
        return orjson.loads(data)
    finally:
        conn.close()


def load(handle: ingest.ServerHandle, key: str, work: ingest.Workload, senders: int) -> float:
    stats = ingest.SendStats()
    lock, nxt = threading.Lock(), [0]

    def counter() -> int:
        with lock:
            nxt[0] += 1
            return nxt[0] - 1

    started = time.perf_counter()
    threads = [threading.Thread(target=ingest.http_sender, args=(
        handle.otlp_http, key, False, work, counter, stats, 120.0, 600.0)) for _ in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if stats.failed_requests:
        raise RuntimeError(f"loading failed: {stats.errors[:3]}")
    return time.perf_counter() - started


def wait_indexed(handle: ingest.ServerHandle, key: str) -> float:
    started = time.perf_counter()
    while True:
        status, ready = ingest.http_get_json(handle.api_url + "/readyz", key)
        if status == 200 and ready["search_unindexed_rows"] == 0:
            return time.perf_counter() - started
        time.sleep(1)


class Watch(threading.Thread):
    """Samples partition `k` every WATCH_S on a connection of its own: its trace rows left, the
    retention chunks' transactions (holding SHARE ROW EXCLUSIVE on span_search) and how long each
    has run, when a DETACH of it started and when its table was gone (the database's clock)."""

    SAMPLE = sa.text(
        "SELECT clock_timestamp(), to_regclass(:t) IS NULL,"
        " (SELECT count(*) FROM traces WHERE seq >= :lo AND seq < :hi),"
        " (SELECT a.xact_start FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        "  WHERE l.relation = 'span_search'::regclass AND l.mode = 'ShareRowExclusiveLock' AND l.granted LIMIT 1),"
        " (SELECT min(query_start) FROM pg_stat_activity WHERE datname = current_database() AND state = 'active'"
        "  AND query LIKE 'ALTER TABLE spans DETACH PARTITION%')")

    def __init__(self, engine: sa.Engine, k: int) -> None:
        super().__init__(daemon=True)
        self.engine, self.k = engine, k
        self.left: int | None = None
        self.first_gone: float | None = None  # perf_counter, as Steady's
        self.rows_gone_db: Any = None  # database clock from here on
        self.detach_db: Any = None
        self.gone_db: Any = None
        self.chunks: dict[Any, float] = {}  # xact_start -> longest seen running
        self.dropped = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        lo, hi = partitions.bounds(self.k)
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            while not self.stop.wait(WATCH_S):
                now, gone, left, chunk, detach = conn.execute(
                    self.SAMPLE, {"t": partitions.name(self.k), "lo": lo, "hi": hi}).one()
                if self.left is not None and left < self.left and self.first_gone is None:
                    self.first_gone = time.perf_counter()
                if left == 0 and self.rows_gone_db is None:
                    self.rows_gone_db = now
                self.left = left
                if chunk is not None:
                    self.chunks[chunk] = max(self.chunks.get(chunk, 0.0), (now - chunk).total_seconds())
                if detach is not None and self.detach_db is None:
                    self.detach_db = detach
                if gone:
                    self.gone_db = now
                    self.dropped.set()
                    return


def age(engine: sa.Engine, below: int | None = None) -> None:
    """Moves the traces (numbered below `below`) 40 days back, then ANALYZE."""
    with engine.connect() as conn:
        seqs = conn.execute(sa.text("SELECT seq FROM traces" + (" WHERE seq < :b" if below else "") + " ORDER BY seq"),
                            {"b": below}).scalars().all()
    for i in range(0, len(seqs), 10_000):  # the writer's lock for a moment at a time
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE traces SET start_ns = start_ns - :d, end_ns = end_ns - :d,"
                                 " updated_ns = updated_ns - :d WHERE seq >= :lo AND seq <= :hi"),
                         {"d": 40 * DAY_NS, "lo": seqs[i], "hi": seqs[min(i + 10_000, len(seqs)) - 1]})
    # Real traces age with their statistics: without them PostgreSQL planned the prune's
    # re-check of a chunk on the start index and read every old trace (18 ms a chunk, not 0.3).
    with engine.begin() as conn:
        conn.execute(sa.text("ANALYZE traces"))


def roll_over(engine: sa.Engine) -> int:
    """Moves the active partition's start over a day back and waits for the server's pass to roll
    over; returns the partition left behind."""
    with engine.begin() as conn:
        k = int(conn.execute(sa.text("SELECT last_value FROM trace_seq")).scalar_one()) // partitions.STRIDE
        conn.execute(sa.text("UPDATE span_partitions SET started_ns = coalesce(started_ns, :now) - :d"
                             " WHERE number = :k"), {"now": time.time_ns(), "d": 2 * DAY_NS, "k": k})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if int(conn.execute(sa.text("SELECT last_value FROM trace_seq")).scalar_one()) // partitions.STRIDE > k:
                return k
        time.sleep(0.5)
    raise RuntimeError("the server's retention pass did not roll the partitions over within 60 s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--pg-admin", default="postgresql://postgres@127.0.0.1:5432/test")
    p.add_argument("--traces", type=int, default=100_000, help="traces loaded and then pruned (10 spans each)")
    p.add_argument("--rate", type=float, default=500.0, help="steady ingest, spans/s")
    p.add_argument("--batch-size", type=int, default=256, help="spans per steady request")
    p.add_argument("--baseline-s", type=float, default=60.0, help="steady ingest before the prune")
    p.add_argument("--steady-spans", type=int, default=1_200_000, help="steady spans built (the most sent)")
    p.add_argument("--partition", action="store_true",
                   help="PostgreSQL: the loaded traces' partition dropped whole, not their rows pruned")
    p.add_argument("--keep", action="store_true", help="keep the database")
    args = p.parse_args()
    if args.partition and args.db != "postgres":
        p.error("--partition needs --db postgres")
    args.python, args.server_log_level, args.start_timeout, args.api_key = (
        str(ingest.VENV_PYTHON), "info", 60.0, "dev-key")
    args.profile = args.cprofile = False
    args.profile_window = "send"

    loaded = ingest.build_workload(args.traces * 10, 512, LOAD_ENV, 1, False)
    steady = ingest.build_workload(args.steady_spans, args.batch_size, STEADY_ENV, 2, False)
    print(f"machine: sum(range(1000)) {ingest.machine_speed_us():.1f} µs; {args.db};"
          f" {loaded.traces:,} traces ({loaded.spans:,} spans) to prune, steady {args.rate:,.0f} spans/s"
          f" in requests of {args.batch_size}", flush=True)
    os.environ["TRACEHUB_RETENTION_INTERVAL_S"] = "1"
    os.environ["TRACEHUB_DECISIONS"] = "false"
    handle = ingest.start_server(args)
    url = (f"sqlite:///{handle.db_desc.split(' ', 1)[1]}" if args.db == "sqlite" else
           f"postgresql+psycopg://postgres@127.0.0.1:5432/{handle.pg_db}")
    engine = sa.create_engine(url)
    try:
        seconds = load(handle, args.api_key, loaded, 4)
        print(f"loaded in {seconds:.0f} s; search index caught up {wait_indexed(handle, args.api_key):.0f} s later",
              flush=True)
        sender = Steady(handle.otlp_http, args.api_key, steady, args.rate)
        watch = None
        if args.partition:
            sender.start()
            k = roll_over(engine)
            rolled = time.perf_counter()
            print(f"rolled over from {partitions.name(k)}; waiting {SEQ_BLOCK_MAX_AGE_S:.0f} s + 15 for the server"
                  " to give up its block of trace numbers", flush=True)
            time.sleep(max(0.0, rolled + SEQ_BLOCK_MAX_AGE_S + 15 - time.perf_counter()))
            hi = partitions.bounds(k)[1]
            with engine.connect() as conn:
                newer = conn.execute(sa.text("SELECT count(*) FROM traces WHERE seq >= :hi"), {"hi": hi}).scalar_one()
            if not newer:
                raise RuntimeError("no trace went to the next partition: is the steady ingest running?")
            aged = time.perf_counter()
            age(engine, hi)
            with engine.begin() as conn:
                conn.execute(sa.text("UPDATE span_partitions SET started_ns = started_ns - :d WHERE number = :k"),
                             {"d": partitions.GRACE_NS + 60 * 10**9, "k": k + 1})
                total, spans_total = (conn.execute(sa.text(q), {"hi": hi}).scalar_one() for q in (
                    "SELECT count(*) FROM traces WHERE seq < :hi", f"SELECT count(*) FROM {partitions.name(k)}"))
            print(f"aged {total:,} traces ({spans_total:,} spans; {total - loaded.traces:,} of them steady ones"
                  f" from before the roll-over) in {time.perf_counter() - aged:.0f} s", flush=True)
            watch = Watch(engine, k)
            watch.start()
        else:
            aged = time.perf_counter()
            age(engine)
            print(f"aged in {time.perf_counter() - aged:.0f} s", flush=True)
            total, spans_total = loaded.traces, loaded.spans

        busy0 = ingest.writer_counters(handle.api_url)
        base_start = time.perf_counter()
        if not sender.is_alive():
            sender.start()
        time.sleep(args.baseline_s)
        busy1 = ingest.writer_counters(handle.api_url)
        patched = time.perf_counter()
        api(handle, "PATCH", "/api/v1/project", args.api_key, {"retention_days": 30})
        first_gone = ran_out = None
        while True:
            if watch is not None:
                if watch.dropped.wait(0.2) or not watch.is_alive():
                    first_gone = watch.first_gone
                    break
            else:
                left = int(api(handle, "GET", f"/api/v1/traces?page_size=1&environment={LOAD_ENV}",
                               args.api_key)["total"])
                if left < total and first_gone is None:
                    first_gone = time.perf_counter()
                if left == 0:
                    break
                time.sleep(0.2)
            if not sender.is_alive() and ran_out is None:
                ran_out = time.perf_counter()
                print("the steady workload ran out (raise --steady-spans); pruning goes on alone", flush=True)
        ended = time.perf_counter()
        busy2 = ingest.writer_counters(handle.api_url)
        sender.stop.set()
        sender.join()
        if watch is not None and not watch.dropped.is_set():
            raise RuntimeError("the partition watcher stopped before the partition went")
        assert first_gone is not None
        base = sender.between(base_start + 2, patched)
        during = sender.between(first_gone, ran_out or ended)
        prune_s = ended - first_gone
        print(f"pruned {total:,} traces ({spans_total:,} spans) in {prune_s:.0f} s"
              f" ({total / prune_s:,.0f} traces/s, {spans_total / prune_s:,.0f} spans/s);"
              f" first trace gone {first_gone - patched:.1f} s after the PATCH")
        if watch is not None:
            assert watch.gone_db is not None and watch.rows_gone_db is not None
            seen = watch.chunks.values()
            tail = (watch.gone_db - watch.rows_gone_db).total_seconds()
            detach = ("too short to be seen" if watch.detach_db is None else
                      f"{(watch.gone_db - watch.detach_db).total_seconds():.2f} s")
            print(f"trace rows: {-(-total // CHUNK_TRACES)} chunks of {CHUNK_TRACES} traces, {len(seen)} seen running"
                  f" (sampled every {WATCH_S * 1000:.0f} ms), the longest at least {max(seen, default=0):.2f} s;"
                  f" the last trace row gone -> the partition gone {tail:.2f} s, DETACH + DROP {detach}")
        if busy0 and busy1 and busy2:
            print(f"writer busy: baseline {(busy1[0] - busy0[0]) / (patched - base_start):.0%},"
                  f" while pruning {(busy2[0] - busy1[0]) / (ended - patched):.0%}")
        for name, phase in (("baseline", base), ("pruning", during)):
            print(f"steady ingest, {name:8}: {phase['spans_per_s']:7,.0f} spans/s acked, {phase['requests']} requests,"
                  f" latency p50 {phase['p50_ms']} ms, p90 {phase['p90_ms']} ms, p99 {phase['p99_ms']} ms,"
                  f" max {phase['max_ms']} ms; over 250 ms: {phase['over_250ms']}, over 1 s: {phase['over_1s']}")
        log_text = Path(handle.log_path or "").read_text
        deadline = time.monotonic() + 10  # the pass logs its project's line after the DROP
        while watch and "retention: project" not in log_text(errors="replace") and time.monotonic() < deadline:
            time.sleep(0.2)
        passes = [line for line in log_text(errors="replace").splitlines() if "retention: " in line]
        for line in passes:
            print("server:", line.split("retention: ", 1)[1])
        print(f"refused (429/503) requests: {sender.refused}")
        if args.db == "sqlite":
            path = handle.db_desc.split(" ", 1)[1]
            with sqlite3.connect(path) as conn:
                pages, free, size = (conn.execute(f"PRAGMA {x}").fetchone()[0]
                                     for x in ("page_count", "freelist_count", "page_size"))
            print(f"database: {pages * size / 2**30:.2f} GiB, of which {free * size / 2**30:.2f} GiB free pages"
                  " (reused by new rows)")
    finally:
        engine.dispose()
        ingest.stop_server(handle)
        ingest.cleanup(handle, args.keep)


if __name__ == "__main__":
    main()
