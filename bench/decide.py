#!/usr/bin/env python3
"""Latency of heuristic decisions: in process, and through `POST /api/v1/decide` on a real server.

In process: the engine's pure part of a decision, without the database (`engine.assess`: the
context, the signal detectors over ~2 KB of request and ~2 KB of response text, the input hash and
the policy; the heuristic judge; the judge span and the decision rows), over the rules of every
policy in examples/policies/ at once. Target: p99 under 1 ms.

Over HTTP: a `tracehub serve` of its own (SQLite in a temporary directory, or --database-url),
that many traces ingested with the same texts varied, the same policy active, then one /decide per
trace from one client with keep-alive (every decision a judge cache miss, each written through the
writer's decision lane), then the same again (cache hits). Target: p50 under 5 ms.

    .venv/bin/python bench/decide.py                     # 5,000 in process, 300 over HTTP
    .venv/bin/python bench/decide.py --calls 20000 --requests 1000
    .venv/bin/python bench/decide.py --database-url postgresql+psycopg://postgres@127.0.0.1/bench
    .venv/bin/python bench/decide.py --calls 0 --requests 0 --backtest 5000 --decided yes

Backtest: that many traces stored (`--decided yes`: decided automatically as they come, so their
signals are stored with the decisions), then two pairs of policies replayed over them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.append(str(ROOT / "tests"))

from otlp_helpers import free_ports  # noqa: E402
from signals import REQUEST_PARTS, RESPONSE_PARTS, text_of  # noqa: E402

from tracehub.decision.engine import Plan, PolicyVersion, assess, cache_key, decision_rows, judge_spans  # noqa: E402
from tracehub.decision.judges import HeuristicJudge, JudgeInput  # noqa: E402
from tracehub.decision.policy import parse_policy  # noqa: E402
from tracehub.seed import DEFAULT_POLICY  # noqa: E402
from tracehub.store.readmodel import TraceModel  # noqa: E402

TEXT_BYTES = 2048


def example_policy() -> dict[str, Any]:
    """Every rule of examples/policies/*.yaml in one definition."""
    rules = []
    for path in sorted((ROOT / "examples" / "policies").glob("*.yaml")):
        for rule in yaml.safe_load(path.read_text())["definition"]["rules"]:
            if "id" in rule:
                rule = {**rule, "id": f"{path.stem}-{rule['id']}"}
            rules.append(rule)
    return {"rules": rules}


def percentiles(samples_ms: list[float]) -> str:
    q = statistics.quantiles(samples_ms, n=100, method="inclusive")
    return f"p50 {q[49]:.3f} ms  p99 {q[98]:.3f} ms  max {max(samples_ms):.3f} ms  (n={len(samples_ms)})"


def trace_row(i: int, input_text: str, output_text: str) -> dict[str, Any]:
    now = time.time_ns()
    return {"trace_id": f"{i:032x}", "name": "chat-request", "status": "success", "start_ns": now - 900_000_000,
            "end_ns": now, "model": "gpt-4.1-mini", "environment": "prod", "user_id": "user-42",
            "session_id": "session-1", "input_text": input_text, "output_text": output_text, "root_span_id": "1" * 16,
            "span_count": 6, "error_count": 0, "input_tokens": 1200, "output_tokens": 300, "cost_usd": 0.0021}


def in_process(calls: int) -> None:
    definition = parse_policy(example_policy())
    policy = PolicyVersion(definition, 1, 1, "examples", 1)
    judge = HeuristicJudge()
    request_text, response_text = text_of(REQUEST_PARTS, TEXT_BYTES), text_of(RESPONSE_PARTS, TEXT_BYTES)
    evals = [{"eval_name": "faithfulness", "score": 0.72, "passed": True}]
    models = [TraceModel(trace_row(i, f"{i} {request_text}", response_text), [], [], evals) for i in range(256)]
    samples = []
    actions: dict[str, int] = {}
    for i in range(calls):
        model = models[i % len(models)]
        t0 = time.perf_counter()
        a = assess(model, {"channel": "web"}, None, definition)
        plan = Plan(policy, a, cache_key(a.input_hash, policy.version_id, judge.model), None)
        outcome = judge.outcome(JudgeInput(1, model.trace["trace_id"], a.context, a.verdict, a.input_hash,
                                           policy.name, policy.version))
        started = time.time_ns()
        spans = judge_spans(model.trace["trace_id"], "d" * 32, plan, outcome, started, started)
        decision_rows(1, model.trace["trace_id"], "d" * 32, plan, outcome, "api", 0.0, started, spans[0].span_id)
        samples.append((time.perf_counter() - t0) * 1000)
        actions[outcome.action] = actions.get(outcome.action, 0) + 1
    print(f"in process, {len(definition)} rules, {TEXT_BYTES} B request + {TEXT_BYTES} B response: "
          f"{percentiles(samples)}  actions {actions}")


@contextlib.contextmanager
def served(database_url: str | None, decisions: bool = False) -> Iterator[httpx.Client]:
    """A `tracehub serve` of its own (automatic decisions off unless `decisions`, then settling in
    0.2 s) and a keep-alive client of it."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-decide-"))
    port, otlp_http, grpc = free_ports(3)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEHUB_")}
    env.update(TRACEHUB_DATABASE_URL=database_url or f"sqlite:///{workdir / 'bench.db'}",
               TRACEHUB_LOG_LEVEL="warning", TRACEHUB_DECISIONS=str(decisions).lower(),
               TRACEHUB_DECISION_SETTLE_S="0.2")
    log = open(workdir / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "tracehub", "serve", "--port", str(port), "--otlp-http-port",
                             str(otlp_http), "--otlp-grpc-port", str(grpc)], env=env, cwd=workdir, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        client = httpx.Client(base_url=url, headers={"x-api-key": "dev-key"}, timeout=300)
        deadline = time.monotonic() + 30
        while True:
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"the server did not start: {(workdir / 'server.log').read_text()[-2000:]}")
            time.sleep(0.05)
        yield client
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def ingest(client: httpx.Client, count: int) -> list[str]:
    """`count` traces with the 2 KB texts (varied), ended a second from now; their ids."""
    request_text, response_text = text_of(REQUEST_PARTS, TEXT_BYTES), text_of(RESPONSE_PARTS, TEXT_BYTES)
    trace_ids = []
    for i in range(count):
        trace_id, root = secrets.token_hex(16), secrets.token_hex(8)
        r = client.post("/api/v1/ingest/traces", json={
            "trace": {"trace_id": trace_id, "name": "chat-request", "input_text": f"{i} {request_text}",
                      "output_text": response_text, "environment": "prod", "model": "gpt-4.1-mini"},
            "spans": [{"span_id": root, "name": "chat-request", "span_type": "chain", "status": "success",
                       "end_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 1))}]})
        r.raise_for_status()
        trace_ids.append(trace_id)
    # The search index catches up on the new spans in the writer's idle time: not meanwhile.
    while client.get("/readyz").json().get("search_unindexed_rows"):
        time.sleep(0.2)
    return trace_ids


def over_http(requests: int, database_url: str | None) -> None:
    with served(database_url) as client:
        r = client.post("/api/v1/policies", json={"name": "examples", "active": True, "definition": example_policy()})
        r.raise_for_status()
        trace_ids = ingest(client, requests)
        # What any request costs on this machine: the floor under /decide's figures.
        samples = []
        for _ in trace_ids:
            t0 = time.perf_counter()
            client.get("/healthz")
            samples.append((time.perf_counter() - t0) * 1000)
        print(f"GET /healthz over HTTP: {percentiles(samples)}")
        for label in ("judge cache misses", "judge cache hits"):
            samples = []
            for trace_id in trace_ids:
                t0 = time.perf_counter()
                r = client.post("/api/v1/decide", json={"trace_id": trace_id})
                samples.append((time.perf_counter() - t0) * 1000)
                if r.status_code != 201:
                    raise SystemExit(f"/decide answered {r.status_code}: {r.text}")
            print(f"POST /api/v1/decide over HTTP ({'PostgreSQL' if database_url else 'SQLite'}), {label}: "
                  f"{percentiles(samples)}")


def backtest(count: int, database_url: str | None, decided: bool) -> None:
    """Over `count` stored traces: the examples' rules (they read signals) against the spec's
    default-safety policy (so does it), then a token budget and one that also blocks the model (no
    signals to detect) against each other. `decided`: the default-safety policy is active while
    they are ingested and each is decided automatically, so its signals are stored and the
    backtest reads them back; else no trace has a decision and every one runs the detectors."""

    def budget(*model: str) -> dict[str, Any]:
        rules = [{"priority": 10, "when": {"field": "trace.total_tokens", "op": "gt", "value": 4000},
                  "then": {"action": "BLOCK", "reason_code": "TOKEN_BUDGET", "severity": "medium"}}]
        if model:
            rules.append({"priority": 20, "when": {"field": "trace.model", "op": "in", "value": list(model)},
                          "then": {"action": "BLOCK", "reason_code": "MODEL", "severity": "low"}})
        return {"rules": rules}

    db = "PostgreSQL" if database_url else "SQLite"
    with served(database_url, decisions=decided) as client:
        t0 = time.perf_counter()
        if decided:
            client.post("/api/v1/policies", json=DEFAULT_POLICY).raise_for_status()
        ingest(client, count)
        while decided:
            by_action = client.get("/api/v1/traces/stats/overview").json()["decisions_by_action"]
            if sum(by_action.values()) >= count:
                break
            time.sleep(0.5)
        print(f"ingested {count} traces{' and decided them' if decided else ''} in {time.perf_counter() - t0:.1f} s")
        for active, candidate in ((DEFAULT_POLICY, {"name": "examples", "definition": example_policy()}),
                                  ({"name": "budget", "active": True, "definition": budget()},
                                   {"name": "budget", "definition": budget("gpt-4.1-mini")})):
            client.post("/api/v1/policies", json=active).raise_for_status()
            version = client.post("/api/v1/policies", json=candidate).json()["version"]["version"]
            for _ in range(3):
                t0 = time.perf_counter()
                r = client.post(f"/api/v1/policies/{candidate['name']}/backtest", params={"version": version})
                wall = time.perf_counter() - t0
                r.raise_for_status()
                got = r.json()
                print(f"backtest {candidate['name']} v{version} against {got['baseline']} ({db}, "
                      f"{'decided' if decided else 'undecided'}): {got['traces']} traces in {wall * 1000:.0f} "
                      f"ms ({got['traces'] / wall:,.0f} traces/s), changed {got['changed']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=5000, help="decisions in process")
    parser.add_argument("--requests", type=int, default=300, help="/decide requests over HTTP (each pass)")
    parser.add_argument("--backtest", type=int, default=0, help="stored traces to backtest two policies over")
    parser.add_argument("--decided", choices=("yes", "no", "both"), default="both",
                        help="backtest traces decided before (signals stored), undecided ones, or both")
    parser.add_argument("--database-url", help="the server's database (default: SQLite in a temporary directory)")
    args = parser.parse_args()
    if args.calls:
        in_process(args.calls)
    if args.requests:
        over_http(args.requests, args.database_url)
    if args.backtest:
        for decided in {"yes": (True,), "no": (False,), "both": (False, True)}[args.decided]:
            backtest(args.backtest, args.database_url, decided)


if __name__ == "__main__":
    main()
