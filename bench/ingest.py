#!/usr/bin/env python
"""OTLP ingest benchmark for LLM Trace Hub: spans/s from the first request until every span is
queryable through the REST API, with zero loss, plus server memory, start time, the bytes the
database stores a span once the search index caught up, and (optionally) a profile of where the
server spends its time.

Typical runs (from the repository root, with the project's virtualenv):

    .venv/bin/python bench/ingest.py                          # sqlite, OTLP/HTTP, 100k spans
    .venv/bin/python bench/ingest.py --db postgres --transport grpc
    .venv/bin/python bench/ingest.py --profile                # py-spy (or cProfile) top functions
    .venv/bin/python bench/ingest.py --url http://127.0.0.1:8000 --grpc 127.0.0.1:4317 --transport grpc

What is timed: only sending pre-built request bodies and reading the REST API. Every trace, span
and request body (protobuf bytes, gzip if asked) is built before the clock starts, so the client's
share of the 2 cores is a socket write and a status check per request.
The parts: workload.py (the traces), senders.py (the load), server.py and procfs.py (the server
process and what it uses), stored.py (bytes a span), report.py (the text and the targets).
See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

from procfs import (
    RssSampler,
    db_backend_cpu,
    machine_busy_seconds,
    machine_speed_us,
    proc_stat,
    read_pss,
    read_status,
    server_pids,
    thread_cpu_seconds,
    tree_cpu_seconds,
)
from report import cprofile_report, index_note, ms, pct, pyspy_report, render
from senders import ABORT, SendStats, grpc_sender, http_sender, warm_up_grpc
from server import (
    MIB,
    VENV_PYTHON,
    ServerHandle,
    activate_policy,
    auto_decisions,
    cleanup,
    get_times,
    http_get_json,
    log,
    server_code_version,
    start_server,
    stop_server,
    stored_spans,
    tail,
    timed_get,
    trace_count,
    writer_counters,
)
from stored import measure_stored, wait_for_index
from workload import TextPool, Workload, build_workload
from workload import messages_in as _messages_in
from workload import messages_out as _messages_out

sys.path.append(str(Path(__file__).resolve().parent.parent / "tests"))  # otlp_helpers, shared with the tests
from otlp_helpers import key_values as _kvs  # noqa: E402

# reads.py, retention.py, search_lag.py, stages.py and ui.py reach these as `ingest.<name>`.
__all__ = ["SendStats", "ServerHandle", "TextPool", "VENV_PYTHON", "Workload", "_kvs", "_messages_in",
           "_messages_out", "build_workload", "cleanup", "db_backend_cpu", "get_times", "http_get_json",
           "http_sender", "log", "machine_speed_us", "parse_args", "pct", "proc_stat", "server_code_version",
           "start_server", "stop_server", "writer_counters"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/ingest.py",
        description="OTLP ingest benchmark for LLM Trace Hub: spans/s until queryable, loss, "
                    "latency, server RSS and start time. Spawns its own server with a fresh "
                    "database unless --url is given.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("server")
    g.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite",
                   help="database of the spawned server: a temp SQLite file, or a new PostgreSQL "
                        "database tracehub_bench_<random> that is dropped afterwards")
    g.add_argument("--pg-admin", default="postgresql://postgres@127.0.0.1:5432/test",
                   help="libpq URL used to CREATE / DROP the benchmark database")
    g.add_argument("--url", default=None,
                   help="use an already running server: its REST base URL (e.g. http://127.0.0.1:8000);"
                        " RSS/start time are then not measured")
    g.add_argument("--otlp-url", default=None,
                   help="with --url: OTLP/HTTP base URL (default: --url, which also serves /v1/traces)")
    g.add_argument("--grpc", default=None, help="with --url: OTLP/gRPC target host:port")
    g.add_argument("--store-db", default=None, metavar="PATH_OR_URL",
                   help="with --url: that server's database, a SQLite file or a postgresql:// URL, to "
                        "measure stored bytes a span in (over every span it holds); else not measured")
    g.add_argument("--python", default=str(VENV_PYTHON if VENV_PYTHON.exists() else sys.executable),
                   help="interpreter that runs `-m tracehub serve`")
    g.add_argument("--api-key", default="dev-key", help="sent as x-api-key")
    g.add_argument("--server-log-level", default="warning", help="TRACEHUB_LOG_LEVEL of the server")
    g.add_argument("--start-timeout", type=float, default=60.0, help="seconds to wait for /healthz")
    g.add_argument("--idle-wait", type=float, default=1.0,
                   help="seconds to let the started server settle before sampling idle RSS")
    g.add_argument("--keep", action="store_true",
                   help="keep the temp directory / PostgreSQL database and print where they are")
    w = p.add_argument_group("workload")
    w.add_argument("--spans", type=int, default=100_000, help="spans to send (10 per trace)")
    w.add_argument("--batch-size", type=int, default=512, help="spans per export request")
    w.add_argument("--concurrency", type=int, default=4, help="concurrent senders")
    w.add_argument("--transport", choices=("http", "grpc"), default="http",
                   help="OTLP/HTTP protobuf on the OTLP HTTP port, or OTLP/gRPC")
    w.add_argument("--gzip", action="store_true", help="gzip bodies (pre-compressed for http; "
                                                        "grpc compresses in its C core)")
    w.add_argument("--request-timeout", type=float, default=120.0,
                   help="per-request timeout in seconds; a timed-out request is retried (the server "
                        "must de-duplicate it). OTel exporters default to 10")
    w.add_argument("--retry-budget", type=float, default=600.0,
                   help="seconds one request may spend retrying (429/503, RESOURCE_EXHAUSTED/"
                        "UNAVAILABLE, connection errors) before it counts as undelivered")
    w.add_argument("--stall-timeout", type=float, default=180.0,
                   help="abandon the send phase when no request has been acknowledged for this many "
                        "seconds (0: never); the result then says 'stalled'")
    w.add_argument("--seed", type=int, default=None, help="workload seed (default: random)")
    w.add_argument("--policy", default=None, metavar="FILE",
                   help="POST this JSON body to /api/v1/policies before the run (with \"active\": true,"
                        " ingest is measured while the decision engine decides each trace)")
    w.add_argument("--query-timeout", type=float, default=300.0,
                   help="seconds to wait after the last ack for every span to be queryable")
    w.add_argument("--index-timeout", type=float, default=300.0,
                   help="seconds to wait, once every span is queryable, for the search index to cover"
                        " every row (GET /readyz) before measuring stored bytes")
    o = p.add_argument_group("output")
    o.add_argument("--progress", type=float, default=15.0,
                   help="seconds between progress lines on stderr while sending (0: none)")
    o.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    o.add_argument("--profile", action="store_true",
                   help="run the server under `py-spy record` (cProfile if py-spy is missing) and "
                        "print the top functions; throughput is lower while profiling")
    o.add_argument("--cprofile", action="store_true",
                   help="with --profile: force cProfile (main thread only, whole server lifetime)")
    o.add_argument("--profile-window", choices=("send", "all"), default="send",
                   help="py-spy: attach from the first request to the last acknowledgement (send), "
                        "or record the server's whole life incl. start-up and the REST checks (all)")
    o.add_argument("--profile-gil", action="store_true",
                   help="py-spy --gil: sample only the thread holding the GIL (where Python CPU goes;"
                        " C code running without the GIL, e.g. SQLite, is then not seen)")
    o.add_argument("--profile-rate", type=int, default=100, help="py-spy samples per second")
    o.add_argument("--top", type=int, default=25, help="profile rows to print")
    args = p.parse_args(argv)
    if args.url is None and (args.grpc or args.otlp_url):
        p.error("--grpc / --otlp-url need --url (the REST API is how stored spans are counted)")
    if args.url and args.transport == "grpc" and not args.grpc:
        p.error("--transport grpc with --url needs --grpc HOST:PORT")
    if args.store_db and not args.url:
        p.error("--store-db is for --url (a spawned server's database is measured anyway)")
    if args.url and args.profile:
        p.error("--profile needs a spawned server (no --url)")
    if args.spans < 1 or args.batch_size < 1 or args.concurrency < 1:
        p.error("--spans, --batch-size and --concurrency must be positive")
    return args




def run(args: argparse.Namespace) -> dict[str, Any]:
    seed = args.seed if args.seed is not None else random.SystemRandom().getrandbits(32)
    env = f"bench-{seed:08x}-{os.getpid()}"
    log(f"building {args.spans} spans (seed {seed}, environment {env}) ...")
    # OTLP/HTTP bodies are gzipped ahead of time; gRPC compresses in its C core when asked
    work = build_workload(args.spans, args.batch_size, env, seed, args.gzip and args.transport == "http")
    log(f"built {len(work.bodies)} requests, {work.raw_bytes / MIB:.1f} MiB protobuf"
        f" ({work.wire_bytes / MIB:.1f} MiB on the wire) in {work.build_s:.1f}s")

    handle: ServerHandle | None = None
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "server_code": server_code_version(None if args.url else str(args.python)),
        "config": {"db": None if args.url else args.db, "transport": args.transport,
                   "gzip": args.gzip, "spans": work.spans, "batch_size": args.batch_size,
                   "concurrency": args.concurrency, "profile": bool(args.profile),
                   "profile_window": args.profile_window if args.profile else None,
                   "environment": env, "seed": seed, "policy": args.policy},
        "workload": {"traces": work.traces, "requests": len(work.bodies),
                     "spans_per_trace": round(work.spans / work.traces, 2),
                     "protobuf_bytes": work.raw_bytes, "wire_bytes": work.wire_bytes,
                     "bytes_per_span": round(work.raw_bytes / work.spans),
                     "traces_split_across_requests": work.split_traces,
                     "traces_with_children_before_root": work.child_first_traces,
                     "build_s": round(work.build_s, 2)},
    }
    sampler: RssSampler | None = None
    try:
        if args.url:
            api_url = args.url.rstrip("/")
            ou = urllib.parse.urlsplit(args.otlp_url or api_url)
            otlp_http = (ou.hostname or "127.0.0.1", ou.port or 80)
            grpc_target = args.grpc or ""
            result["server"] = {"url": api_url, "spawned": False}
        else:
            log(f"starting server ({args.db}{', profiling' if args.profile else ''}) ...")
            handle = start_server(args)
            api_url, otlp_http, grpc_target = handle.api_url, handle.otlp_http, handle.grpc_target
            assert handle.pid is not None
            time.sleep(args.idle_wait)
            idle = read_status(handle.pid).get("VmRSS", 0)
            pids = server_pids(handle.pid)
            idle_pss = sum(read_pss(p) for p in pids)
            idle_rss_sum = sum(read_status(p).get("VmRSS", 0) for p in pids)
            result["server"] = {"spawned": True, "database": handle.db_desc, "pid": handle.pid,
                                "start_s": round(handle.start_s or 0, 3), "workers": len(pids) - 1,
                                "idle_rss_mib": round(idle / MIB, 1),
                                "idle_pss_sum_mib": round(idle_pss / MIB, 1),
                                "idle_rss_sum_mib": round(idle_rss_sum / MIB, 1)}
            log(f"server up in {handle.start_s:.2f}s, idle RSS {idle / MIB:.1f} MiB"
                f" ({len(pids) - 1} workers; PSS of all {idle_pss / MIB:.1f} MiB)")
            sampler = RssSampler(handle.pid)
            sampler.start()
        if args.transport == "grpc":
            warm_up_grpc(grpc_target, args.api_key)
        # also make sure the REST API answers before the clock starts
        trace_count(api_url, args.api_key, env)
        if args.policy:
            activate_policy(api_url, args.api_key, args.policy)

        counter = itertools.count().__next__  # atomic under the GIL
        per_sender = [SendStats() for _ in range(args.concurrency)]
        if args.transport == "http":
            def target_fn(st: SendStats) -> None:
                http_sender(otlp_http, args.api_key, args.gzip, work, counter, st,
                            args.request_timeout, args.retry_budget)
        else:
            def target_fn(st: SendStats) -> None:
                grpc_sender(grpc_target, args.api_key, args.gzip, work, counter, st,
                            args.request_timeout, args.retry_budget)
        threads = [threading.Thread(target=target_fn, args=(st,), name=f"sender-{k}", daemon=True)
                   for k, st in enumerate(per_sender)]
        server_cpu0 = tree_cpu_seconds(handle.pid) if handle and handle.pid else None
        client_cpu0 = sum(os.times()[:2])
        machine0 = machine_busy_seconds()
        pg_db = handle.pg_db if handle else None
        db_cpu0 = db_backend_cpu(pg_db)
        spy_proc = None
        if handle and handle.spy and handle.pid and handle.profile_path:
            spy_proc = subprocess.Popen(
                [handle.spy, "record", "--pid", str(handle.pid), "--format", "raw", "--threads",
                 "--rate", str(args.profile_rate), "--output", handle.profile_path]
                + (["--gil"] if args.profile_gil else []),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            time.sleep(1.0)  # let it attach before the clock starts
        result["machine"]["speed_us_before"] = machine_speed_us()
        writer0 = writer_counters(api_url)
        threads0 = thread_cpu_seconds(server_pids(handle.pid)) if handle and handle.pid else None
        log(f"sending {len(work.bodies)} requests over {args.transport} with {args.concurrency} senders ...")
        t0 = time.perf_counter()
        for th in threads:
            th.start()
        next_progress = t0 + args.progress if args.progress > 0 else float("inf")
        last_acked, last_change = 0, t0
        stalled = False
        for th in threads:
            while th.is_alive():
                th.join(max(0.1, min(1.0, next_progress - time.perf_counter())))
                now = time.perf_counter()
                # racy reads of the senders' counters: good enough for progress and stall checks
                done = sum(st.acked_spans for st in per_sender)
                if done != last_acked:
                    last_acked, last_change = done, now
                elif args.stall_timeout > 0 and now - last_change > args.stall_timeout and not stalled:
                    stalled = True
                    log(f"no acknowledgement for {args.stall_timeout:.0f}s: the server looks stuck;"
                        " abandoning the send phase")
                    ABORT.set()
                if now >= next_progress:
                    next_progress += args.progress
                    tries = sum(st.retries for st in per_sender)
                    log(f"  {now - t0:6.0f}s: {done:,} spans acked, {tries} retries")
        t_sent = time.perf_counter()
        if spy_proc is not None:
            spy_proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            try:
                spy_proc.wait(60)
            except subprocess.TimeoutExpired:
                spy_proc.kill()
        stats = SendStats()
        for st in per_sender:
            stats.merge(st)
        client_cpu = sum(os.times()[:2]) - client_cpu0
        acked = stats.acked_spans
        t_ack = (stats.last_ack or t_sent) - t0
        writer1 = writer_counters(api_url)
        threads1 = thread_cpu_seconds(server_pids(handle.pid)) if handle and handle.pid else None
        log(f"acked {acked}/{work.spans} spans in {t_ack:.2f}s ({acked / t_ack:,.0f} spans/s);"
            f" waiting until every span is queryable ...")

        # every acked request's traces must be listed, and their span counts must add up to sent
        expected_traces = len({t for i in stats.acked_requests for t in work.trace_sets[i]})
        deadline = time.perf_counter() + args.query_timeout
        polls = 0
        stored = seen_traces = 0
        pass_s = 0.0
        t_query: float | None = None
        t_pass_start: float | None = None
        grace_until: float | None = None  # when some spans were never acked: stop a bit after
        while True:                       # every acked span is there
            polls += 1
            n = trace_count(api_url, args.api_key, env)
            if n >= expected_traces:
                start = time.perf_counter()
                seen_traces, stored, pass_s = stored_spans(api_url, args.api_key, env,
                                                           min(args.concurrency, 8))
                if stored >= work.spans:
                    t_query = time.perf_counter() - t0
                    t_pass_start = start - t0
                    break
                if stored >= acked:
                    grace_until = grace_until or time.perf_counter() + 5.0
                    if time.perf_counter() > grace_until:
                        break
                time.sleep(0.5)  # a full pass is not free: don't spin on it
            if time.perf_counter() > deadline:
                if not stored:
                    seen_traces, stored, pass_s = stored_spans(api_url, args.api_key, env,
                                                               min(args.concurrency, 8))
                break
            time.sleep(0.05)
        decided_at_query = auto_decisions(api_url) if args.policy else None
        server_cpu1 = tree_cpu_seconds(handle.pid) if handle and handle.pid else None
        server_cpu = (server_cpu1 - server_cpu0
                      if server_cpu1 is not None and server_cpu0 is not None else None)
        machine_cpu = machine_busy_seconds() - machine0
        t_window = time.perf_counter() - t0  # the CPU figures cover first request .. end of checks
        # backends that started during the run count from zero
        db_cpu = (sum(v - db_cpu0.get(k, 0.0) for k, v in db_backend_cpu(pg_db).items())
                  if pg_db else None)
        if sampler:
            sampler.stop()
        result["machine"]["speed_us_after"] = machine_speed_us()
        # one trace's detail, as a spot check that the mapping is there
        spot: dict[str, Any] = {}
        status, doc = http_get_json(
            f"{api_url}/api/v1/traces?page_size=1&environment={urllib.parse.quote(env)}", args.api_key)
        if status == 200 and doc["items"]:
            tid = doc["items"][0]["trace_id"]
            st2, det = http_get_json(f"{api_url}/api/v1/traces/{tid}", args.api_key)
            if st2 == 200:
                llm = [s for s in det["spans"] if s["span_type"] == "llm"]
                spot = {"trace_id": tid, "spans": len(det["spans"]), "llm_spans": len(llm),
                        "llm_with_model_tokens_text": sum(
                            1 for s in llm if s["model"] and s["input_tokens"] and s["input_text"]
                            and s["output_text"]),
                        "trace_tokens": det["trace"]["total_tokens"],
                        "span_types": sorted({s["span_type"] for s in det["spans"]})}
                # right after the load, with this run's spans stored: what a UI user waits for
                spot["list50_ms_p50"] = ms(timed_get(f"{api_url}/api/v1/traces?page_size=50",
                                                      args.api_key))
                spot["detail_ms_p50"] = ms(timed_get(f"{api_url}/api/v1/traces/{tid}", args.api_key))

        # With a policy: when the worker had decided every trace (after the checks above, which
        # ran beside it), so a faster ingest is not bought with decisions left for much later.
        decided_all_s = None
        if args.policy and decided_at_query is not None:
            until = time.perf_counter() + args.query_timeout
            while time.perf_counter() < until:
                if (auto_decisions(api_url) or 0) >= expected_traces:
                    decided_all_s = time.perf_counter() - t0
                    break
                time.sleep(0.2)

        # Stored bytes a span: measured once the search index covers every row, since it is part
        # of what a span costs on disk.
        log("waiting for the search index to catch up (GET /readyz) ...")
        index = wait_for_index(api_url, args.api_key, args.index_timeout)
        if t_query is not None:
            index["after_queryable_s"] = round(time.perf_counter() - t0 - t_query, 2)
        result["search_index"] = index
        store_db = handle.store_db if handle else args.store_db
        if store_db:
            log(f"{index_note(index)}; measuring stored bytes ...")
            try:
                result["stored"] = measure_stored(store_db, work.raw_bytes / work.spans)
            except Exception as exc:  # noqa: BLE001 - report, never lose the run's other figures
                result["stored"] = {"error": f"{type(exc).__name__}: {exc}"}
        else:
            result["stored"] = {"error": "not measured: --url without --store-db, the database is not known"}

        lat = stats.latencies
        result["results"] = {
            "sent_spans": work.spans,
            "acked_spans": acked,
            "stored_spans": stored,
            "stored_traces": seen_traces,
            "expected_traces": expected_traces,
            # not stored although sent (the zero-loss figure), and of those the acknowledged ones
            # (a server bug if ever > 0); the rest were never acknowledged (client gave up)
            "lost_spans": max(0, work.spans - stored),
            "lost_acked_spans": max(0, acked - stored),
            "undelivered_spans": work.spans - acked - stats.rejected_spans,
            "rejected_spans": stats.rejected_spans,
            "failed_requests": stats.failed_requests,
            "stalled": stalled,
            "retries": stats.retries,
            "retry_reasons": stats.retry_reasons,
            "retry_sleep_s": round(stats.retry_sleep_s, 2),
            # the writer's share of first request .. last ack: near 1, ingest waits on it
            "writer_busy": round((writer1[0] - writer0[0]) / t_ack, 3) if writer0 and writer1 and t_ack else None,
            "writer_transactions": int(writer1[1] - writer0[1]) if writer0 and writer1 else None,
            # µs of CPU a span by server thread, first request .. last ack
            "thread_us_per_span": (dict(sorted(
                ((k, round((v - threads0.get(k, 0.0)) / acked * 1e6, 1)) for k, v in threads1.items()),
                key=lambda kv: -kv[1])) if threads0 is not None and threads1 is not None and acked else None),
            "ack_s": round(t_ack, 3),
            "acked_spans_per_s": round(acked / t_ack) if t_ack else None,
            "queryable_s": round(t_query, 3) if t_query is not None else None,
            "queryable_spans_per_s": round(work.spans / t_query) if t_query else None,
            "verify_pass_start_s": round(t_pass_start, 3) if t_pass_start is not None else None,
            "verify_pass_s": round(pass_s, 3),
            "polls": polls,
            "decided_at_queryable": decided_at_query,
            "decided_all_s": round(decided_all_s, 3) if decided_all_s is not None else None,
            "latency_ms": {"p50": ms(pct(lat, 50)), "p90": ms(pct(lat, 90)),
                           "p99": ms(pct(lat, 99)), "max": ms(max(lat) if lat else None),
                           "mean": ms(statistics.fmean(lat) if lat else None)},
            "client_cpu_s": round(client_cpu, 2),
            "server_cpu_s": round(server_cpu, 2) if server_cpu is not None else None,
            "server_cores_used": (round(server_cpu / t_window, 2)
                                  if server_cpu is not None else None),
            "db_cpu_s": round(db_cpu, 2) if db_cpu is not None else None,
            "machine_busy_cpu_s": round(machine_cpu, 2),
            "other_cpu_s": (round(machine_cpu - (server_cpu or 0) - client_cpu - (db_cpu or 0), 2)
                            if handle else None),
            "machine_cores_busy": round(machine_cpu / t_window, 2),
            "errors": stats.errors[:10],
            "spot_check": spot,
        }
        if sampler:
            result["server"]["peak_rss_mib"] = round(max(sampler.peak_rss, sampler.hwm) / MIB, 1)
            result["server"]["peak_rss_sampled_mib"] = round(sampler.peak_rss / MIB, 1)
            result["server"]["peak_rss_anon_mib"] = round(sampler.peak_anon / MIB, 1)
            result["server"]["peak_rss_file_mib"] = round(sampler.peak_file / MIB, 1)
            result["server"]["peak_pss_sum_mib"] = round(sampler.peak_pss_sum / MIB, 1)
            result["server"]["peak_rss_sum_mib"] = round(sampler.peak_rss_sum / MIB, 1)
    finally:
        if sampler and sampler.is_alive():
            sampler.stop()
        if handle:
            log("stopping server (SIGTERM) ...")
            stop_s = stop_server(handle)
            if "server" in result:
                result["server"]["stop_s"] = round(stop_s, 2) if stop_s is not None else None
            if handle.proc and handle.proc.returncode not in (0, None):
                result.setdefault("server", {})["exit_code"] = handle.proc.returncode
                result["server"]["log_tail"] = tail(handle.log_path, 20)
            if handle.profile_kind and handle.profile_path:
                for _ in range(100):  # py-spy writes its file after the child exits
                    if os.path.exists(handle.profile_path) and os.path.getsize(handle.profile_path):
                        break
                    time.sleep(0.1)
                if os.path.exists(handle.profile_path):
                    result["profile"] = (pyspy_report(handle.profile_path, args.top)
                                         if handle.profile_kind == "py-spy"
                                         else cprofile_report(handle.profile_path, args.top))
                    result["profile"]["file"] = handle.profile_path if args.keep else None
                else:
                    result["profile"] = {"kind": handle.profile_kind, "error": "no profile written",
                                         "log_tail": tail(handle.log_path, 20)}
            if args.keep:
                log(f"kept: {handle.workdir}" + (f", database {handle.pg_db}" if handle.pg_db else ""))
            cleanup(handle, args.keep)
    return result


def _terminate(signum: int, _frame: Any) -> None:
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so the spawned server is stopped and its
    # database removed instead of being left running.
    ABORT.set()
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        result = run(args)
    except KeyboardInterrupt as exc:
        log(f"interrupted ({exc or 'Ctrl-C'}); the spawned server was stopped and its database removed")
        return 130
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        print(render(result))
    res = result.get("results", {})
    ok = res and res.get("lost_spans") == 0 and res.get("queryable_s") is not None
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
