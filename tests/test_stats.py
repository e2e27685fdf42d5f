"""`GET /api/v1/traces/stats/overview`: exact numbers for known traces, the window, hourly series."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any, Iterator

import httpx
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Status
from otlp_helpers import make_span, post, request_of

from conftest import Project, ServerProcess, own_project
from tracehub.api.params import parse_time_ns
from tracehub.store.schema import evaluation_results, traces

HOUR = 3_600_000_000_000
MINUTE = HOUR // 60
MS = 1_000_000
ACTIONS = ("ALLOW_ANSWER", "BLOCK", "ESCALATE", "ALLOW_WITH_WARNING", "NEED_CLARIFICATION")


@pytest.fixture
def project(server: ServerProcess) -> Iterator[Project]:
    """A project of its own on the shared server, so every count below is exact."""
    with own_project(server, "stats") as made:
        yield made


@dataclass
class Sent:
    """What one trace should contribute: its start, and duration if finished."""

    trace_id: str
    start: int
    duration_ms: float | None
    error: bool = False
    tokens: tuple[int, int] = (0, 0)


def _trace(server: ServerProcess, p: Project, start: int, duration_ms: int, *, error: bool = False,
           tokens: tuple[int, int] | None = None, running_child: bool = False,
           orphan: bool = False, graph: str | None = None) -> Sent:
    tid = secrets.token_bytes(16)
    end = start + duration_ms * MS
    root_attrs = {"langgraph__graph__name": graph} if graph else {}
    parent = secrets.token_bytes(8) if orphan else b""  # a parent that never arrives
    root = make_span(tid, secrets.token_bytes(8), parent=parent, name="request", start=start,
                     end=end, **root_attrs)
    spans = [root]
    if tokens:
        llm = make_span(tid, secrets.token_bytes(8), parent=root.span_id, name="chat",
                        start=start + MS, end=end - MS,
                        gen_ai__operation__name="chat", gen_ai__request__model="gpt-4o-mini", gen_ai__usage__input_tokens=tokens[0], gen_ai__usage__output_tokens=tokens[1])
        if error:
            llm.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message="rate limited"))
        spans.append(llm)
    if running_child:
        spans.append(make_span(tid, secrets.token_bytes(8), parent=root.span_id, name="still going",
                               start=start + MS, end=0))
    r = post(server, request_of(*spans), x_api_key=p.key)
    assert r.status_code == 200, r.text
    finished = not (running_child or orphan)
    return Sent(tid.hex(), start, duration_ms if finished else None, error, tokens or (0, 0))


def _set(p: Project, trace_id: str, **values: Any) -> None:
    # The decision engine is not built yet: write the decision column it will fill.
    with p.engine.begin() as conn:
        conn.execute(traces.update().where(traces.c.project_id == p.id,
                                           traces.c.trace_id == trace_id).values(**values))


def _eval(p: Project, trace_id: str, passed: bool | None, created_ns: int) -> None:
    with p.engine.begin() as conn:
        conn.execute(evaluation_results.insert().values(
            project_id=p.id, trace_id=trace_id, eval_name="faithfulness", score=0.5, passed=passed,
            metadata={}, created_ns=created_ns))


def _overview(p: Project, **params: Any) -> dict[str, Any]:
    r = p.client.get("/api/v1/traces/stats/overview", params=params)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _cost(tokens: tuple[int, int]) -> float:
    return (tokens[0] * 0.15 + tokens[1] * 0.6) / 1e6  # gpt-4o-mini


def _p(values: list[float], pct: int) -> float:
    ordered = sorted(values)
    pos = (len(ordered) - 1) * pct / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return round(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo), 3)


def test_overview_counts_exactly_the_traces_in_the_window(server: ServerProcess,
                                                          project: Project) -> None:
    now = time.time_ns()
    t1 = _trace(server, project, now - 30 * MINUTE, 100, tokens=(100, 50))
    t2 = _trace(server, project, now - 40 * MINUTE, 300, tokens=(10, 5), error=True)
    t3 = _trace(server, project, now - 100 * MINUTE, 200, running_child=True, graph="support-graph")
    t4 = _trace(server, project, now - 150 * MINUTE, 400, orphan=True)
    t6 = _trace(server, project, now - 20 * MINUTE, 500, tokens=(1000, 500))
    old = _trace(server, project, now - 5 * HOUR, 700, tokens=(99_999, 99_999), error=True,
                 graph="support-graph")
    inside = [t1, t2, t3, t4, t6]
    for sent, action in ((t1, "ALLOW_ANSWER"), (t2, "BLOCK"), (t6, "BLOCK"), (old, "ESCALATE")):
        _set(project, sent.trace_id, decision=action)
    for passed in (True, True, False, None):
        _eval(project, t1.trace_id, passed, now - 10 * MINUTE)
    _eval(project, old.trace_id, True, now - 5 * HOUR)

    got = _overview(project, last_hours=3)
    assert got["last_hours"] == 3
    assert got["trace_count"] == 5
    assert got["error_count"] == 1 and got["error_rate"] == 0.2
    assert got["open_traces"] == 2  # a running span, and a parent that never arrived
    assert got["latency_ms"] == {"p50": 300.0, "p95": 480.0, "p99": 496.0}
    assert got["tokens"] == {"input": 1110, "output": 555, "total": 1665}
    assert got["cost_usd"] == pytest.approx(_cost((1110, 555)))
    assert got["decisions_by_action"] == {"ALLOW_ANSWER": 1, "BLOCK": 2, "ESCALATE": 0,
                                          "ALLOW_WITH_WARNING": 0, "NEED_CLARIFICATION": 0}
    assert got["eval"] == {"count": 4, "passed": 2, "failed": 1, "pass_rate": 0.6667}
    assert got["langgraph_runs"] == 1
    # Three finished traces at 1.0, two open ones at (known - open) / known = 1/2.
    assert got["completion_rate"] == 0.8
    listed = project.client.get("/api/v1/traces", params={"page_size": 200}).json()["items"]
    in_window = [t["completion_rate"] for t in listed if t["trace_id"] != old.trace_id]
    assert got["completion_rate"] == pytest.approx(sum(in_window) / len(in_window), abs=1e-4)

    series = got["series"]
    assert len(series) == 3 + 1  # the partial hour the window starts in, ..., the current hour
    first = parse_time_ns(series[0]["start"], "series")
    assert first % HOUR == 0
    assert [parse_time_ns(b["start"], "series") for b in series] == [first + i * HOUR for i in range(4)]
    assert first <= parse_time_ns(got["window_start"], "window_start") < first + HOUR
    assert parse_time_ns(got["window_end"], "window_end") == first + 4 * HOUR
    expected: list[dict[str, Any]] = [{"trace_count": 0, "error_count": 0, "total_tokens": 0, "cost_usd": 0.0,
                 "durations": []} for _ in series]
    for sent in inside:
        b = expected[(sent.start - first) // HOUR]
        b["trace_count"] += 1
        b["error_count"] += sent.error
        b["total_tokens"] += sum(sent.tokens)
        b["cost_usd"] += _cost(sent.tokens)
        if sent.duration_ms is not None:
            b["durations"].append(sent.duration_ms)
    for bucket, want in zip(series, expected):
        assert bucket["trace_count"] == want["trace_count"]
        assert bucket["error_count"] == want["error_count"]
        assert bucket["total_tokens"] == want["total_tokens"]
        assert bucket["cost_usd"] == pytest.approx(want["cost_usd"], abs=1e-8)
        assert bucket["latency_p50_ms"] == (_p(want["durations"], 50) if want["durations"] else 0.0)
    assert sum(b["trace_count"] for b in series) == got["trace_count"]

    # A wider window takes in the old trace, its error, decision, eval and graph run.
    day = _overview(project)
    assert day["last_hours"] == 24 and len(day["series"]) == 25
    assert day["trace_count"] == 6 and day["error_count"] == 2 and day["langgraph_runs"] == 2
    assert day["decisions_by_action"]["ESCALATE"] == 1
    assert day["eval"] == {"count": 5, "passed": 3, "failed": 1, "pass_rate": 0.75}
    assert day["latency_ms"]["p50"] == _p([100, 300, 500, 700], 50) == 400.0


def test_an_empty_project_answers_zeros(project: Project) -> None:
    got = _overview(project, last_hours=5)
    assert got["trace_count"] == got["error_count"] == got["open_traces"] == 0
    assert got["error_rate"] == got["completion_rate"] == got["cost_usd"] == 0.0
    assert got["latency_ms"] == {"p50": 0.0, "p95": 0.0, "p99": 0.0}
    assert got["tokens"] == {"input": 0, "output": 0, "total": 0}
    assert got["decisions_by_action"] == dict.fromkeys(ACTIONS, 0)
    assert got["eval"] == {"count": 0, "passed": 0, "failed": 0, "pass_rate": 0.0}
    assert got["langgraph_runs"] == 0
    assert len(got["series"]) == 6
    assert all(b == {"start": b["start"], "trace_count": 0, "error_count": 0, "total_tokens": 0,
                     "cost_usd": 0.0, "latency_p50_ms": 0.0} for b in got["series"])


def test_other_projects_traces_are_not_counted(server: ServerProcess, project: Project) -> None:
    now = time.time_ns()
    _trace(server, project, now - MINUTE, 50)
    other = httpx.Client(base_url=server.url, headers={"x-api-key": server.api_key})
    assert other.get("/api/v1/traces/stats/overview").status_code == 200
    other.close()
    assert _overview(project, last_hours=1)["trace_count"] == 1


def test_percentiles_match_a_brute_force_computation(project: Project) -> None:
    """Store level, many traces: the window-function rank picking equals sorting everything."""
    import random

    from tracehub.store import stats
    from tracehub.store.completion import completion

    rng = random.Random(7)
    now = time.time_ns()
    rows: list[dict[str, Any]] = []
    for i in range(157):
        start = now - rng.randrange(0, 3 * HOUR)
        duration = rng.randrange(1, 5_000) * MS + rng.randrange(0, MS)
        open_ = i % 10 == 0
        rows.append({"project_id": project.id, "trace_id": f"{i:032x}", "status": "success",
                     "start_ns": start, "end_ns": start + duration, "span_count": 2,
                     "running_span_count": 1 if open_ else 0, "missing_parent_count": 0,
                     "error_count": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0,
                     "updated_ns": now})
    with project.engine.begin() as conn:
        conn.execute(traces.insert(), rows)
    with project.engine.connect() as conn:
        got = stats.overview(conn, project.id, 3, now, completion(now, 30 * 10**9))
    finished = [r for r in rows if not r["running_span_count"]]
    durations = [(r["end_ns"] - r["start_ns"]) / 1e6 for r in finished]
    assert got["trace_count"] == 157 and got["open_traces"] == 16
    assert got["latency_ms"] == {f"p{q}": pytest.approx(_p(durations, q), abs=1e-3)
                                 for q in (50, 95, 99)}
    first = got["series"][0]["start_ns"]
    for i, bucket in enumerate(got["series"]):
        mine = [(r["end_ns"] - r["start_ns"]) / 1e6 for r in finished
                if (r["start_ns"] - first) // HOUR == i]
        assert bucket["latency_p50_ms"] == pytest.approx(_p(mine, 50) if mine else 0.0, abs=1e-3)
    assert got["completion_rate"] == pytest.approx((141 + 16 * 0.5) / 157, abs=1e-4)


@pytest.mark.parametrize("value", ["0", "721", "x", "-3", "1.5"])
def test_bad_last_hours_is_problem_json(server: ServerProcess, value: str) -> None:
    r = server.client.get("/api/v1/traces/stats/overview", params={"last_hours": value})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"][0]["path"] == "query.last_hours"


def test_unknown_parameters_are_problem_json(server: ServerProcess) -> None:
    """A misspelt window (`last_hour`) is refused, not answered for the default 24 hours."""
    r = server.client.get("/api/v1/traces/stats/overview", params={"last_hour": "3", "from": "x"})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    errors = r.json()["errors"]
    assert [e["path"] for e in errors] == ["query.from", "query.last_hour"]
    assert "last_hours" in errors[0]["message"]


def test_the_overview_needs_a_key(server: ServerProcess) -> None:
    assert httpx.get(server.url + "/api/v1/traces/stats/overview").status_code == 401
    r = httpx.get(server.url + "/api/v1/traces/stats/overview", headers={"x-api-key": "nope"})
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"


def test_evals_count_by_their_traces_start_time(server: ServerProcess, project: Project) -> None:
    """One clock: an eval is in the window when its trace started in it, whenever it was made."""
    now = time.time_ns()
    recent = _trace(server, project, now - 30 * MINUTE, 100)
    old = _trace(server, project, now - 5 * HOUR, 100)
    _eval(project, recent.trace_id, True, now - 6 * HOUR)  # judged from a replay, dated before
    _eval(project, old.trace_id, False, now - MINUTE)  # an old trace judged just now
    assert _overview(project, last_hours=3)["eval"] == {"count": 1, "passed": 1, "failed": 0,
                                                        "pass_rate": 1.0}
    assert _overview(project, last_hours=24)["eval"]["count"] == 2


def test_an_eval_of_a_trace_not_stored_counts_once_the_trace_is(server: ServerProcess,
                                                                 project: Project) -> None:
    tid = secrets.token_hex(16)
    _eval(project, tid, True, time.time_ns())
    assert _overview(project, last_hours=1)["eval"]["count"] == 0
    start = time.time_ns() - MINUTE
    root = make_span(bytes.fromhex(tid), secrets.token_bytes(8), name="late", start=start,
                     end=start + MS)
    assert post(server, request_of(root), x_api_key=project.key).status_code == 200
    assert _overview(project, last_hours=1)["eval"]["count"] == 1
