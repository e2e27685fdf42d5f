"""The stats overview from its hourly roll-ups (tracehub/store/rollups.py) equals a from-scratch
aggregate of the window's trace rows: after spans out of order and sent again, late evaluations,
decisions, amendments, spans that move a trace to an earlier hour, parents given up as time passes,
direct SQL writes, a restart, and over a migrated store; at windows whose first hour is cut either
way; on both databases."""

from __future__ import annotations

import json
import random
import secrets
import time
from collections import Counter
from typing import Any, Callable, Iterator

import pytest
import sqlalchemy as sa
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from otlp_helpers import make_span, post, request_of

from conftest import Project, ServerProcess, own_project
from tracehub.api.params import iso
from tracehub.store import db, rollups, stats
from tracehub.store.completion import completion
from tracehub.store.schema import (AWAITING_SQL, FINISHED_SQL, evaluation_results, trace_hour_latency,
                                   trace_hours, traces)

HOUR = 3_600_000_000_000
MINUTE = HOUR // 60
MS = 1_000_000
GRACE = 30 * 10**9  # the server's default missing_parent_grace_s
BACKENDS = pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])


def from_scratch(engine: sa.Engine, project_id: int, last_hours: int, now_ns: int,
                 bucket_percentiles: tuple[int, ...] = (50,), hourly_decisions: bool = False) -> dict[str, Any]:
    """`stats.overview`'s answer from every trace row of the window, aggregated in Python; each
    trace's open count and completion rate as the trace list has them (tracehub/store/completion.py)."""
    c = completion(now_ns, GRACE)
    start, first, end = stats.window(last_hours, now_ns)
    t, e = traces.c, evaluation_results.c
    with engine.connect() as conn:
        rows = conn.execute(sa.select(
            t.trace_id, t.start_ns, t.end_ns, t.status, t.graph_name, t.decision, t.input_tokens,
            t.output_tokens, t.cost_usd, c.open_count.label("open_count"),
            rollups.completion_rate_sql(c).label("rate"),
        ).where(t.project_id == project_id, t.start_ns >= start, t.start_ns < end)).all()
        evals = conn.execute(sa.select(e.trace_id, e.passed).where(e.project_id == project_id)).all()
    n_buckets = (end - first) // HOUR
    hours: list[dict[str, Any]] = [{"n": 0, "errors": 0, "tokens": 0, "cost": 0.0, "durations": [],
                                    "decisions": Counter()} for _ in range(n_buckets)]
    durations: list[int] = []
    decisions: Counter[str] = Counter()
    for r in rows:
        start_ns, end_ns, status, decision = r.start_ns, r.end_ns, r.status, r.decision
        hour = hours[(start_ns - first) // HOUR]
        hour["n"] += 1
        hour["errors"] += status == "error"
        hour["tokens"] += r.input_tokens + r.output_tokens
        hour["cost"] += r.cost_usd
        if end_ns is not None and r.open_count == 0:
            hour["durations"].append(end_ns - start_ns)
            durations.append(end_ns - start_ns)
        if decision is not None:
            hour["decisions"][decision] += 1
            decisions[decision] += 1
    in_window = {r.trace_id for r in rows}
    judged = [passed for trace_id, passed in evals if trace_id in in_window]
    count = len(rows)
    errors = sum(r.status == "error" for r in rows)
    passed, failed = sum(p is True for p in judged), sum(p is False for p in judged)
    actions = dict.fromkeys(stats.DECISION_ACTIONS, 0)
    series = []
    for i, hour in enumerate(hours):
        point = {"start_ns": first + i * HOUR, "trace_count": hour["n"], "error_count": hour["errors"],
                 "total_tokens": hour["tokens"], "cost_usd": round(hour["cost"], 8),
                 **{f"latency_p{p}_ms": percentile(hour["durations"], p) for p in bucket_percentiles}}
        if hourly_decisions:
            point["decisions"] = {**actions, **hour["decisions"]}
        series.append(point)
    return {
        "last_hours": last_hours, "window_start_ns": start, "window_end_ns": end,
        "trace_count": count, "error_count": errors,
        "error_rate": round(errors / count, 4) if count else 0.0,
        "open_traces": sum(r.open_count > 0 for r in rows),
        "completion_rate": round(sum(r.rate for r in rows) / count, 4) if count else 0.0,
        "latency_ms": {f"p{p}": percentile(durations, p) for p in (50, 95, 99)},
        "tokens": {"input": sum(r.input_tokens for r in rows), "output": sum(r.output_tokens for r in rows),
                   "total": sum(r.input_tokens + r.output_tokens for r in rows)},
        "cost_usd": round(sum(r.cost_usd for r in rows), 8),
        "decisions_by_action": {**actions, **decisions},
        "eval": {"count": len(judged), "passed": passed, "failed": failed,
                 "pass_rate": round(passed / (passed + failed), 4) if passed + failed else 0.0},
        "langgraph_runs": sum(r.graph_name is not None for r in rows),
        "series": series,
    }


def percentile(durations: list[int], pct: int) -> float:
    """Linear interpolation between closest ranks, in ms, as PostgreSQL's percentile_cont."""
    if not durations:
        return 0.0
    ordered = sorted(durations)
    lo, rest = divmod((len(ordered) - 1) * pct, 100)
    high = ordered[min(lo + 1, len(ordered) - 1)]
    return round((ordered[lo] + (high - ordered[lo]) * rest / 100) / 1e6, 3)


def rolled_up(engine: sa.Engine, project_id: int, last_hours: int, now_ns: int,
              bucket_percentiles: tuple[int, ...] = (50,), hourly_decisions: bool = False) -> dict[str, Any]:
    """`stats.overview` as the API runs it: on a connection without a transaction of its own."""
    with engine.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
        return stats.overview(conn, project_id, last_hours, now_ns, completion(now_ns, GRACE),
                              bucket_percentiles, hourly_decisions)


def assert_same(engine: sa.Engine, project_id: int, moments: list[int], windows: tuple[int, ...] = (1, 2, 3, 24)) -> None:
    for now_ns in moments:
        for hours in windows:
            for args in (((50,), False), ((50, 95), True)):
                want = from_scratch(engine, project_id, hours, now_ns, *args)
                assert rolled_up(engine, project_id, hours, now_ns, *args) == want, (hours, now_ns - time.time_ns())


def moments_around(now_ns: int) -> list[int]:
    """Now, and times over the next and last two hours: every way a window's first hour is cut,
    parents given up or not."""
    return [now_ns, now_ns + GRACE + 1, *(now_ns + k * 7 * MINUTE + 13 * MS for k in range(-17, 18, 3))]


def _tid() -> bytes:
    return secrets.token_bytes(16)


def _sid() -> bytes:
    return secrets.token_bytes(8)


def _send(server: ServerProcess, p: Project, *spans: Span) -> None:
    r = post(server, request_of(*spans), x_api_key=p.key)
    assert r.status_code == 200, r.text


def _json(p: Project, path: str, body: dict[str, Any]) -> None:
    r = p.client.post(path, content=json.dumps(body).encode(), headers={"content-type": "application/json"})
    assert r.status_code in (200, 201), r.text


def _llm(tid: bytes, parent: bytes, start: int, ms: int, tokens: tuple[int, int], error: bool = False) -> Span:
    span = make_span(tid, _sid(), parent=parent, name="chat", start=start, end=start + ms * MS,
                     gen_ai__operation__name="chat", gen_ai__request__model="gpt-4o-mini",
                     gen_ai__usage__input_tokens=tokens[0], gen_ai__usage__output_tokens=tokens[1])
    if error:
        span.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message="rate limited"))
    return span


@pytest.fixture
def project(module_server: ServerProcess) -> Iterator[Project]:
    with own_project(module_server, "rollups", auto_decide=False) as made:
        yield made


def test_the_roll_ups_equal_a_scan_after_every_kind_of_write(module_server: ServerProcess, project: Project) -> None:
    server, p = module_server, project
    now = time.time_ns()
    rng = random.Random(5)
    sent: list[str] = []
    # Finished traces over three hours, some with model calls, errors and a LangGraph graph.
    for i in range(40):
        tid, root = _tid(), _sid()
        start = now - rng.randrange(0, 3 * HOUR)
        graph: dict[str, Any] = {"langgraph__graph__name": "support"} if i % 7 == 0 else {}
        spans = [make_span(tid, root, name="request", start=start, end=start + rng.randrange(5, 9000) * MS, **graph)]
        if i % 3 == 0:
            spans.append(_llm(tid, root, start + MS, rng.randrange(1, 4), (rng.randrange(10, 900), 40), error=i % 9 == 0))
        _send(server, p, *spans)
        sent.append(tid.hex())
    # Children before their root, the root in a later request and starting an hour earlier: the
    # trace waits for its parent, then moves to the root's hour.
    moved, root = _tid(), _sid()
    _send(server, p, _llm(moved, root, now - 20 * MINUTE, 500, (100, 10)),
          make_span(moved, _sid(), parent=root, name="tool", start=now - 19 * MINUTE, end=now - 18 * MINUTE))
    # Evaluations before the trace is stored, and of a trace stored already.
    _json(p, "/api/v1/evals", {"trace_id": moved.hex(), "eval_name": "faithfulness", "score": 0.9, "passed": True})
    _json(p, "/api/v1/evals", {"trace_id": sent[0], "eval_name": "faithfulness", "score": 0.1, "passed": False})
    _json(p, "/api/v1/evals", {"trace_id": sent[1], "eval_name": "tone", "score": 0.5})
    assert_same(p.engine, p.id, [now, now + GRACE + 1])
    _send(server, p, make_span(moved, root, name="agent", start=now - 80 * MINUTE, end=now - 17 * MINUTE))
    # The same spans again, and a request that repeats one of them beside a new one.
    again = make_span(_tid(), _sid(), name="again", start=now - 40 * MINUTE, end=now - 39 * MINUTE)
    _send(server, p, again)
    _send(server, p, again, make_span(bytes.fromhex(sent[2]), _sid(), name="late child", start=now - 5 * HOUR,
                                      end=now - 5 * HOUR + MS))  # moves that trace out of a 3-hour window
    # A parent that never arrives (given up after the grace), and a span still running.
    _send(server, p, make_span(_tid(), _sid(), parent=_sid(), name="orphan", start=now - 10 * MINUTE,
                               end=now - 9 * MINUTE))
    running = _tid()
    _json(p, "/api/v1/ingest/spans", {"events": [
        {"trace_id": running.hex(), "span_id": _sid().hex(), "event_type": "START",
         "event_time": iso(now - 3 * MINUTE), "payload": {"name": "still going"}}]})
    # Amendments change a stored span's cost and status; decisions through the API and in SQL.
    span = project.client.get(f"/api/v1/traces/{sent[3]}").json()["spans"][0]
    _json(p, "/api/v1/ingest/spans", {"events": [
        {"trace_id": sent[3], "span_id": span["span_id"], "event_type": "AMENDMENT", "event_time": iso(now),
         "payload": {"patch": {"cost_usd": 1.25, "status": "error"}}}]})
    for decided in sent[4:8]:
        r = project.client.post("/api/v1/decide", json={"trace_id": decided})
        assert r.status_code == 201, r.text
    with p.engine.begin() as conn:
        conn.execute(traces.update().where(traces.c.project_id == p.id, traces.c.trace_id == sent[4])
                     .values(decision="BLOCK"))
        conn.execute(evaluation_results.insert().values(
            project_id=p.id, trace_id=sent[5], eval_name="review", passed=True, metadata={}, created_ns=now))
    assert_same(p.engine, p.id, moments_around(time.time_ns()))
    got = rolled_up(p.engine, p.id, 24, time.time_ns(), (50, 95), True)
    assert got["trace_count"] == 44 and got["open_traces"] >= 1 and got["eval"]["count"] == 4
    assert got["decisions_by_action"]["BLOCK"] >= 1 and got["langgraph_runs"] == 6
    # The API answers the same.
    api = project.client.get("/api/v1/traces/stats/overview", params={"last_hours": 24}).json()
    now_api = time.time_ns()
    want = from_scratch(p.engine, p.id, 24, now_api)
    same = ("trace_count", "tokens", "eval", "decisions_by_action", "langgraph_runs")  # not the clock's
    assert {k: api[k] for k in same} == {k: want[k] for k in same}

    # Deleting rows (retention, by hand) takes them out again.
    with p.engine.begin() as conn:
        conn.execute(traces.delete().where(traces.c.project_id == p.id, traces.c.trace_id.in_(sent[:3])))
        conn.execute(evaluation_results.delete().where(evaluation_results.c.project_id == p.id,
                                                       evaluation_results.c.trace_id == sent[5]))
    assert_same(p.engine, p.id, [time.time_ns()], (3, 24))


def test_a_parent_is_given_up_by_the_clock_alone(module_server: ServerProcess, project: Project) -> None:
    """Nothing is written between the reads: the trace is open until the grace has passed."""
    now = time.time_ns()
    tid, root = _tid(), _sid()
    _send(module_server, project, make_span(tid, _sid(), parent=root, name="child", start=now - 2 * MINUTE,
                                            end=now - MINUTE))
    with project.engine.connect() as conn:
        written = conn.execute(sa.select(traces.c.last_span_ns).where(traces.c.project_id == project.id)).scalar_one()
    before, after = written + GRACE - 1, written + GRACE
    assert rolled_up(project.engine, project.id, 1, before)["open_traces"] == 1
    assert rolled_up(project.engine, project.id, 1, before)["latency_ms"]["p50"] == 0.0
    assert rolled_up(project.engine, project.id, 1, after)["open_traces"] == 0
    assert rolled_up(project.engine, project.id, 1, after)["latency_ms"]["p50"] == 60_000.0
    assert_same(project.engine, project.id, [before, after], (1, 24))
    # The roll-up counts it as given up already; the read corrects it.
    with project.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.sum(trace_hours.c.open_traces))
                            .where(trace_hours.c.project_id == project.id)).scalar_one() == 0


def test_percentiles_are_exact_when_a_bucket_is_cut_by_traces_not_given_up(module_server: ServerProcess,
                                                                         project: Project) -> None:
    """Traces in the same duration bucket, some of them waiting for a parent within the grace."""
    now = time.time_ns()
    rows: list[dict[str, Any]] = []
    for i in range(60):
        start = now - (i % 5) * 11 * MINUTE - MINUTE
        waiting = i % 4 == 0
        rows.append({"project_id": project.id, "trace_id": f"{i:032x}", "status": "running" if waiting else "success",
                     "start_ns": start, "end_ns": start + 5_000 * MS + i * 7 * MS, "span_count": 3,
                     "running_span_count": 0, "missing_parent_count": 1 if waiting else 0, "error_count": 0,
                     "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0, "updated_ns": now,
                     "last_span_ns": now})
    with project.engine.begin() as conn:
        conn.execute(traces.insert(), rows)
    assert len({rollups.bucket_of(r["end_ns"] - r["start_ns"]) for r in rows}) < 6
    assert_same(project.engine, project.id, [now, now + GRACE + 1, now + 30 * MINUTE], (1, 24))
    got = rolled_up(project.engine, project.id, 24, now)
    assert got["open_traces"] == 15 and got["latency_ms"] == from_scratch(project.engine, project.id, 24, now)["latency_ms"]


@BACKENDS
def test_the_roll_ups_survive_a_restart(backend: str, server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory(backend)
    with own_project(server, "restart", auto_decide=False) as p:
        now = time.time_ns()
        waiting: list[tuple[bytes, bytes]] = []
        for i in range(12):
            tid, root = _tid(), _sid()
            _send(server, p, make_span(tid, _sid(), parent=root, name="child", start=now - i * 9 * MINUTE,
                                       end=now - i * 9 * MINUTE + 400 * MS))
            waiting.append((tid, root))
        assert_same(p.engine, p.id, [time.time_ns()], (1, 3))
        server.stop()
        server.start()
        for i, (tid, root) in enumerate(waiting[::2]):  # their roots, an hour earlier
            _send(server, p, make_span(tid, root, name="root", start=now - HOUR - i * MINUTE, end=now - i * MINUTE))
        _json(p, "/api/v1/evals", {"trace_id": waiting[0][0].hex(), "eval_name": "x", "passed": True})
        assert_same(p.engine, p.id, moments_around(time.time_ns()), (1, 3, 24))


@BACKENDS
def test_the_bucket_of_a_duration_increases_with_it_and_python_agrees(
        backend: str, database_url_factory: Callable[[str], str]) -> None:
    durations = sorted({-5, 0, 1, 9, 10, 11, 99, 100, 109, 110, 999, 1000, 10**9, 999_999_999, 10**18,
                        *random.Random(1).sample(range(10**13), 200)})
    engine = db.create_engine(database_url_factory(backend))
    db.migrate(engine)
    with engine.begin() as conn:
        conn.execute(traces.insert(), [
            {"project_id": 1, "trace_id": f"{i:032x}", "status": "success", "start_ns": 10**15, "end_ns": 10**15 + d,
             "span_count": 1, "running_span_count": 0, "missing_parent_count": 0, "error_count": 0,
             "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0, "updated_ns": 1} for i, d in enumerate(durations)])
        found: dict[int, int] = {d: b for d, b in conn.execute(
            sa.select(rollups.DURATION, rollups.BUCKET).where(traces.c.project_id == 1))}
        counted = conn.execute(sa.select(sa.func.sum(trace_hour_latency.c.n))).scalar_one()
    engine.dispose()
    assert found == {d: rollups.bucket_of(d) for d in durations}
    buckets = [rollups.bucket_of(d) for d in durations]
    assert buckets == sorted(buckets) and counted == len(durations)


def test_the_reads_use_the_roll_up_indexes(tmp_path: Any) -> None:
    """SQLite once ranged over the start index for the traces awaiting parents (all of them)."""
    engine = db.create_engine(f"sqlite:///{tmp_path / 'plan.db'}")
    db.migrate(engine)
    now = time.time_ns()
    statements: list[tuple[str, Any]] = []
    with engine.connect() as conn:
        sa.event.listen(conn, "before_cursor_execute",
                        lambda c, cur, sql, params, ctx, many: statements.append((sql, params)))
        with conn.begin():
            conn.execute(traces.insert(), [{
                "project_id": 1, "trace_id": f"{i:032x}", "status": "success", "start_ns": now - i * MINUTE,
                "end_ns": now, "span_count": 1, "running_span_count": 0, "missing_parent_count": 0,
                "error_count": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0, "updated_ns": now}
                for i in range(50)])
        statements.clear()
        stats.overview(conn, 1, 24, now, completion(now, GRACE))
        plans = {sql: " / ".join(r[-1] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params))
                 for sql, params in statements if sql.lstrip().startswith("SELECT")}
    engine.dispose()
    awaiting = [plan for sql, plan in plans.items() if AWAITING_SQL in sql]
    latency = [plan for sql, plan in plans.items() if FINISHED_SQL in sql]
    assert awaiting and all("ix_traces_awaiting" in plan for plan in awaiting), plans
    assert latency and all("ix_traces_latency" in plan for plan in latency), plans
