"""Dashboard statistics: one project's traces over the last N hours, in totals and per hour.

`overview()` answers `GET /api/v1/traces/stats/overview` and the web UI's KPI cards and charts.
The window is the last `last_hours` hours before `now_ns`; a trace belongs to it by its start
time, and so do its evaluations (one clock for both; an evaluation of a trace that is not stored
is not counted until the trace is). The hourly series is aligned to UTC hour starts, so its
first bucket is the partial hour the window starts in and its last the current hour; traces that
start later in the current hour (client clocks running ahead) count too, so the series always
adds up to the totals.

How (tracehub/store/rollups.py): the hourly roll-ups that triggers keep give the whole hours;
the part of the first hour outside the window (or inside it, whichever is shorter) is read from
the trace rows; the few traces whose awaited parents are not given up at `now_ns` are corrected.
Latency percentiles are exact: the roll-ups' counts by duration bucket locate each wanted rank,
and only that bucket's durations are read. Everything is read in one snapshot. The answer is the
one a scan of every trace row in the window gives, except that sums of floating-point columns
(cost, completion rates) are added in another order, which the rounding of the answer hides.

What this module must never do:
- read the window's trace rows (but the cut first hour's shorter part, and one duration bucket's
  from an index): the answer must cost about the same at a thousand traces or a million.
- leave a key or an hour out: an empty project answers zeros, and every hour bucket is present.
- use SQL that only one of SQLite and PostgreSQL understands.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import Any, Iterator

import sqlalchemy as sa

from tracehub.store import rollups
from tracehub.store.completion import Completion
from tracehub.store.rollups import HOUR_NS, Hours, Pending

DECISION_ACTIONS = ("ALLOW_ANSWER", "BLOCK", "ESCALATE", "ALLOW_WITH_WARNING", "NEED_CLARIFICATION")
LATENCY_PERCENTILES = (50, 95, 99)


def window(last_hours: int, now_ns: int) -> tuple[int, int, int]:
    """(window start, first bucket start, end of the current hour bucket), all in ns."""
    start = now_ns - last_hours * HOUR_NS
    return start, start - start % HOUR_NS, now_ns - now_ns % HOUR_NS + HOUR_NS


def overview(conn: sa.Connection, project_id: int, last_hours: int, now_ns: int,
             c: Completion, bucket_percentiles: tuple[int, ...] = (50,),
             hourly_decisions: bool = False) -> dict[str, Any]:
    """`c`: completion as of `now_ns` (`tracehub.store.completion`), the trace list's own.

    The web UI's charts ask for more per hour: latency percentiles besides the p50
    (`latency_p95_ms` ...) and, with `hourly_decisions`, each hour's `decisions` by action."""
    start, first, end = window(last_hours, now_ns)
    n_buckets = (end - first) // HOUR_NS
    with _snapshot(conn):
        hours, waiting = _hours(conn, project_id, start, first, end, c)
        overall_latency, hour_latency = _latencies(conn, project_id, hours, waiting, start, end,
                                                   bucket_percentiles)

    sums = dict.fromkeys(rollups.SUMS, 0)
    for hour in hours.sums.values():
        for k in sums:
            sums[k] += hour[k]
    decisions: Counter[str] = Counter()
    for found in hours.decisions.values():
        decisions.update(found)
    count = sums["trace_count"]

    series = []
    for i in range(n_buckets):
        hour_ns = first + i * HOUR_NS
        hour = hours.sums.get(hour_ns) or dict.fromkeys(rollups.SUMS, 0)
        point = {
            "start_ns": hour_ns,
            "trace_count": hour["trace_count"],
            "error_count": hour["error_count"],
            "total_tokens": hour["input_tokens"] + hour["output_tokens"],
            "cost_usd": round(float(hour["cost_usd"]), 8),
        }
        latency = hour_latency.get(hour_ns, {})
        for pct in bucket_percentiles:  # 0 when the hour has no finished trace
            point[f"latency_p{pct}_ms"] = latency.get(pct, 0.0)
        if hourly_decisions:
            point["decisions"] = _actions(hours.decisions.get(hour_ns, Counter()))
        series.append(point)
    judged = sums["eval_passed"] + sums["eval_failed"]  # results with only a score have no pass / fail
    return {
        "last_hours": last_hours,
        "window_start_ns": start,
        "window_end_ns": end,
        "trace_count": count,
        "error_count": sums["error_count"],
        "error_rate": round(sums["error_count"] / count, 4) if count else 0.0,
        "open_traces": sums["open_traces"],
        "completion_rate": round(sums["completion_sum"] / count, 4) if count else 0.0,
        "latency_ms": overall_latency,
        "tokens": {"input": sums["input_tokens"], "output": sums["output_tokens"],
                   "total": sums["input_tokens"] + sums["output_tokens"]},
        "cost_usd": round(float(sums["cost_usd"]), 8),
        "decisions_by_action": _actions(decisions),
        "eval": {"count": sums["eval_count"], "passed": sums["eval_passed"], "failed": sums["eval_failed"],
                 "pass_rate": round(sums["eval_passed"] / judged, 4) if judged else 0.0},
        "langgraph_runs": sums["langgraph_runs"],
        "series": series,
    }


@contextlib.contextmanager
def _snapshot(conn: sa.Connection) -> Iterator[None]:
    """The roll-ups and the trace rows they count read in one snapshot, on a connection that
    would otherwise give each statement its own (the API's reads)."""
    if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
        yield
        return
    pg = conn.dialect.name == "postgresql"
    conn.exec_driver_sql("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" if pg else "BEGIN")
    try:
        yield
    except BaseException:
        conn.exec_driver_sql("ROLLBACK")
        raise
    conn.exec_driver_sql("COMMIT")


def _hours(conn: sa.Connection, project_id: int, start: int, first: int, end: int,
           c: Completion) -> tuple[Hours, list[Pending]]:
    """The window's hours as a read at `c` counts them, and the traces it corrected."""
    if start == first:
        hours = rollups.rolled_up(conn, project_id, first, end)
    elif start - first <= HOUR_NS // 2:  # the first hour's part before the window is the shorter
        hours = rollups.rolled_up(conn, project_id, first, end)
        hours.add(rollups.live(conn, project_id, first, start), -1)
    else:
        hours = rollups.rolled_up(conn, project_id, first + HOUR_NS, end)
        hours.add(rollups.live(conn, project_id, start, first + HOUR_NS))
    waiting = rollups.pending(conn, project_id, start, end, c)
    rollups.correct(hours, waiting)
    return hours, waiting


def _actions(found: Counter[str]) -> dict[str, int]:
    return {**dict.fromkeys(DECISION_ACTIONS, 0), **{a: n for a, n in found.items() if n}}


def _ranks(n: int, pct: int) -> tuple[int, int]:
    """The 1-based ranks (of n) that the pct-th percentile interpolates between."""
    lo = (n - 1) * pct // 100
    return lo + 1, min(lo + 2, n)


def _interpolate(values: dict[int, int], n: int, pct: int) -> float:
    """Linear interpolation between closest ranks (PostgreSQL percentile_cont), in ms."""
    if n == 0:
        return 0.0
    lo, rest = divmod((n - 1) * pct, 100)
    low = values[lo + 1]
    high = values.get(lo + 2, low)
    return round((low + (high - low) * rest / 100) / 1e6, 3)


def _locate(histogram: Counter[int], ranks: set[int]) -> dict[int, tuple[int, int]]:
    """Each rank's (bucket, 0-based place in the bucket)."""
    out: dict[int, tuple[int, int]] = {}
    wanted = sorted(ranks)
    seen = 0
    for bucket in sorted(b for b, n in histogram.items() if n > 0):
        n = histogram[bucket]
        while wanted and wanted[0] <= seen + n:
            rank = wanted.pop(0)
            out[rank] = (bucket, rank - seen - 1)
        seen += n
    return out


def _latencies(conn: sa.Connection, project_id: int, hours: Hours, waiting: list[Pending], start: int,
               end: int, bucket_percentiles: tuple[int, ...]
               ) -> tuple[dict[str, float], dict[int, dict[int, float]]]:
    """p50/p95/p99 of finished traces' durations in the window, and `bucket_percentiles` per hour.

    Finished: nothing open (`Completion.open_count`), with an end. Exact: the counts by bucket
    tell which buckets hold the wanted ranks; those buckets' durations are read, less the ones of
    traces that `waiting` says a read does not count as finished yet, sorted and picked."""
    overall: Counter[int] = Counter()
    for counts in hours.latency.values():
        overall.update(counts)
    # (percentiles, histogram, start from, start before, hour or None for the whole window)
    asked: list[tuple[tuple[int, ...], Counter[int], int, int, int | None]] = [
        (LATENCY_PERCENTILES, overall, start, end, None)]
    asked += [(bucket_percentiles, counts, max(start, hour), hour + HOUR_NS, hour)
              for hour, counts in sorted(hours.latency.items()) if bucket_percentiles]
    places: list[tuple[int, dict[int, tuple[int, int]]]] = []
    spots: dict[tuple[int, int, int], set[int]] = {}  # (bucket, start from, before): places in it
    for pcts, histogram, lo, hi, _hour in asked:
        n = sum(v for v in histogram.values() if v > 0)
        located = _locate(histogram, {r for pct in pcts for r in _ranks(n, pct)} if n else set())
        places.append((n, located))
        for bucket, place in located.values():
            spots.setdefault((bucket, lo, hi), set()).add(place)
    not_yet = [p for p in waiting if p.finished < 0]  # finished once given up, not at `now`
    wanted: list[tuple[int, int, int, int, int | None]] = []
    for (bucket, lo, hi), at in spots.items():
        if any(p.bucket == bucket and lo <= p.start < hi for p in not_yet):
            wanted.append((bucket, lo, hi, 0, None))  # all of them, those to leave out found below
        else:
            wanted.append((bucket, lo, hi, min(at), max(at) - min(at) + 1))
    values: dict[tuple[int, int, int], tuple[int, list[int]]] = {}
    for (bucket, lo, hi, offset, limit), durations in zip(wanted, rollups.bucket_values(conn, project_id, wanted)):
        if limit is None:
            for p in not_yet:
                if p.bucket == bucket and lo <= p.start < hi and p.duration in durations:
                    durations.remove(p.duration)
        values[(bucket, lo, hi)] = (offset, durations)

    answers = []
    for (pcts, _histogram, lo, hi, _hour), (n, located) in zip(asked, places):
        ranked = {}
        for rank, (bucket, place) in located.items():
            offset, durations = values[(bucket, lo, hi)]
            # The counts and the index agree (one snapshot); never fail an answer if they did not.
            ranked[rank] = durations[min(place - offset, len(durations) - 1)] if durations else 0
        answers.append({pct: _interpolate(ranked, n, pct) for pct in pcts})
    overall_ms = {f"p{pct}": answers[0][pct] for pct in LATENCY_PERCENTILES}
    return overall_ms, {hour: answer for (_p, _h, _lo, _hi, hour), answer in zip(asked[1:], answers[1:])
                        if hour is not None}
