#!/usr/bin/env python3
"""The search index under sustained ingest: how far it falls behind, and what searches cost meanwhile.

A `tracehub serve` of its own (bench/ingest.py's server start, a new database) takes OTLP/HTTP at a
steady rate (`--rate` spans/s, bench/ingest.py's agent traces in requests of 512 spans from four
connections on one schedule, built a few chunks ahead in other processes) for `--duration`
seconds. Every `--sample` seconds it reads `/readyz` (`search_unindexed_rows`, `search_lag_s`)
and times two searches of the newest 50: a
phrase found nowhere (which reads the index and scans every row not yet in it) and a common one.
Then it waits until the index has caught up. Target (issue 21): at 10,000 spans/s for 5 minutes
the lag stays under 30 s and the searches within their targets (100 ms and 200 ms).

    .venv/bin/python bench/search_lag.py                            # SQLite, 10,000 spans/s, 300 s
    .venv/bin/python bench/search_lag.py --rate 2000 --duration 60
    .venv/bin/python bench/search_lag.py --db postgres
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import queue
import sys
import threading
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import ingest  # noqa: E402  (the sibling benchmark: workload, server start, senders)
import reads  # noqa: E402

CHUNK_SPANS = 51_200  # 100 requests of 512
SENDERS = 4
SEARCHES = {"found nowhere": "purple elephant", "common phrase": "refund policy"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--pg-admin", default="postgresql://postgres@127.0.0.1:5432/test")
    p.add_argument("--rate", type=int, default=10_000, help="spans a second sent")
    p.add_argument("--duration", type=float, default=300.0, help="seconds of sending")
    p.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    p.add_argument("--keep", action="store_true")
    return p.parse_args(argv)


def _build(k: int) -> tuple[list[bytes], list[int]]:
    work = ingest.build_workload(CHUNK_SPANS, 512, f"lag-{k % 5}", 1000 + k, False)
    return work.bodies, work.span_counts


def send(handle: ingest.ServerHandle, rate: int, duration: float, stop: threading.Event) -> tuple[int, float]:
    """Requests on a fixed schedule from SENDERS connections; chunks are built in other processes,
    a few ahead. (spans acknowledged, seconds)."""
    n_chunks = int(rate * duration / CHUNK_SPANS) + 1
    requests: queue.Queue[tuple[bytes, int] | None] = queue.Queue(maxsize=300)
    acked = [0] * SENDERS
    start = time.perf_counter()

    def feed() -> None:
        with concurrent.futures.ProcessPoolExecutor(2) as pool:
            for bodies, counts in pool.map(_build, range(n_chunks)):
                for request in zip(bodies, counts):
                    if stop.is_set():
                        break
                    requests.put(request)
        for _ in range(SENDERS):
            requests.put(None)

    def sender(i: int) -> None:
        conn = http.client.HTTPConnection(*handle.otlp_http, timeout=60)
        headers = {"Content-Type": "application/x-protobuf", "x-api-key": "dev-key"}
        while True:
            item = requests.get()
            if item is None or stop.is_set():
                return
            body, spans = item
            with lock:
                due = start + scheduled[0] / rate
                scheduled[0] += spans
            time.sleep(max(0.0, due - time.perf_counter()))
            if time.perf_counter() - start >= duration:
                stop.set()
                return
            conn.request("POST", "/v1/traces", body, headers)
            answer = conn.getresponse()
            answer.read()
            if answer.status == 200:
                acked[i] += spans

    lock, scheduled = threading.Lock(), [0]
    threading.Thread(target=feed, daemon=True).start()
    threads = [threading.Thread(target=sender, args=(i,), daemon=True) for i in range(SENDERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(acked), time.perf_counter() - start


def sample(api: str) -> dict[str, float]:
    _status, state = ingest.http_get_json(api + "/readyz", "dev-key")  # 503 while overloaded: same body
    row = {"unindexed": state.get("search_unindexed_rows", 0), "lag_s": state.get("search_lag_s", 0.0)}
    for label, q in SEARCHES.items():
        t0 = time.perf_counter()
        reads.get_json(api, "/api/v1/traces?page_size=50&search=" + urllib.parse.quote(q))
        row[label] = (time.perf_counter() - t0) * 1000
    return row


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    handle = ingest.start_server(reads.server_args(args))
    api = handle.api_url
    stop = threading.Event()
    result: dict[str, tuple[int, float]] = {}
    sender = threading.Thread(target=lambda: result.update(sent=send(handle, args.rate, args.duration, stop)))
    try:
        ingest.log(f"server up ({handle.db_desc}); sending {args.rate:,} spans/s for {args.duration:.0f} s")
        print(f"{'t (s)':>6} {'unindexed rows':>15} {'lag (s)':>8} "
              + " ".join(f"{label + ' (ms)':>20}" for label in SEARCHES))
        t0 = time.perf_counter()
        sender.start()
        worst = {"lag_s": 0.0, **{label: 0.0 for label in SEARCHES}}
        while sender.is_alive():
            sender.join(args.sample)
            row = sample(api)
            worst = {k: max(v, row[k]) for k, v in worst.items()}
            print(f"{time.perf_counter() - t0:6.0f} {row['unindexed']:15,} {row['lag_s']:8.1f} "
                  + " ".join(f"{row[label]:20.1f}" for label in SEARCHES), flush=True)
        sent, seconds = result["sent"]
        caught_up = time.perf_counter()
        while ingest.http_get_json(api + "/readyz", "dev-key")[1].get("search_unindexed_rows"):
            time.sleep(1)
        print(f"sent {sent:,} spans in {seconds:.0f} s ({sent / seconds:,.0f} spans/s); the index caught up"
              f" {time.perf_counter() - caught_up:.0f} s after sending stopped")
        print(f"worst: lag {worst['lag_s']:.0f} s (target < 30), "
              + ", ".join(f"{label} {worst[label]:.0f} ms" for label in SEARCHES)
              + " (targets 100 / 200 ms)")
    finally:
        stop.set()
        ingest.stop_server(handle)
        ingest.cleanup(handle, args.keep)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
