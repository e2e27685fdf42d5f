"""The stats overview's hourly roll-ups (migration 0017): what they hold, and reading them back.

Per project and UTC hour of trace start, triggers on `traces` and `evaluation_results` keep
(in the writing transaction, whichever connection writes):
- `trace_hours`: traces, errors, open traces, LangGraph runs, the sum of completion rates,
  tokens, cost, and the evaluations of the hour's traces (passed, failed);
- `trace_hour_latency`: finished traces by duration bucket (`bucket_of`);
- `trace_hour_decisions`: traces by latest decision.
Each write applies old row out, new row in, so a trace whose start moves to an earlier hour moves
there with its evaluations and decision. On PostgreSQL every backend adds to rows of its own
(`writer_pid`): reads add an hour's rows up.

Completion depends on the time of the question (tracehub/store/completion.py: an awaited parent
is given up `grace` after the trace's last span). The roll-ups count every trace as it will be
once given up (`EVENTUALLY`); the traces a read at its time has not given up yet (waiting for a
parent, nothing running, written within the grace) are found through `ix_traces_awaiting` and
corrected (`pending`). Trace counts are never negative (the writer keeps them so): a trace
without running spans whose parents are given up is finished.

A latency percentile is exact: the roll-ups' counts say which bucket holds each wanted rank, and
`ix_traces_latency` lists the durations of that bucket only (`bucket_values`).

What this module must never do: write (the triggers do), or read more trace rows than a bucket's
or the ones `live` is asked for.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

import sqlalchemy as sa

from tracehub.records import STATUS_ERROR
from tracehub.store.completion import COMPLETION, CUTOFF, Completion, completion
from tracehub.store.schema import (AWAITING_SQL, FINISHED_SQL, LAST_WRITE_SQL, LATENCY_BUCKET_SQL, evaluation_results,
                                   trace_hour_decisions, trace_hour_latency, trace_hours, traces)

HOUR_NS = 3_600_000_000_000
SUMS = ("trace_count", "error_count", "open_traces", "langgraph_runs", "completion_sum", "input_tokens",
        "output_tokens", "cost_usd", "eval_count", "eval_passed", "eval_failed")
FLOAT_SUMS = frozenset(("completion_sum", "cost_usd"))

# Completion once every awaited parent is given up: what the roll-ups count.
EVENTUALLY = completion(2**63 - 1, 0)
BUCKET: sa.ColumnElement[int] = sa.literal_column(LATENCY_BUCKET_SQL, sa.Integer)
DURATION = traces.c.end_ns - traces.c.start_ns
# Literal SQL, so that both databases see the partial indexes' conditions in a statement.
FINISHED = sa.text(FINISHED_SQL)
AWAITING = sa.text(AWAITING_SQL)
LAST_WRITE: sa.ColumnElement[int] = sa.literal_column(LAST_WRITE_SQL, sa.BigInteger)


def bucket_of(duration_ns: int) -> int:
    """`LATENCY_BUCKET_SQL` in Python: digits * 100 + the first two; 0 below zero."""
    if duration_ns < 0:
        return 0
    digits = str(duration_ns)
    return len(digits) * 100 + int(digits[:2])


def completion_rate_sql(c: Completion) -> sa.ColumnElement[float]:
    """The API's per-trace completion_rate (api/traces.py trace_view) as SQL, unrounded:
    known = span_count + awaited parents, open = running spans + awaited parents,
    (known - open) / known, and 0 for a trace that knows of no span."""
    known = traces.c.span_count + c.awaited
    return sa.case((known > 0, sa.cast(known - c.open_count, sa.Float) / known), else_=0.0)


@dataclass
class Hours:
    """Per hour start: the sums (`SUMS`), finished traces by bucket, traces by decision."""

    sums: dict[int, dict[str, Any]] = field(default_factory=dict)
    latency: dict[int, Counter[int]] = field(default_factory=dict)
    decisions: dict[int, Counter[str]] = field(default_factory=dict)

    def add(self, other: Hours, sign: int = 1) -> None:
        for hour, sums in other.sums.items():
            mine = self.sums.setdefault(hour, _zeros())
            for k, v in sums.items():
                mine[k] += sign * v
        for counts, theirs in ((self.latency, other.latency), (self.decisions, other.decisions)):
            for hour, found in theirs.items():
                mine_c: Counter[Any] = counts.setdefault(hour, Counter())
                for key, n in found.items():
                    mine_c[key] += sign * n


def _zeros() -> dict[str, Any]:
    return {k: (0.0 if k in FLOAT_SUMS else 0) for k in SUMS}


def _number(key: str, value: Any) -> Any:
    # SUM over BIGINT is NUMERIC on PostgreSQL (Decimal in Python).
    return float(value or 0) if key in FLOAT_SUMS else int(value or 0)


# Statements are built once (`_statements`): building one took longer than running it.
_P = sa.bindparam("p", type_=sa.Integer)
_LO = sa.bindparam("lo", type_=sa.BigInteger)
_HI = sa.bindparam("hi", type_=sa.BigInteger)


def _count_if(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
    return sa.func.sum(sa.case((condition, 1), else_=0))


@functools.cache
def _statements() -> dict[str, sa.Select[Any]]:
    h, lat, dec, t, e = trace_hours.c, trace_hour_latency.c, trace_hour_decisions.c, traces.c, evaluation_results.c
    c = EVENTUALLY
    in_range = sa.and_(t.project_id == _P, t.start_ns >= _LO, t.start_ns < _HI)
    return {
        "sums": sa.select(h.hour_ns, *(sa.func.sum(h[k]).label(k) for k in SUMS))
        .where(h.project_id == _P, h.hour_ns >= _LO, h.hour_ns < _HI).group_by(h.hour_ns),
        "latency": sa.select(lat.hour_ns, lat.bucket, sa.func.sum(lat.n))
        .where(lat.project_id == _P, lat.hour_ns >= _LO, lat.hour_ns < _HI).group_by(lat.hour_ns, lat.bucket),
        "decisions": sa.select(dec.hour_ns, dec.action, sa.func.sum(dec.n))
        .where(dec.project_id == _P, dec.hour_ns >= _LO, dec.hour_ns < _HI).group_by(dec.hour_ns, dec.action),
        # One pass over the rows: grouped by duration bucket (finished traces) and decision.
        "live": sa.select(
            sa.case((sa.and_(t.end_ns.is_not(None), c.open_count == 0), BUCKET)).label("bucket"),
            t.decision,
            sa.func.count().label("trace_count"),
            _count_if(t.status == STATUS_ERROR).label("error_count"),
            _count_if(c.open_count > 0).label("open_traces"),
            _count_if(t.graph_name.is_not(None)).label("langgraph_runs"),
            sa.func.sum(completion_rate_sql(c)).label("completion_sum"),
            sa.func.sum(t.input_tokens).label("input_tokens"),
            sa.func.sum(t.output_tokens).label("output_tokens"),
            sa.func.sum(t.cost_usd).label("cost_usd"),
        ).where(in_range).group_by(sa.literal_column("bucket"), t.decision),
        # The evaluations' index on trace id serves the join.
        "live_evals": sa.select(sa.func.count(), _count_if(e.passed.is_(True)), _count_if(e.passed.is_(False)))
        .select_from(evaluation_results.join(traces, sa.and_(t.project_id == e.project_id,
                                                             t.trace_id == e.trace_id)))
        .where(in_range),
        "pending": _pending_statement(COMPLETION, True),
    }


def rolled_up(conn: sa.Connection, project_id: int, first: int, end: int) -> Hours:
    """The roll-ups of the hours in [first, end): traces counted `EVENTUALLY`."""
    out = Hours()
    q, params = _statements(), {"p": project_id, "lo": first, "hi": end}
    for row in conn.execute(q["sums"], params).mappings():
        out.sums[int(row["hour_ns"])] = {k: _number(k, row[k]) for k in SUMS}
    for hour, bucket, n in conn.execute(q["latency"], params):
        if n:
            out.latency.setdefault(int(hour), Counter())[int(bucket)] = int(n)
    for hour, action, n in conn.execute(q["decisions"], params):
        if n:
            out.decisions.setdefault(int(hour), Counter())[action] = int(n)
    return out


def live(conn: sa.Connection, project_id: int, lo: int, hi: int) -> Hours:
    """What the roll-ups hold for the traces that start in [lo, hi), within one hour, computed
    from their rows."""
    q, params = _statements(), {"p": project_id, "lo": lo, "hi": hi}
    hour = lo - lo % HOUR_NS
    out = Hours()
    groups = conn.execute(q["live"], params).mappings().all()
    if not groups:
        return out
    sums = out.sums[hour] = _zeros()
    latency: Counter[int] = out.latency.setdefault(hour, Counter())
    decisions: Counter[str] = out.decisions.setdefault(hour, Counter())
    for group in groups:
        for k in SUMS[:8]:
            sums[k] += _number(k, group[k])
        if group["bucket"] is not None:
            latency[int(group["bucket"])] += int(group["trace_count"])
        if group["decision"] is not None:
            decisions[group["decision"]] += int(group["trace_count"])
    count, passed, failed = conn.execute(q["live_evals"], params).one()
    sums.update(eval_count=int(count), eval_passed=int(passed or 0), eval_failed=int(failed or 0))
    return out


@dataclass(frozen=True)
class Pending:
    """A trace the roll-ups count as given up and a read at its time does not (yet)."""

    start: int
    bucket: int
    duration: int | None
    open_traces: int  # as read, minus as rolled up
    completion: float
    finished: int

    @property
    def hour(self) -> int:
        return self.start - self.start % HOUR_NS


def _pending_statement(c: Completion, indexed: bool) -> sa.Select[Any]:
    t = traces.c

    def finished(x: Completion) -> sa.ColumnElement[int]:
        return sa.case((sa.and_(t.end_ns.is_not(None), x.open_count == 0), 1), else_=0)

    def opened(x: Completion) -> sa.ColumnElement[int]:
        return sa.case((x.open_count > 0, 1), else_=0)

    # The start is tested in Python, not in SQL, where SQLite would rather range over it.
    found: list[Any] = [t.project_id == _P, AWAITING, sa.not_(c.given_up)]
    if indexed:  # the index's range; the condition above decides
        found.append(LAST_WRITE > CUTOFF)
    return sa.select(
        t.start_ns, BUCKET, DURATION, opened(c) - opened(EVENTUALLY),
        completion_rate_sql(c) - completion_rate_sql(EVENTUALLY), finished(c) - finished(EVENTUALLY),
    ).where(*found)


def pending(conn: sa.Connection, project_id: int, lo: int, hi: int, c: Completion) -> list[Pending]:
    """The traces starting in [lo, hi) whose awaited parents `c` has not given up."""
    if c.cutoff_ns is not None:
        rows = conn.execute(_statements()["pending"], {"p": project_id, CUTOFF.key: c.cutoff_ns}).all()
    else:
        rows = conn.execute(_pending_statement(c, False), {"p": project_id}).all()
    return [Pending(int(start), -1 if bucket is None else int(bucket),
                    None if duration is None else int(duration),
                    int(opened_), float(rate), int(done))
            for start, bucket, duration, opened_, rate, done in rows if lo <= start < hi]


def correct(hours: Hours, found: Iterable[Pending]) -> None:
    """Rolled-up hours as a read at its time sees them."""
    for p in found:
        sums = hours.sums.setdefault(p.hour, _zeros())
        sums["open_traces"] += p.open_traces
        sums["completion_sum"] += p.completion
        if p.finished:
            hours.latency.setdefault(p.hour, Counter())[p.bucket] += p.finished


def bucket_values(conn: sa.Connection, project_id: int,
                  wanted: list[tuple[int, int, int, int, int | None]]) -> list[list[int]]:
    """For each (bucket, start from, start before, offset, limit) of `wanted`, the durations of
    the finished traces there (given-up parents counted as given up), in increasing order from
    `offset` on, at most `limit` (None: all of them). One statement, each part read from
    `ix_traces_latency`."""
    if not wanted:
        return []
    t = traces.c
    parts = []
    for i, (bucket, lo, hi, offset, limit) in enumerate(wanted):
        part = (sa.select(sa.literal(i, sa.Integer).label("i"), DURATION.label("d"))
                .where(t.project_id == project_id, BUCKET == bucket, t.start_ns >= lo, t.start_ns < hi, FINISHED)
                .order_by(DURATION).offset(offset).limit(limit).subquery())
        parts.append(sa.select(part.c.i, part.c.d))
    out: list[list[int]] = [[] for _ in wanted]
    for i, d in conn.execute(sa.union_all(*parts)).all():
        out[i].append(int(d))
    return out
