"""Dashboard statistics: one project's traces over the last N hours, in totals and per hour.

`overview()` answers `GET /api/v1/traces/stats/overview`. The window is the last `last_hours` hours
before `now_ns`; a trace belongs to it by its start time, and so do its evaluations (one clock for
both; an evaluation of a trace that is not stored is not counted until the trace is). The hourly
series is aligned to UTC hour starts, so its first bucket is the partial hour the window starts in
and its last the current hour; traces that start later in the current hour (client clocks running
ahead) count too, so the series always adds up to the totals.

What this module must never do:
- read a trace row into Python to count it: totals are SQL aggregates and percentiles are picked
  by window functions, so the answer costs a few small rows whatever the number of traces.
- leave a key or an hour out: an empty project answers zeros, and every hour bucket is present.
- use SQL that only one of SQLite and PostgreSQL understands.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from tracehub.records import STATUS_ERROR
from tracehub.store.completion import Completion
from tracehub.store.schema import evaluation_results, traces

HOUR_NS = 3_600_000_000_000
DECISION_ACTIONS = ("ALLOW_ANSWER", "BLOCK", "ESCALATE", "ALLOW_WITH_WARNING", "NEED_CLARIFICATION")
LATENCY_PERCENTILES = (50, 95, 99)


def window(last_hours: int, now_ns: int) -> tuple[int, int, int]:
    """(window start, first bucket start, end of the current hour bucket), all in ns."""
    start = now_ns - last_hours * HOUR_NS
    return start, start - start % HOUR_NS, now_ns - now_ns % HOUR_NS + HOUR_NS


def completion_rate_sql(c: Completion) -> sa.ColumnElement[float]:
    """The API's per-trace completion_rate (api/traces.py trace_view) as SQL, unrounded:
    known = span_count + awaited parents, open = running spans + awaited parents,
    (known - open) / known, and 0 for a trace that knows of no span."""
    known = traces.c.span_count + c.awaited
    return sa.case((known > 0, sa.cast(known - c.open_count, sa.Float) / known), else_=0.0)


def overview(conn: sa.Connection, project_id: int, last_hours: int, now_ns: int,
             c: Completion, bucket_percentiles: tuple[int, ...] = (50,),
             hourly_decisions: bool = False) -> dict[str, Any]:
    """`c`: completion as of `now_ns` (`tracehub.store.completion`), the trace list's own.

    The web UI's charts ask for more per hour: latency percentiles besides the p50
    (`latency_p95_ms` ...) and, with `hourly_decisions`, each hour's `decisions` by action."""
    start, first, end = window(last_hours, now_ns)
    t = traces.c
    in_window = sa.and_(t.project_id == project_id, t.start_ns >= start, t.start_ns < end)
    bucket = (t.start_ns - sa.literal(first, sa.BigInteger)) // HOUR_NS
    n_buckets = (end - first) // HOUR_NS

    def count_if(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
        return sa.func.sum(sa.case((condition, 1), else_=0))

    per_bucket = conn.execute(
        sa.select(
            bucket.label("bucket"),
            sa.func.count().label("trace_count"),
            count_if(t.status == STATUS_ERROR).label("error_count"),
            count_if(c.open_count > 0).label("open_traces"),
            count_if(t.graph_name.is_not(None)).label("langgraph_runs"),
            sa.func.sum(completion_rate_sql(c)).label("completion_sum"),
            sa.func.sum(t.input_tokens).label("input_tokens"),
            sa.func.sum(t.output_tokens).label("output_tokens"),
            sa.func.sum(t.cost_usd).label("cost_usd"),
        ).where(in_window).group_by(sa.literal_column("bucket"))
    ).mappings().all()
    # SUM over BIGINT is NUMERIC on PostgreSQL (Decimal in Python): normalize every value.
    buckets: dict[int, dict[str, Any]] = {
        int(r["bucket"]): {k: (float(v) if k in ("completion_sum", "cost_usd") else int(v))
                           for k, v in r.items() if k != "bucket"}
        for r in per_bucket}

    totals = dict.fromkeys(("trace_count", "error_count", "open_traces", "langgraph_runs",
                            "input_tokens", "output_tokens"), 0)
    completion_sum = cost = 0.0
    for b in buckets.values():
        for k in totals:
            totals[k] += b[k]
        completion_sum += b["completion_sum"]
        cost += b["cost_usd"]
    count = totals["trace_count"]
    overall_latency, bucket_latency = _latencies(conn, in_window, bucket, c, bucket_percentiles)
    by_hour = _hourly_decisions(conn, in_window, bucket) if hourly_decisions else {}

    empty = {"trace_count": 0, "error_count": 0, "input_tokens": 0, "output_tokens": 0,
             "cost_usd": 0.0}
    series = []
    for i in range(n_buckets):
        hour = buckets.get(i, empty)
        point = {
            "start_ns": first + i * HOUR_NS,
            "trace_count": hour["trace_count"],
            "error_count": hour["error_count"],
            "total_tokens": hour["input_tokens"] + hour["output_tokens"],
            "cost_usd": round(hour["cost_usd"], 8),
        }
        latency = bucket_latency.get(i, {})
        for pct in bucket_percentiles:  # 0 when the hour has no finished trace
            point[f"latency_p{pct}_ms"] = latency.get(pct, 0.0)
        if hourly_decisions:
            point["decisions"] = {**dict.fromkeys(DECISION_ACTIONS, 0), **by_hour.get(i, {})}
        series.append(point)
    return {
        "last_hours": last_hours,
        "window_start_ns": start,
        "window_end_ns": end,
        "trace_count": count,
        "error_count": totals["error_count"],
        "error_rate": round(totals["error_count"] / count, 4) if count else 0.0,
        "open_traces": totals["open_traces"],
        "completion_rate": round(completion_sum / count, 4) if count else 0.0,
        "latency_ms": overall_latency,
        "tokens": {"input": totals["input_tokens"], "output": totals["output_tokens"],
                   "total": totals["input_tokens"] + totals["output_tokens"]},
        "cost_usd": round(cost, 8),
        "decisions_by_action": _decisions(conn, in_window),
        "eval": _evals(conn, in_window),
        "langgraph_runs": totals["langgraph_runs"],
        "series": series,
    }


def _rank_rows(rn: Any, n: Any, pct: int) -> sa.ColumnElement[bool]:
    """True for the two rows (1-based rn of n) that the pct-th percentile interpolates between."""
    lo = (n - 1) * pct // 100  # integer division on both databases: floor of (n - 1) * pct / 100
    return sa.or_(rn == lo + 1, rn == lo + 2)


def _interpolate(values: dict[int, int], n: int, pct: int) -> float:
    """Linear interpolation between closest ranks (PostgreSQL percentile_cont), in ms."""
    if n == 0:
        return 0.0
    lo, rest = divmod((n - 1) * pct, 100)
    low = values[lo + 1]
    high = values.get(lo + 2, low)
    return round((low + (high - low) * rest / 100) / 1e6, 3)


def _latencies(conn: sa.Connection, in_window: sa.ColumnElement[bool], bucket: Any, c: Completion,
               bucket_percentiles: tuple[int, ...] = (50,)
               ) -> tuple[dict[str, float], dict[int, dict[int, float]]]:
    """p50/p95/p99 of finished traces' durations overall, and `bucket_percentiles` per hour bucket.

    Finished: nothing open (`Completion.open_count`), with an end. Window functions rank the
    durations in the database, so only the few rows at the wanted ranks come back.
    """
    t = traces.c
    duration = t.end_ns - t.start_ns
    ranked = sa.select(
        bucket.label("bucket"),
        duration.label("duration"),
        sa.func.row_number().over(order_by=duration).label("rn_all"),
        sa.func.count().over().label("n_all"),
        sa.func.row_number().over(partition_by=bucket, order_by=duration).label("rn_bucket"),
        sa.func.count().over(partition_by=bucket).label("n_bucket"),
    ).where(in_window, t.end_ns.is_not(None), c.open_count == 0).subquery()
    r = ranked.c
    wanted = [_rank_rows(r.rn_all, r.n_all, pct) for pct in LATENCY_PERCENTILES]
    wanted += [_rank_rows(r.rn_bucket, r.n_bucket, pct) for pct in bucket_percentiles]
    rows = conn.execute(sa.select(ranked).where(sa.or_(*wanted))).mappings().all()

    overall: dict[int, int] = {}
    n_all = 0
    per_bucket: dict[int, tuple[int, dict[int, int]]] = {}
    for row in rows:
        n_all = int(row["n_all"])
        overall[int(row["rn_all"])] = int(row["duration"])
        _, values = per_bucket.setdefault(int(row["bucket"]), (int(row["n_bucket"]), {}))
        values[int(row["rn_bucket"])] = int(row["duration"])
    latency = {f"p{pct}": _interpolate(overall, n_all, pct) for pct in LATENCY_PERCENTILES}
    return latency, {b: {pct: _interpolate(values, n_b, pct) for pct in bucket_percentiles}
                     for b, (n_b, values) in per_bucket.items()}


def _decisions(conn: sa.Connection, in_window: sa.ColumnElement[bool]) -> dict[str, int]:
    found = conn.execute(
        sa.select(traces.c.decision, sa.func.count())
        .where(in_window, traces.c.decision.is_not(None)).group_by(traces.c.decision)
    ).all()
    counts = dict.fromkeys(DECISION_ACTIONS, 0)
    counts.update({action: int(n) for action, n in found})
    return counts


def _hourly_decisions(conn: sa.Connection, in_window: sa.ColumnElement[bool], bucket: Any
                      ) -> dict[int, dict[str, int]]:
    found = conn.execute(
        sa.select(bucket.label("bucket"), traces.c.decision, sa.func.count())
        .where(in_window, traces.c.decision.is_not(None))
        .group_by(sa.literal_column("bucket"), traces.c.decision)
    ).all()
    hours: dict[int, dict[str, int]] = {}
    for hour, action, n in found:
        hours.setdefault(int(hour), {})[action] = int(n)
    return hours


def _evals(conn: sa.Connection, in_window: sa.ColumnElement[bool]) -> dict[str, Any]:
    """The evaluations of the traces in the window (the evals' index on trace id serves the join)."""
    e, t = evaluation_results.c, traces.c
    row = conn.execute(
        sa.select(
            sa.func.count(),
            sa.func.sum(sa.case((e.passed.is_(True), 1), else_=0)),
            sa.func.sum(sa.case((e.passed.is_(False), 1), else_=0)),
        ).select_from(evaluation_results.join(
            traces, sa.and_(t.project_id == e.project_id, t.trace_id == e.trace_id)))
        .where(in_window)
    ).one()
    count, passed, failed = int(row[0]), int(row[1] or 0), int(row[2] or 0)
    judged = passed + failed  # results with only a score have no pass / fail to count
    return {"count": count, "passed": passed, "failed": failed,
            "pass_rate": round(passed / judged, 4) if judged else 0.0}
