#!/usr/bin/env python
"""Ingest with 1, 2 or 3 `tracehub serve` processes (replicas) sharing one PostgreSQL database:
spans/s from the first request until every span is queryable, with zero loss and no duplicate.

    .venv/bin/python bench/replicas.py                      # N = 1, 2, 3; 60,000 spans each
    .venv/bin/python bench/replicas.py --replicas 1,3 --rounds 2 --spans 100000

Each run makes a new database `tracehub_bench_<random>`, starts N servers on it one after the other
(the first migrates it), and has OTLP/HTTP senders (sender k sends to server k mod N) take requests
from one shared list, as a round-robin load balancer would spread them: a trace cut over two requests
may then reach two processes at once (the writer's reruns, `tracehub_writer_conflicts_total`, show
how often they met). `--spread blocks` gives each server a contiguous range of the requests instead,
as routing by trace id would. Then it waits until the REST API of the first server lists every span,
counts spans and trace rows in the database (no span twice, trace rows adding up) and drops the
database. `--rounds` alternates the N values, as the machine's speed drifts.

The workload, the senders and the readers are bench/ingest.py's; see bench/README.md.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import shutil
import string
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any, Callable, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parent.parent / "tests"))

from otlp_helpers import free_ports  # noqa: E402 - bench/ and tests/ are not packages
from procfs import db_backend_cpu, machine_speed_us, tree_cpu_seconds  # noqa: E402
from senders import ABORT, SendStats, http_sender  # noqa: E402
from server import MIB, VENV_PYTHON, http_get_json, log, server_metrics, stored_spans, tail, trace_count  # noqa: E402
from server import pg_admin_connect as _pg_admin_connect  # noqa: E402
from workload import build_workload  # noqa: E402

CONFLICTS = "tracehub_writer_conflicts_total"


class Replica:
    """One `tracehub serve` process on the shared database."""

    def __init__(self, python: str, database_url: str, workdir: str, log_level: str) -> None:
        port, hport, gport = free_ports(3)
        self.api_url = f"http://127.0.0.1:{port}"
        self.otlp_http = ("127.0.0.1", hport)
        self.log_path = os.path.join(workdir, f"server-{port}.log")
        env = {**os.environ, "TRACEHUB_DATABASE_URL": database_url, "TRACEHUB_LOG_LEVEL": log_level}
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [python, "-m", "tracehub", "serve", "--host", "127.0.0.1", "--port", str(port),
                 "--otlp-http-port", str(hport), "--otlp-grpc-port", str(gport)],
                cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{tail(self.log_path)}")
            try:
                if http_get_json(self.api_url + "/healthz", "", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not answer /healthz:\n{tail(self.log_path)}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _database_counts(dsn: str) -> dict[str, int]:
    """Spans, distinct (trace, span) keys, trace rows, the trace rows' span_count sum and the
    database's size (on disk, the search index and an empty database's ~8 MB included)."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*), count(DISTINCT (trace_id, span_id)) FROM spans").fetchone()
        assert row is not None
        spans, keys = row
        row = conn.execute("SELECT count(*), coalesce(sum(span_count), 0) FROM traces").fetchone()
        assert row is not None
        traces, counted = row
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return {"spans_in_db": spans, "distinct_spans": keys, "trace_rows": traces, "traces_span_count": int(counted),
            "database_bytes": size[0] if size else 0}


def _counters(requests: int, n: int, spread: str) -> list[Callable[[], int]]:
    """Per server, what its senders call for the index of the next request to send (`requests`
    or more when none is left). `requests`: every sender takes the next of one list, as a
    round-robin balancer would hand them out, so the two requests a trace was cut over go to two
    processes at once. `blocks`: server k has the k-th of n contiguous ranges, so a trace's
    requests reach one process (but at the n - 1 edges), as routing by trace id does."""
    if spread == "requests":
        return [itertools.count().__next__] * n  # atomic under the GIL

    def taker(block: Iterator[int]) -> Callable[[], int]:
        return lambda: next(block, requests)  # next() of a range iterator is atomic under the GIL

    return [taker(iter(range(requests * k // n, requests * (k + 1) // n))) for k in range(n)]


class Connections(threading.Thread):
    """The most PostgreSQL backends connected to `dbname` at once, sampled every 0.2 s."""

    def __init__(self, admin_dsn: str, dbname: str) -> None:
        super().__init__(daemon=True)
        self._admin, self._dbname = admin_dsn, dbname
        self._done = threading.Event()
        self.peak = 0

    def run(self) -> None:
        with _pg_admin_connect(self._admin) as conn:
            while not self._done.wait(0.2):
                row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                                   [self._dbname]).fetchone()
                self.peak = max(self.peak, row[0] if row else 0)

    def stop(self) -> int:
        self._done.set()
        self.join()
        return self.peak


def run_once(args: argparse.Namespace, n: int, work: Any, env_name: str) -> dict[str, Any]:
    name = "tracehub_bench_" + "".join(random.choices(string.ascii_lowercase + string.digits, k=10))
    admin = urllib.parse.urlsplit(args.pg_admin)
    host = f"{admin.username or 'postgres'}@{admin.hostname or '127.0.0.1'}:{admin.port or 5432}"
    with _pg_admin_connect(args.pg_admin) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    workdir = tempfile.mkdtemp(prefix="tracehub_bench_")
    replicas: list[Replica] = []
    try:
        for _ in range(n):  # one after the other: the first creates the tables
            replicas.append(Replica(args.python, f"postgresql+psycopg://{host}/{name}", workdir,
                                    args.server_log_level))
            replicas[-1].wait_healthy(args.start_timeout)
        api = replicas[0].api_url
        trace_count(api, args.api_key, env_name)  # the REST API answers before the clock starts
        stats = [SendStats() for _ in range(args.concurrency)]
        counters = _counters(len(work.bodies), n, args.spread)
        threads = [threading.Thread(target=http_sender, daemon=True, args=(
            replicas[k % n].otlp_http, args.api_key, False, work, counters[k % n], st, args.request_timeout,
            args.retry_budget)) for k, st in enumerate(stats)]
        pids = [r.proc.pid for r in replicas]
        server_cpu0 = sum(tree_cpu_seconds(p) or 0.0 for p in pids)
        db_cpu0 = db_backend_cpu(name)
        speed = machine_speed_us()
        connections = Connections(args.pg_admin, name)
        connections.start()
        t0 = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        acked = sum(st.acked_spans for st in stats)
        t_ack = max((st.last_ack or t0) for st in stats) - t0
        stored = 0
        deadline = time.perf_counter() + args.query_timeout
        while time.perf_counter() < deadline:
            stored = stored_spans(api, args.api_key, env_name, 4)[1]
            if stored >= work.spans:
                break
            time.sleep(0.2)
        t_query = time.perf_counter() - t0
        peak_connections = connections.stop()
        server_cpu = sum(tree_cpu_seconds(p) or 0.0 for p in pids) - server_cpu0
        db_cpu = sum(v - db_cpu0.get(k, 0.0) for k, v in db_backend_cpu(name).items())
        counts = _database_counts(f"postgresql://{host}/{name}")
        conflicts = sum(server_metrics(r.api_url, (CONFLICTS,)).get(CONFLICTS, 0.0) for r in replicas)
        return {
            "replicas": n, "spans": work.spans, "acked": acked, "stored": stored,
            "queryable_s": round(t_query, 2),
            "spans_per_s": round(work.spans / t_query) if stored >= work.spans else None,
            "acked_per_s": round(acked / t_ack) if t_ack > 0 else None,
            "retries": sum(st.retries for st in stats), "failed_requests": sum(st.failed_requests for st in stats),
            "conflicts": int(conflicts), "server_cpu_s": round(server_cpu, 1), "db_cpu_s": round(db_cpu, 1),
            "speed_us": speed, "peak_connections": peak_connections, **counts,
        }
    finally:
        for r in replicas:
            r.stop()
        with _pg_admin_connect(args.pg_admin) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(workdir, ignore_errors=True)


def ok(r: dict[str, Any]) -> bool:
    """Every span acknowledged, queryable and stored once; the trace rows count them all."""
    return (r["acked"] == r["spans"] == r["stored"] == r["spans_in_db"] == r["distinct_spans"]
            == r["traces_span_count"] and not r["failed_requests"])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/replicas.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--replicas", default="1,2,3", help="server processes of each run, comma separated")
    p.add_argument("--rounds", type=int, default=1, help="times each N is run, alternating")
    p.add_argument("--spans", type=int, default=60_000, help="spans a run (10 a trace)")
    p.add_argument("--batch-size", type=int, default=512, help="spans a request")
    p.add_argument("--concurrency", type=int, default=6, help="senders, spread over the servers")
    p.add_argument("--spread", choices=("requests", "blocks"), default="requests",
                   help="requests: one list for all senders, a trace's requests may reach several"
                        " servers at once (a round-robin balancer); blocks: a contiguous range of"
                        " requests a server, a trace's requests reach one (routing by trace id)")
    p.add_argument("--pg-admin", default="postgresql://postgres@127.0.0.1:5432/test",
                   help="libpq URL used to CREATE / DROP each run's database")
    p.add_argument("--python", default=str(VENV_PYTHON if VENV_PYTHON.exists() else sys.executable),
                   help="interpreter that runs `-m tracehub serve`")
    p.add_argument("--api-key", default="dev-key")
    p.add_argument("--server-log-level", default="warning")
    p.add_argument("--start-timeout", type=float, default=60.0)
    p.add_argument("--request-timeout", type=float, default=120.0)
    p.add_argument("--retry-budget", type=float, default=600.0)
    p.add_argument("--query-timeout", type=float, default=300.0)
    p.add_argument("--seed", type=int, default=None)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().getrandbits(32)
    env_name = f"bench-{seed:08x}-{os.getpid()}"
    work = build_workload(args.spans, args.batch_size, env_name, seed, False)
    log(f"{work.spans} spans in {len(work.bodies)} requests ({work.raw_bytes / MIB:.1f} MiB),"
        f" {work.split_traces} traces cut over two requests")
    ns = [int(v) for v in args.replicas.split(",")]
    results = []
    for _ in range(args.rounds):
        for n in ns:
            log(f"{n} replica(s) ...")
            r = run_once(args, n, work, env_name)
            results.append(r)
            ABORT.clear()
    print(f"{work.spans} spans in {len(work.bodies)} requests of {args.batch_size}, {args.concurrency} senders,"
          f" spread by {args.spread}")
    print(f"{'N':>2} {'spans/s':>8} {'acked/s':>8} {'until queryable':>15} {'conflicts':>9} {'retries':>7}"
          f" {'server CPU s':>12} {'PG CPU s':>8} {'PG conns':>8} {'DB MiB':>6} {'µs sum(1000)':>12}  counts")
    for r in results:
        print(f"{r['replicas']:>2} {r['spans_per_s'] or '-':>8} {r['acked_per_s'] or '-':>8} {r['queryable_s']:>14}s"
              f" {r['conflicts']:>9} {r['retries']:>7} {r['server_cpu_s']:>12} {r['db_cpu_s']:>8}"
              f" {r['peak_connections']:>8} {r['database_bytes'] / MIB:>6.0f}"
              f" {r['speed_us']:>12}  {'ok' if ok(r) else 'WRONG: ' + str(r)}")
    return 0 if all(ok(r) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
