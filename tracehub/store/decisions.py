"""The decision log's rows: what one decision writes, and what the trace detail reads back.

`write` runs on the writer's thread, in its decision lane (`Writer.submit_decision`), so a decision
is one transaction: its idempotency key, the `trace_decisions` row(s), the judge span, the
`judge_runs` row(s), the judge cache, the trace's latest decision (`traces.decision`) and, on
ESCALATE, the case and its notifications (the outbox). It decides nothing: the decision engine
(`tracehub.decision.engine`) hands it finished rows. The reads below take the caller's project_id.

The judge span goes into a stored trace without folding into its row (`insert_annotation_spans`):
deciding must not stretch the trace's duration to the moment of the decision, add the judge's
tokens and cost to the application's, or change the inputs of the next decision on it (which
would defeat the cache). A trace that is not stored gets a row with the judge span as its root,
so a decision on it is found in the list.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from tracehub.records import Batch, Idem, SpanRecord
from tracehub.store.batchwrite import insert_annotation_spans
from tracehub.store.jsoncolumns import dumps
from tracehub.store.sql import Sql
from tracehub.store import queries
from tracehub.store.completion import CUTOFF
from tracehub.store.schema import (cases, evaluation_results, idempotency_keys, judge_cache, judge_runs, policies,
                                   policy_activations, trace_decisions, traces)

if TYPE_CHECKING:
    from tracehub.store.writer import Transaction

DECISION_COLUMNS = (
    "decision_id", "project_id", "trace_id", "policy_id", "policy_version_id", "policy_name",
    "policy_version", "action", "reason_code", "severity", "rule", "signals", "input_hash", "judge",
    "judge_model", "cached", "latency_ms", "shadow", "source", "judge_span_id", "auto_key", "created_ns",
)
_DECISION_JSON = frozenset(("rule", "signals"))
JUDGE_RUN_COLUMNS = (
    "project_id", "trace_id", "decision_id", "judge", "judge_model", "status", "input_hash", "output",
    "error", "cached", "latency_ms", "input_tokens", "output_tokens", "cost_usd", "span_id", "created_ns",
)
_JUDGE_RUN_JSON = frozenset(("output",))
CASE_COLUMNS = ("case_id", "project_id", "trace_id", "decision_id", "status", "severity", "reason_code",
                "title", "note", "created_ns", "updated_ns", "acked_ns", "resolved_ns")
NOTIFICATION_COLUMNS = ("project_id", "case_id", "endpoint_id", "event_type", "message_id", "payload",
                        "status", "attempts", "next_attempt_ns", "last_error", "created_ns", "delivered_ns")

@dataclass
class Verdict:
    """One policy version's decision as rows: its `trace_decisions` row, its `judge_runs` row,
    and its judge cache entry: `cache_output` to store, or `cache_hit` (its count grows)."""

    decision: dict[str, Any]
    judge_run: dict[str, Any]
    cache_key: str
    cache_output: dict[str, Any] | None
    cache_hit: bool


@dataclass
class DecisionWrite:
    project_id: int
    trace_id: str
    active: Verdict  # the decision that acts (also without a policy: the default)
    # The judge span first, then the spans under it (an LLM judge's call); the judge span's parent
    # is the trace's root as the transaction finds it.
    spans: list[SpanRecord]
    trace_stored: bool  # when the decision read it
    escalation: tuple[dict[str, Any], list[dict[str, Any]]] | None = None  # ESCALATE: case, notifications
    idem: Idem | None = None  # the API's idempotency key; its response is the answer to replay
    shadows: list[Verdict] = field(default_factory=list)  # recorded only: no span, snapshot or case


@dataclass
class Written:
    """`created`; `replayed` / `conflict` (the idempotency key was used, with this body or another:
    nothing written); `decided_before` (the automatic decision's key was taken: nothing written)."""

    status: str
    response: Any = None  # replayed: the first answer
    case_id: str | None = None


def write(tx: Transaction, w: DecisionWrite) -> Written:
    """On PostgreSQL (`Transaction.pipeline`, BEGIN and COMMIT sent with the statements) one round
    trip when nothing needs an answer first: a decision of the API on a trace stored when it was
    read. Two when something does: an automatic decision learns whether its key was still free
    (another process, an earlier run may have decided) and a decision on a trace not stored when
    read whether it is stored now (if not, the judge span starts its row). An idempotency key adds
    one."""
    sql = tx.sql
    q = sql.p
    if w.idem is not None:
        with tx.pipeline():
            taken = tx.cursor()
            taken.execute(sql.insert_sql("idempotency_keys", ("project_id", "key", "request_hash", "response",
                                                              "created_ns"), frozenset(("response",)),
                                         "ON CONFLICT (project_id, key) DO NOTHING") + " RETURNING 1",
                          _row(sql, (w.project_id, w.idem.key, w.idem.request_hash, dumps(w.idem.response),
                                     w.active.decision["created_ns"])))
        if taken.fetchone() is None:
            cur = tx.cur
            cur.execute(f"SELECT request_hash, response FROM idempotency_keys WHERE project_id = {q}"
                        f" AND key = {q}", (w.project_id, w.idem.key))
            request_hash, response = cur.fetchone()
            if request_hash != w.idem.request_hash:
                return Written("conflict")
            return Written("replayed", _json(response))
    decision_sql = sql.insert_sql("trace_decisions", DECISION_COLUMNS, _DECISION_JSON,
                                  "ON CONFLICT (project_id, auto_key) DO NOTHING")
    verdicts = [(v, _row(sql, _values(v.decision, DECISION_COLUMNS, _DECISION_JSON))) for v in (w.active, *w.shadows)]
    settled = w.trace_stored and all(v.decision["auto_key"] is None for v, _ in verdicts)
    runs = [v.judge_run for v, _ in verdicts]
    annotate = bool(w.spans)
    if not settled:
        # The decision row and the trace's row, locked as ingest would lock it, in one round trip.
        lock = " FOR UPDATE" if sql.pg else ""
        with tx.pipeline():
            made = tx.cursor()
            made.execute(decision_sql + " RETURNING 1", verdicts[0][1])
            root = tx.cursor()
            root.execute(f"SELECT seq FROM traces WHERE project_id = {q} AND trace_id = {q}{lock}",
                         (w.project_id, w.trace_id))
            if made.fetchone() is None:  # an automatic decision made already
                return Written("decided_before")
            stored = root.fetchone() is not None
        if len(verdicts) > 1:  # a shadow version may have decided it automatically while it was in force
            with tx.pipeline():
                shadows = [tx.cursor() for _ in verdicts[1:]]
                for c, (_v, row) in zip(shadows, verdicts[1:]):
                    c.execute(decision_sql + " RETURNING 1", row)
                runs = runs[:1] + [run for run, c in zip(runs[1:], shadows) if c.fetchone() is not None]
        if annotate and not stored:  # the judge span starts the trace's row
            tx.write(Batch(w.project_id, spans=list(w.spans)))
            annotate = False
    cur = tx.cur
    # Nothing below waits for a result: one round trip, with COMMIT.
    with tx.pipeline(commit=True):
        if settled:
            for _v, row in verdicts:
                cur.execute(decision_sql, row)
        if annotate:
            insert_annotation_spans(cur, sql, w.project_id, w.trace_id, w.spans)
        sql.executemany(cur, sql.insert_sql("judge_runs", JUDGE_RUN_COLUMNS, _JUDGE_RUN_JSON),
                        [_values(r, JUDGE_RUN_COLUMNS, _JUDGE_RUN_JSON) for r in runs])
        for v in (w.active, *w.shadows):
            _cache(cur, sql, w.project_id, v)
        cur.execute(f"UPDATE traces SET decision = {q} WHERE project_id = {q} AND trace_id = {q}",
                    (w.active.decision["action"], w.project_id, w.trace_id))
        if w.escalation is not None:
            case, notifications = w.escalation
            cur.execute(sql.insert_sql("cases", CASE_COLUMNS, frozenset()),
                        _row(sql, tuple(case[c] for c in CASE_COLUMNS)))
            if notifications:
                payload = frozenset(("payload",))
                sql.executemany(cur, sql.insert_sql("notifications", NOTIFICATION_COLUMNS, payload),
                                [_values(n, NOTIFICATION_COLUMNS, payload) for n in notifications])
    return Written("created", case_id=w.escalation[0]["case_id"] if w.escalation is not None else None)


def _cache(cur: Any, sql: Sql, project_id: int, v: Verdict) -> None:
    q = sql.p
    if v.cache_hit:
        cur.execute(f"UPDATE judge_cache SET hit_count = hit_count + 1 WHERE project_id = {q}"
                    f" AND cache_key = {q}", (project_id, v.cache_key))
    if v.cache_output is None:
        return
    cur.execute(sql.insert_sql("judge_cache", ("project_id", "cache_key", "output", "hit_count", "created_ns"),
                               frozenset(("output",)), "ON CONFLICT (project_id, cache_key) DO NOTHING"),
                (project_id, v.cache_key, dumps(v.cache_output), 0, v.decision["created_ns"]))


def _values(row: dict[str, Any], columns: tuple[str, ...], json_columns: frozenset[str]) -> tuple[Any, ...]:
    return tuple(dumps(row[c]) if c in json_columns and row[c] is not None else row[c] for c in columns)


def _row(sql: Sql, values: tuple[Any, ...]) -> tuple[Any, ...]:
    return sql.rows([values])[0]


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, (str, bytes)) else value


# -- reads ---------------------------------------------------------------------------------------


def _dicts(result: sa.CursorResult[Any]) -> list[dict[str, Any]]:
    keys = list(result.keys())
    return [dict(zip(keys, row)) for row in result]


# The reads' statements are built once (per dialect, like `queries`): building one took longer
# than running it. `_P` is the caller's project, `_K` the key the statement looks up.
_P = sa.bindparam("p", type_=sa.Integer)
_K = sa.bindparam("k", type_=sa.String)


@functools.cache
def _reads(dialect: str) -> dict[str, sa.Select[Any]]:
    d, j, c, k = trace_decisions.c, judge_runs.c, judge_cache.c, idempotency_keys.c
    return {
        "decisions": sa.select(trace_decisions).where(d.project_id == _P, d.trace_id == _K)
        .order_by(d.created_ns.desc(), d.id.desc()),
        "judge_runs": sa.select(judge_runs).where(j.project_id == _P, j.trace_id == _K)
        .order_by(j.created_ns.desc(), j.id.desc()),
        "cached_output": sa.select(c.output).where(c.project_id == _P, c.cache_key == _K),
        "decision": sa.select(trace_decisions).where(d.project_id == _P, d.decision_id == _K),
        "case": sa.select(cases.c.case_id).where(cases.c.project_id == _P, cases.c.decision_id == _K),
        "decided": sa.select(d.id).where(d.project_id == _P, d.auto_key == _K),
        "idempotency": sa.select(k.request_hash, k.response).where(k.project_id == _P, k.key == _K),
    }


def _read(conn: sa.Connection, name: str, project_id: int, key: str) -> sa.CursorResult[Any]:
    return conn.execute(_reads(conn.dialect.name)[name], {"p": project_id, "k": key})


def trace_decision_rows(conn: sa.Connection, project_id: int, trace_id: str) -> list[dict[str, Any]]:
    """A trace's decisions, newest first (shadow ones too, flagged)."""
    rows = _dicts(_read(conn, "decisions", project_id, trace_id))
    for row in rows:
        row["rule"], row["signals"] = _json(row["rule"]), _json(row["signals"])
    return rows


def trace_judge_runs(conn: sa.Connection, project_id: int, trace_id: str) -> list[dict[str, Any]]:
    """A trace's judge runs, newest first."""
    rows = _dicts(_read(conn, "judge_runs", project_id, trace_id))
    for row in rows:
        row["output"] = _json(row["output"])
    return rows


def cached_output(conn: sa.Connection, project_id: int, cache_key: str) -> dict[str, Any] | None:
    found = _read(conn, "cached_output", project_id, cache_key).scalar_one_or_none()
    out = _json(found)
    return out if isinstance(out, dict) else None


@dataclass
class Lookups:
    """What a decision reads beside its detectors (`lookups`)."""

    cached: list[dict[str, Any] | None] = field(default_factory=list)  # the judge cache's, by key
    endpoints: list[dict[str, Any]] = field(default_factory=list)  # enabled webhook endpoints


_ENDPOINTS = "SELECT id, url, enabled FROM webhook_endpoints WHERE project_id = {p} AND enabled ORDER BY id"


@contextlib.contextmanager
def lookups(conn: sa.Connection, project_id: int, cache_keys: list[str]) -> Iterator[Lookups]:
    """`cached_output` of each key and the project's enabled webhook endpoints (whom an ESCALATE
    notifies), filled in once the block is left. On PostgreSQL the queries go out as the block is
    entered (psycopg's pipeline mode) and are answered while it runs: a decision's detectors hide
    the round trip. `conn` must be in autocommit."""
    found = Lookups()
    if conn.dialect.name != "postgresql":
        yield found
        found.cached.extend(cached_output(conn, project_id, key) for key in cache_keys)
        found.endpoints.extend(_dicts(conn.execute(sa.text(_ENDPOINTS.format(p=":p")), {"p": project_id})))
        return
    dbapi = conn.connection.driver_connection
    assert dbapi is not None
    cursors = []
    with dbapi.pipeline():
        for key in cache_keys:
            cursor = dbapi.cursor()
            cursor.execute("SELECT output FROM judge_cache WHERE project_id = %s AND cache_key = %s",
                           (project_id, key))
            cursors.append(cursor)
        endpoints = dbapi.cursor()
        endpoints.execute(_ENDPOINTS.format(p="%s"), (project_id,))
        yield found
    for cursor in cursors:
        row = cursor.fetchone()
        out = _json(row[0]) if row is not None else None
        found.cached.append(out if isinstance(out, dict) else None)
    found.endpoints.extend({"id": i, "url": u, "enabled": bool(e)} for i, u, e in endpoints.fetchall())


def decision_row(conn: sa.Connection, project_id: int, decision_id: str) -> dict[str, Any] | None:
    rows = _dicts(_read(conn, "decision", project_id, decision_id))
    for row in rows:
        row["rule"], row["signals"] = _json(row["rule"]), _json(row["signals"])
    return rows[0] if rows else None


def case_of(conn: sa.Connection, project_id: int, decision_id: str) -> str | None:
    """The case a decision opened, if it escalated."""
    found: str | None = _read(conn, "case", project_id, decision_id).scalar()
    return found


@dataclass
class Inputs:
    """What a decision reads before it applies a policy (`inputs`)."""

    policy_stamp: tuple[Any, ...]
    trace: dict[str, Any] | None  # `queries.get_trace`'s row, None if the trace is not stored
    evals: list[dict[str, Any]]  # `queries.trace_evals`'s rows (none without the trace row)


def inputs(conn: sa.Connection, project_id: int, trace_id: str, cutoff_ns: int, now_ns: int) -> Inputs:
    """The trace's row and evals as the read model has them without spans
    (`readmodel.trace_read_model(spans=False)`) and the project's policy stamp, in one statement:
    one round trip, where they took three."""
    stmt, trace_keys, eval_keys = _inputs_query(conn.dialect.name)
    result = conn.execute(stmt, {"p": project_id, "t": trace_id, "now": now_ns, CUTOFF.key: cutoff_ns})
    rows = list(result)
    first = rows[0]  # one row at least: the trace's columns and the evals' are joined to a constant
    trace = dict(zip(trace_keys, first[_STAMP_COLUMNS:_STAMP_COLUMNS + len(trace_keys)]))
    if trace["trace_id"] is None:
        return Inputs(tuple(first[:_STAMP_COLUMNS]), None, [])
    start = _STAMP_COLUMNS + len(trace_keys)
    evals = [dict(zip(eval_keys, row[start:])) for row in rows]
    return Inputs(tuple(first[:_STAMP_COLUMNS]), trace, [e for e in evals if e["id"] is not None])


# What the policy in force and the shadow versions of a project depend on (`policies.active_policy`,
# `shadow_versions`): activations are only added, a shadow mark changes its policy's updated_ns, and
# time brings the next activation in force. Equal stamps, equal answers.
_STAMP_COLUMNS = 4


@functools.cache
def _inputs_query(dialect: str) -> tuple[sa.Select[Any], list[str], list[str]]:
    a, p, e, t = policy_activations.c, policies.c, evaluation_results.c, traces.c
    project, trace_id = _P, sa.bindparam("t", type_=sa.String)
    now = sa.bindparam("now", type_=sa.BigInteger)
    of_project = a.project_id == project
    stamp = [sa.select(sa.func.count()).select_from(policy_activations).where(of_project).scalar_subquery(),
             sa.select(sa.func.max(a.id)).where(of_project).scalar_subquery(),
             sa.select(sa.func.min(a.effective_ns)).where(of_project, a.effective_ns > now).scalar_subquery(),
             sa.select(sa.func.max(p.updated_ns)).where(p.project_id == project).scalar_subquery()]
    assert len(stamp) == _STAMP_COLUMNS
    trace_columns = queries.trace_read_columns()
    one = sa.select(sa.literal_column("1").label("one")).subquery("one")
    joined = (one.outerjoin(traces, sa.and_(t.project_id == project, t.trace_id == trace_id))
              .outerjoin(evaluation_results, sa.and_(e.project_id == project, e.trace_id == trace_id)))
    stmt = (sa.select(*(s.label(f"stamp_{i}") for i, s in enumerate(stamp)), *trace_columns,
                      *(c.label(f"eval_{c.name}") for c in evaluation_results.c))
            .select_from(joined).order_by(e.created_ns, e.id))
    return stmt, [c.name for c in trace_columns], [c.name for c in evaluation_results.c]


def decided(conn: sa.Connection, project_id: int, auto_key: str) -> bool:
    """Whether the automatic decision `auto_key` ("<trace_id>:<policy version id>") is made."""
    return _read(conn, "decided", project_id, auto_key).first() is not None


def idempotency_record(conn: sa.Connection, project_id: int, key: str) -> tuple[str, Any] | None:
    """(request_hash, response) stored under an idempotency key, or None."""
    row = _read(conn, "idempotency", project_id, key).mappings().first()
    return None if row is None else (row["request_hash"], _json(row["response"]))
