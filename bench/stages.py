#!/usr/bin/env python3
"""CPU a span of each ingest stage, one stage at a time: what `ingest.py` measures end to end, taken
apart so a change to one stage can be compared with its parent without the other stages, the
client and the machine's other load moving the figure (end to end, the same code varies by ±10%).

Stages, on `ingest.py`'s workload (10-span agent traces, ~1 KB inputs and outputs):
- decode: what a decode worker does with a request body (protobuf parse, attributes, mapping,
  pricing, row encoding) and the encoding of its answer;
- receive: what the server's event loop does with that answer (decoding it, rebuilding records);
- write: the real writer (`tracehub.store.writer.Writer`) storing the decoded requests into a
  fresh database, as many queued as the server queues under load: its thread's CPU, the
  database backends' CPU (PostgreSQL) and the wall time, each per span stored.

Each stage is repeated and every repetition printed; compare minima and medians, and compare two
commits by running this file with PYTHONPATH pointing at each checkout in turn.

    .venv/bin/python bench/stages.py                         # SQLite
    .venv/bin/python bench/stages.py --db postgres --repeat 6
"""

from __future__ import annotations

import argparse
import gc
import marshal
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).parent))

import ingest  # noqa: E402  (the workload and the /proc readers)
import psycopg  # noqa: E402
from tracehub.collector import decoding, otlp  # noqa: E402
from tracehub.collector.pricing import Pricing  # noqa: E402
from tracehub.records import Batch  # noqa: E402
from tracehub.store import db, keys  # noqa: E402
from tracehub.store.writer import Writer  # noqa: E402

PROJECT = 1  # the default project of a fresh database
GC_THRESHOLDS = (50_000, 20, 100)  # tracehub.server's
QUEUED_REQUESTS = 8  # requests waiting for the writer, as under the benchmark's load


def cpu_per_span(repeat: int, spans: int, stage: Callable[[], Any]) -> list[float]:
    """CPU µs a span of each run of `stage` (this thread's CPU: the stages run in it)."""
    out = []
    for _ in range(repeat):
        started = time.thread_time()
        stage()
        out.append((time.thread_time() - started) / spans * 1e6)
    return out


def thread_cpu(name: str) -> float:
    """CPU seconds of this process's threads named `name` (the writer names its OS thread)."""
    total = 0.0
    for tid in os.listdir("/proc/self/task"):
        found = ingest.proc_stat(f"/proc/self/task/{tid}/stat")
        if found is not None and found[0] == name:
            total += found[1]
    return total


def write_once(url: str, dbname: str | None, answers: list[Any]) -> dict[str, float]:
    """The writer's thread CPU, the backends' CPU (`dbname`: PostgreSQL) and the wall time per span
    stored, for the decoded requests `answers` written into the fresh database at `url`."""
    engine = db.create_engine(url)
    db.migrate(engine)
    keys.ensure_default_project(engine)
    engine.dispose()
    writer = Writer(engine)
    writer.start()
    try:
        batches = [Batch(PROJECT, d.spans, [], resources=d.resources) for d in map(decoding.received, answers)]
        writer0, backend0 = thread_cpu("th-writer"), sum(ingest.db_backend_cpu(dbname).values())
        started = time.perf_counter()
        futures = []
        for batch in batches:
            while writer.queued_spans >= QUEUED_REQUESTS * len(batch):
                time.sleep(0.001)
            futures.append(writer.submit(batch))
        stored = sum(f.result().spans_stored for f in futures)
        wall = time.perf_counter() - started
        writer1, backend1 = thread_cpu("th-writer"), sum(ingest.db_backend_cpu(dbname).values())
    finally:
        writer.stop()
        engine.dispose()
    return {"writer": (writer1 - writer0) / stored * 1e6, "backends": (backend1 - backend0) / stored * 1e6,
            "wall": wall / stored * 1e6}


def summary(values: list[float]) -> str:
    runs = " ".join(f"{v:.1f}" for v in values)
    return f"min {min(values):5.1f}  median {statistics.median(values):5.1f}   ({runs})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--pg-admin", default="postgresql://postgres@127.0.0.1:5432/test",
                   help="libpq URL used to CREATE / DROP each run's PostgreSQL database")
    p.add_argument("--spans", type=int, default=30_720, help="spans per run (10 per trace)")
    p.add_argument("--batch-size", type=int, default=512, help="spans per request")
    p.add_argument("--repeat", type=int, default=5, help="runs of each stage")
    p.add_argument("--seed", type=int, default=11)
    args = p.parse_args()

    work = ingest.build_workload(args.spans, args.batch_size, "stages", args.seed, False)
    pg = args.db == "postgres"
    pricing = Pricing.load()  # and on PostgreSQL NUL replaced, as the server has its workers do
    answers = [decoding.decode_rows(body, "protobuf", PROJECT, pricing, pg) for body in work.bodies]
    encoded = [marshal.dumps(a) for a in answers]
    # The collector as the server and its workers set it up (`tracehub.server`), so it does not
    # walk this process's workload again and again.
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    print(f"workload: {work.spans:,} spans in {len(work.bodies)} requests of {args.batch_size};"
          f" machine: sum(range(1000)) {ingest.machine_speed_us():.1f} µs (lower is faster);"
          f" OTLP read by {'the C reader' if getattr(otlp, 'WIRE_READER', False) else 'protobuf'}")

    decode = cpu_per_span(args.repeat, work.spans, lambda: [
        marshal.dumps(decoding.decode_rows(body, "protobuf", PROJECT, pricing, pg)) for body in work.bodies])
    receive = cpu_per_span(args.repeat, work.spans, lambda: [
        decoding.received(marshal.loads(data)) for data in encoded])
    print(f"decode   (worker)      µs a span: {summary(decode)}")
    print(f"receive  (event loop)  µs a span: {summary(receive)}")

    runs: list[dict[str, float]] = []
    for _ in range(args.repeat):
        answers = [marshal.loads(data) for data in encoded]  # as the server receives them
        if pg:
            name = "tracehub_stages_" + secrets.token_hex(5)
            u = urllib.parse.urlsplit(args.pg_admin)
            url = f"postgresql+psycopg://{u.username or 'postgres'}@{u.hostname or '127.0.0.1'}:{u.port or 5432}/{name}"
            with psycopg.connect(args.pg_admin, autocommit=True) as admin:
                admin.execute(f"CREATE DATABASE {name}")
                try:
                    runs.append(write_once(url, name, answers))
                finally:
                    admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        else:
            folder = tempfile.mkdtemp(prefix="tracehub_stages_")
            try:
                runs.append(write_once(f"sqlite:///{folder}/tracehub.db", None, answers))
            finally:
                shutil.rmtree(folder)
    print(f"write    writer thread µs a span: {summary([r['writer'] for r in runs])}")
    if pg:
        print(f"         backends      µs a span: {summary([r['backends'] for r in runs])}")
    print(f"         wall          µs a span: {summary([r['wall'] for r in runs])}")


if __name__ == "__main__":
    main()
