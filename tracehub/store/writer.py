"""The one writer per database: a bounded queue, group commit, idempotent bulk writes.

Receivers `submit()` a `Batch` and wait on the returned future; the writer thread takes every batch
waiting in the queue (up to `batch_spans`), writes them in one transaction and resolves each future
only after COMMIT, so an acknowledged span is a committed span. A full queue raises `QueueFull`
at once (the receivers answer 429 / RESOURCE_EXHAUSTED) instead of growing memory.

Trace-level derived fields are maintained incrementally: the writer reads the current rows of the
traces a transaction touches, folds in only the spans that were not stored before (so a re-delivered
span counts once), and upserts the rows. Being the single writer is what makes that read-modify-write
safe; on PostgreSQL the rows are also locked FOR UPDATE.

The hot path uses the DB-API cursor with `executemany` (the SQLite module and psycopg's pipeline
mode both run it in C with the GIL released) and no per-span ORM objects.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import defaultdict
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Iterable

import sqlalchemy as sa

from tracehub.records import STATUS_ERROR, STATUS_RUNNING, STATUS_SUCCESS, Batch, EventRecord, SpanRecord

log = logging.getLogger(__name__)

TOKEN_SPAN_TYPES = frozenset(("llm", "embedding"))


class QueueFull(Exception):
    """The writer is behind: the caller should answer with backpressure."""


class WriterStopped(Exception):
    """The writer is shutting down and takes no new work."""


@dataclass
class WriteResult:
    spans_stored: int
    spans_duplicate: int
    events_stored: int


def dumps(value: Any) -> str:
    # UTF-8 as is (no \\u escapes) so search and storage see Korean text as written.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


class _Sql:
    """The few differences between SQLite's and psycopg's SQL on the write path."""

    def __init__(self, dialect: str) -> None:
        self.pg = dialect == "postgresql"
        self.p = "%s" if self.pg else "?"
        self.pj = "%s::jsonb" if self.pg else "?"

    def any_of(self, column: str, values: list[Any]) -> tuple[str, list[Any]]:
        if self.pg:
            return f"{column} = ANY(%s)", [values]
        return f"{column} IN ({','.join('?' * len(values))})", list(values)

    def begin(self, cur: Any) -> None:
        # SQLite: take the write lock up front so the read-modify-write cannot deadlock on upgrade.
        cur.execute("BEGIN" if self.pg else "BEGIN IMMEDIATE")


SPAN_COLUMNS = (
    "project_id", "trace_id", "span_id", "parent_span_id", "name", "kind", "span_type", "status",
    "status_message", "start_ns", "end_ns", "model", "input_text", "output_text", "input_tokens",
    "output_tokens", "total_tokens", "cost_usd", "user_id", "session_id", "environment",
    "graph_name", "node_name", "step", "attributes", "resource", "scope", "events", "links",
)
_SPAN_JSON = frozenset(("attributes", "resource", "scope", "events", "links"))

TRACE_COLUMNS = (
    "project_id", "trace_id", "name", "status", "start_ns", "end_ns", "model", "environment",
    "user_id", "session_id", "input_text", "output_text", "attributes", "root_span_id",
    "span_count", "running_span_count", "missing_parent_count", "error_count", "input_tokens",
    "output_tokens", "cost_usd", "decision", "user_review_passed", "input_rank_ns",
    "output_rank_ns", "updated_ns",
)
_TRACE_KEY = ("project_id", "trace_id")

EVENT_COLUMNS = ("project_id", "trace_id", "span_id", "event_type", "name", "time_ns", "payload",
                 "idempotency_key")


def _span_row(project_id: int, s: SpanRecord) -> tuple[Any, ...]:
    m = s.mapped
    return (
        project_id, s.trace_id, s.span_id, s.parent_span_id, s.name, s.kind, m.span_type, s.status,
        s.status_message, s.start_ns, s.end_ns, m.model, m.input_text, m.output_text,
        m.input_tokens, m.output_tokens, m.total_tokens, s.cost_usd, m.user_id, m.session_id,
        m.environment, m.graph_name, m.node_name, m.step, dumps(s.attributes), dumps(s.resource),
        dumps(s.scope), dumps(s.events), dumps(s.links),
    )


def _new_trace_row(project_id: int, trace_id: str, now: int) -> dict[str, Any]:
    row = dict.fromkeys(TRACE_COLUMNS)
    row.update(project_id=project_id, trace_id=trace_id, status=STATUS_RUNNING, start_ns=None,
               span_count=0, running_span_count=0, missing_parent_count=0, error_count=0,
               input_tokens=0, output_tokens=0, cost_usd=0.0, updated_ns=now)
    return row


def fold_span(row: dict[str, Any], s: SpanRecord) -> None:
    """Fold one newly stored span into its trace row (counts, times, root, text, model, tokens)."""
    m = s.mapped
    row["span_count"] += 1
    if s.end_ns is None:
        row["running_span_count"] += 1
    if s.status == STATUS_ERROR:
        row["error_count"] += 1
    if row["start_ns"] is None or s.start_ns < row["start_ns"]:
        row["start_ns"] = s.start_ns
    if s.end_ns is not None and (row["end_ns"] is None or s.end_ns > row["end_ns"]):
        row["end_ns"] = s.end_ns
    is_root = s.parent_span_id is None
    if is_root:
        row["root_span_id"] = s.span_id
        row["name"] = s.name
    elif row["name"] is None:
        row["name"] = s.name
    if m.span_type in TOKEN_SPAN_TYPES:
        row["input_tokens"] += m.input_tokens or 0
        row["output_tokens"] += m.output_tokens or 0
        if m.model and not row["model"]:
            row["model"] = m.model
    if s.cost_usd:
        row["cost_usd"] += s.cost_usd
    for field in ("environment", "user_id", "session_id"):
        value = getattr(m, field)
        if value and not row[field]:
            row[field] = value
    # The root's text wins (rank -1); otherwise the earliest input and the latest output.
    if m.input_text:
        rank = -1 if is_root else s.start_ns
        current = row["input_rank_ns"]
        if current is None or (current != -1 and rank < current):
            row["input_text"], row["input_rank_ns"] = m.input_text, rank
    if m.output_text:
        rank = -1 if is_root else (s.end_ns or s.start_ns)
        current = row["output_rank_ns"]
        if current is None or (current != -1 and (rank == -1 or rank > current)):
            row["output_text"], row["output_rank_ns"] = m.output_text, rank


def trace_status(row: dict[str, Any]) -> str:
    if row["error_count"]:
        return STATUS_ERROR
    if row["running_span_count"] or row["missing_parent_count"] or row["root_span_id"] is None:
        return STATUS_RUNNING
    return STATUS_SUCCESS


class _Job:
    __slots__ = ("batch", "future", "size")

    def __init__(self, batch: Batch) -> None:
        self.batch = batch
        self.future: Future[WriteResult] = Future()
        self.size = max(1, len(batch))


class Writer:
    def __init__(self, engine: sa.Engine, max_queued_spans: int = 100_000,
                 batch_spans: int = 5_000) -> None:
        self._engine = engine
        self._sql = _Sql(engine.dialect.name)
        self.max_queued_spans = max_queued_spans
        self._batch_spans = batch_spans
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._queued = 0
        self._lock = threading.Lock()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="tracehub-writer", daemon=True)
        self.committed_spans = 0
        self.transactions = 0

    @property
    def queued_spans(self) -> int:
        return self._queued

    def start(self) -> None:
        self._thread.start()

    def submit(self, batch: Batch) -> Future[WriteResult]:
        job = _Job(batch)
        with self._lock:
            if self._stopping:
                raise WriterStopped("the writer is shutting down")
            if self._queued + job.size > self.max_queued_spans and self._queued:
                raise QueueFull(f"{self._queued} spans are waiting to be written")
            self._queued += job.size
        self._queue.put(job)
        return job.future

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking work, write everything already accepted, then return."""
        with self._lock:
            self._stopping = True
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        conn = self._engine.raw_connection()
        try:
            dbapi = conn.driver_connection
            if self._sql.pg:
                dbapi.autocommit = True  # explicit BEGIN / COMMIT below
            else:
                dbapi.isolation_level = None
            stop = False
            while not stop:
                job = self._queue.get()
                if job is None:
                    break
                jobs, size = [job], job.size
                while size < self._batch_spans:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    jobs.append(nxt)
                    size += nxt.size
                self._commit(dbapi, jobs)
                with self._lock:
                    self._queued -= size
        finally:
            conn.close()

    def _commit(self, dbapi: Any, jobs: list[_Job]) -> None:
        try:
            results = self._transaction(dbapi, jobs)
        except Exception:
            log.exception("group commit of %d requests failed; retrying them one by one", len(jobs))
            self._rollback(dbapi)
            if len(jobs) == 1:
                jobs[0].future.set_exception(RuntimeError("the database rejected this request"))
                return
            for job in jobs:
                self._commit(dbapi, [job])
            return
        self.transactions += 1
        for job, result in zip(jobs, results):
            self.committed_spans += result.spans_stored
            job.future.set_result(result)

    @staticmethod
    def _rollback(dbapi: Any) -> None:
        try:
            dbapi.cursor().execute("ROLLBACK")
        except Exception:  # no transaction open
            pass

    def _transaction(self, dbapi: Any, jobs: list[_Job]) -> list[WriteResult]:
        cur = dbapi.cursor()
        self._sql.begin(cur)
        results = []
        for job in jobs:
            results.append(self._write_batch(cur, job.batch))
        cur.execute("COMMIT")
        return results

    # -- one request's records -----------------------------------------------------------------

    def _write_batch(self, cur: Any, batch: Batch) -> WriteResult:
        stored = duplicate = 0
        if batch.spans:
            stored, duplicate = self._write_spans(cur, batch.project_id, batch.spans)
        if batch.events:
            self._write_events(cur, batch.project_id, batch.events)
        return WriteResult(stored, duplicate, len(batch.events))

    def _select(self, cur: Any, sql: str, params: list[Any]) -> list[Any]:
        cur.execute(sql, params)
        return cur.fetchall()

    def _write_spans(self, cur: Any, project_id: int, spans: list[SpanRecord]) -> tuple[int, int]:
        q, sql = self._sql.p, self._sql
        unique: dict[tuple[str, str], SpanRecord] = {}
        for s in spans:
            unique.setdefault((s.trace_id, s.span_id), s)
        trace_ids = sorted({s.trace_id for s in unique.values()})
        ids = sorted({s.span_id for s in unique.values()}
                     | {s.parent_span_id for s in unique.values() if s.parent_span_id})
        t_in, t_params = sql.any_of("trace_id", trace_ids)
        s_in, s_params = sql.any_of("span_id", ids)
        p_in, _ = sql.any_of("parent_span_id", ids)
        existing = {tuple(r) for r in self._select(
            cur, f"SELECT trace_id, span_id FROM spans WHERE project_id = {q} AND {t_in} AND {s_in}",
            [project_id, *t_params, *s_params])}
        referenced = {tuple(r) for r in self._select(
            cur, f"SELECT DISTINCT trace_id, parent_span_id FROM spans"
                 f" WHERE project_id = {q} AND {t_in} AND {p_in}",
            [project_id, *t_params, *s_params])}
        new = [s for key, s in unique.items() if key not in existing]
        if not new:
            return 0, len(spans)
        self._fill_text_from_logs(cur, project_id, new)
        rows = self._trace_rows(cur, project_id, trace_ids)
        now = time.time_ns()
        new_keys = {(s.trace_id, s.span_id) for s in new}
        seen_parents: set[tuple[str, str]] = set()
        for s in sorted(new, key=lambda s: s.start_ns):
            row = rows.get(s.trace_id)
            if row is None:
                row = rows[s.trace_id] = _new_trace_row(project_id, s.trace_id, now)
            fold_span(row, s)
            # A stored child already counted this span as a missing parent.
            if (s.trace_id, s.span_id) in referenced:
                row["missing_parent_count"] -= 1
            parent = (s.trace_id, s.parent_span_id) if s.parent_span_id else None
            if (parent and parent not in existing and parent not in new_keys
                    and parent not in referenced and parent not in seen_parents):
                row["missing_parent_count"] += 1
                seen_parents.add(parent)
        cols = ", ".join(SPAN_COLUMNS)
        values = ", ".join(sql.pj if c in _SPAN_JSON else q for c in SPAN_COLUMNS)
        cur.executemany(
            f"INSERT INTO spans ({cols}) VALUES ({values})"
            " ON CONFLICT (project_id, trace_id, span_id) DO NOTHING",
            [_span_row(project_id, s) for s in new],
        )
        self._upsert_traces(cur, [rows[t] for t in {s.trace_id for s in new}], now)
        return len(new), len(spans) - len(new)

    def _trace_rows(self, cur: Any, project_id: int, trace_ids: list[str]) -> dict[str, dict[str, Any]]:
        t_in, t_params = self._sql.any_of("trace_id", trace_ids)
        lock = " FOR UPDATE" if self._sql.pg else ""
        found = self._select(
            cur, f"SELECT {', '.join(TRACE_COLUMNS)} FROM traces"
                 f" WHERE project_id = {self._sql.p} AND {t_in}{lock}",
            [project_id, *t_params])
        rows = {}
        for r in found:
            row = dict(zip(TRACE_COLUMNS, r))
            if isinstance(row["attributes"], str):
                row["attributes"] = json.loads(row["attributes"])
            rows[row["trace_id"]] = row
        return rows

    def _upsert_traces(self, cur: Any, rows: Iterable[dict[str, Any]], now: int) -> None:
        q, sql = self._sql.p, self._sql
        params = []
        for row in rows:
            row["status"] = trace_status(row)
            row["updated_ns"] = now
            params.append(tuple(
                dumps(row[c]) if c == "attributes" and row[c] is not None else row[c]
                for c in TRACE_COLUMNS
            ))
        cols = ", ".join(TRACE_COLUMNS)
        values = ", ".join(sql.pj if c == "attributes" else q for c in TRACE_COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in TRACE_COLUMNS if c not in _TRACE_KEY)
        cur.executemany(
            f"INSERT INTO traces ({cols}) VALUES ({values})"
            f" ON CONFLICT (project_id, trace_id) DO UPDATE SET {updates}",
            params,
        )

    def _fill_text_from_logs(self, cur: Any, project_id: int, new: list[SpanRecord]) -> None:
        """Spans whose content arrived earlier as GenAI log records take their text from them."""
        lacking = [s for s in new if not (s.mapped.input_text and s.mapped.output_text)]
        if not lacking:
            return
        t_in, t_params = self._sql.any_of("trace_id", sorted({s.trace_id for s in lacking}))
        found = self._select(
            cur, f"SELECT trace_id, span_id, payload FROM span_events WHERE project_id = {self._sql.p}"
                 f" AND {t_in} AND event_type = 'LOG' AND span_id IS NOT NULL ORDER BY time_ns, id",
            [project_id, *t_params])
        texts: dict[tuple[str, str], tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
        for trace_id, span_id, payload in found:
            derived = (json.loads(payload) if isinstance(payload, str) else payload).get("derived")
            if derived:
                ins, outs = texts[(trace_id, span_id)]
                if derived.get("input_text"):
                    ins.append(derived["input_text"])
                if derived.get("output_text"):
                    outs.append(derived["output_text"])
        for s in lacking:
            got = texts.get((s.trace_id, s.span_id))
            if got:
                s.mapped.input_text = s.mapped.input_text or "\n".join(got[0]) or None
                s.mapped.output_text = s.mapped.output_text or "\n".join(got[1]) or None

    def _write_events(self, cur: Any, project_id: int, events: list[EventRecord]) -> None:
        q, sql = self._sql.p, self._sql
        rows = []
        texts: dict[tuple[str, str], tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
        for e in sorted(events, key=lambda e: e.time_ns):
            payload = e.payload
            if e.input_text or e.output_text:
                payload = {**payload, "derived": {"input_text": e.input_text,
                                                  "output_text": e.output_text}}
                if e.trace_id and e.span_id:
                    ins, outs = texts[(e.trace_id, e.span_id)]
                    if e.input_text:
                        ins.append(e.input_text)
                    if e.output_text:
                        outs.append(e.output_text)
            rows.append((project_id, e.trace_id, e.span_id, e.event_type, e.name, e.time_ns,
                         dumps(payload), e.idempotency_key))
        values = ", ".join(sql.pj if c == "payload" else q for c in EVENT_COLUMNS)
        cur.executemany(f"INSERT INTO span_events ({', '.join(EVENT_COLUMNS)}) VALUES ({values})", rows)
        # Spans already stored without content take it from their log records.
        updates = []
        for (trace_id, span_id), (ins, outs) in texts.items():
            updates.append(("\n".join(ins) or None, "\n".join(outs) or None, project_id, trace_id, span_id))
        if updates:
            cur.executemany(
                f"UPDATE spans SET input_text = COALESCE(input_text, {q}),"
                f" output_text = COALESCE(output_text, {q})"
                f" WHERE project_id = {q} AND trace_id = {q} AND span_id = {q}", updates)
            cur.executemany(
                f"UPDATE traces SET input_text = COALESCE(input_text, {q}),"
                f" output_text = COALESCE(output_text, {q}) WHERE project_id = {q} AND trace_id = {q}",
                [u[:4] for u in updates])
