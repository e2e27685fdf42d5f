"""Writes one `Batch` inside the writer's open transaction: idempotency keys, spans, trace rows,
events, lifecycle (END / ERROR) and evals.

Idempotent by construction: an item whose idempotency key was seen with the same body is skipped
and answered with the first result; a span already stored (same trace_id, span_id) is not stored or
counted again. It uses the DB-API cursor and `executemany` only, no per-span ORM objects; it never
commits (the writer does, once per group of requests).

Beside it: the dialect's SQL (`sql`), the span rows it stores (`spanrow`), JSON columns
(`jsoncolumns`) and the resources already stored (`resources`).
"""

from __future__ import annotations

import operator
import time
from collections import defaultdict
from dataclasses import replace
from typing import Any, Iterator

from tracehub.records import (
    STATUS_ERROR,
    STATUS_SUCCESS,
    Batch,
    EvalRecord,
    EventRecord,
    Idem,
    SpanRecord,
    WriteResult,
)
from tracehub.store import amendment, tracerow
from tracehub.store.jsoncolumns import dumps, loads
from tracehub.store.resources import StoredResources
from tracehub.store.spanrow import SPAN_COLUMNS, SPAN_INSERT, SPAN_JSON, STORED, RowEncoder, span_row
from tracehub.store.sql import Sql

LIFECYCLE_END = frozenset(("END", "ERROR"))
_TRACE_JSON = frozenset(("attributes",))
_RESOURCE_JSON = frozenset(("attributes",))
EVENT_COLUMNS = ("project_id", "trace_id", "span_id", "event_type", "name", "time_ns", "payload",
                 "idempotency_key")
EVAL_COLUMNS = ("project_id", "trace_id", "span_id", "eval_name", "eval_model", "score", "passed",
                "metadata", "user_review_passed", "created_ns")


def insert_annotation_spans(cur: Any, sql: Sql, project_id: int, trace_id: str, spans: list[SpanRecord]) -> None:
    """Spans stored in the stored trace `trace_id` without folding them into its row: the decision
    engine's judge spans, which the tree shows, but which must not stretch the application's
    duration or add to its tokens, cost and span count. Without resources. The trace's number and
    root are found by the statement (nothing is inserted if the trace is not stored): a span without
    a parent hangs from the root, so the caller need not read it first. Nothing waits for a result."""
    encoder = RowEncoder({}, sql.pg)
    q = sql.p
    # The JSON columns are '' (the body has the documents): bound, PostgreSQL would take '' as json.
    values = [f"COALESCE({q}, NULLIF(t.root_span_id, {q}))" if c == "parent_span_id" else
              "''" if c in SPAN_JSON else q for c in SPAN_COLUMNS]
    statement = (f"INSERT INTO spans ({', '.join(SPAN_INSERT)}) SELECT {', '.join(values)}, t.seq FROM traces t"
                 f" WHERE t.project_id = {q} AND t.trace_id = {q} ON CONFLICT (trace_seq, span_id) DO NOTHING")
    parent = SPAN_COLUMNS.index("parent_span_id")
    rows = []
    for s in spans:
        row = [v for c, v in zip(SPAN_COLUMNS, span_row(project_id, s, encoder)) if c not in SPAN_JSON]
        rows.append((*row[:parent], s.parent_span_id, s.span_id, *row[parent + 1:], project_id, trace_id))
    sql.executemany(cur, statement, rows)


def _span_values(s: SpanRecord) -> dict[str, Any]:
    """A record's amendable fields, by their column names (`amendment.AMENDABLE`)."""
    m = s.mapped
    return {"name": s.name, "span_type": m.span_type, "status": s.status, "status_message": s.status_message,
            "model": m.model, "input_text": m.input_text, "output_text": m.output_text,
            "input_tokens": m.input_tokens, "output_tokens": m.output_tokens, "total_tokens": m.total_tokens,
            "cost_usd": s.cost_usd}


def _amended(s: SpanRecord, patches: list[Any]) -> SpanRecord:
    """A copy of `s` with `patches` applied, for its trace row to fold in."""
    values = _span_values(s)
    for patch in patches:
        amendment.apply_patch(values, patch)
    mapped = replace(s.mapped, **{k: values[k] for k in (
        "span_type", "model", "input_text", "output_text", "input_tokens", "output_tokens", "total_tokens")})
    return replace(s, name=values["name"], status=values["status"], status_message=values["status_message"],
                   cost_usd=values["cost_usd"], mapped=mapped)


def count_new_traces(cur: Any, sql: Sql, new_traces: dict[int, int]) -> None:
    """Add the trace rows a transaction stored first to their projects' `trace_count`."""
    q = sql.p
    for pid, added in sorted(new_traces.items()):
        cur.execute(f"UPDATE projects SET trace_count = trace_count + {q} WHERE id = {q}", (added, pid))


class BatchWriter:
    """One batch's writes; make a new one per batch. With `new_traces` the trace rows it stores
    first are added there, per project, for the writer to count just before COMMIT
    (`count_new_traces`): the project's row is then locked only while the transaction waits for
    nothing else, so server processes sharing a database cannot deadlock on it."""

    def __init__(self, cur: Any, sql: Sql, stored_resources: StoredResources,
                 new_traces: dict[int, int] | None = None) -> None:
        self.cur = cur
        self.sql = sql
        self._stored_resources = stored_resources
        self._new_traces = new_traces
        self._touched: set[str] = set()  # trace rows to upsert
        self._stored_traces: set[str] = set()  # of those, the ones already in the database
        self._completed_before: set[str] = set()  # of those, the ones already completed
        self._new_keys: dict[str, Idem] = {}
        self._encoder = RowEncoder({}, sql.pg)
        self._seqs: Iterator[int] = iter(())  # for the trace rows this batch inserts

    def _select(self, query: str, params: list[Any]) -> list[Any]:
        self.cur.execute(query, self.sql.rows([tuple(params)])[0])
        return list(self.cur.fetchall())

    def write(self, batch: Batch) -> WriteResult:
        result = WriteResult()
        pid = batch.project_id
        self._encoder = RowEncoder(batch.resources, self.sql.pg)
        spans = self._claim_keys(pid, batch.spans, result)
        events = self._claim_keys(pid, batch.events, result)
        evals = self._claim_keys(pid, batch.evals, result)
        may_insert = {s.trace_id for s in spans} | {t.trace_id for t in batch.traces}
        rows = self._trace_rows(pid, may_insert | {e.trace_id for e in events if e.trace_id and (
            e.event_type in LIFECYCLE_END or e.input_text or e.output_text
            or e.event_type == amendment.EVENT_TYPE)})
        inserts = len(may_insert - rows.keys())
        if inserts:
            self._seqs = self.sql.next_seqs(self.cur, inserts)
        if spans:
            self._write_spans(pid, spans, rows, batch.require_parents, result)
            self._store_resources(pid, batch.resources)
            for s in spans:  # a refused span does not use up its key
                if s.idem is not None and (s.trace_id, s.span_id) in result.orphans:
                    self._new_keys.pop(s.idem.key, None)
                    result.keys[s.idem.key] = "orphan"
        for t in batch.traces:
            row = rows.get(t.trace_id) or rows.setdefault(
                t.trace_id, tracerow.new_row(pid, t.trace_id, next(self._seqs), time.time_ns()))
            tracerow.apply_explicit(row, t)
            self._touched.add(t.trace_id)
        if events:
            self._write_events(pid, events, rows)
            result.events_stored = len(events)
        if evals:
            self._write_evals(pid, evals, rows)
            result.evals_stored = len(evals)
        touched = [rows[t] for t in self._touched]
        self._upsert_traces(touched)
        result.completed = [(pid, row["trace_id"]) for row in touched
                            if tracerow.completed(row) and row["trace_id"] not in self._completed_before]
        self._record_keys(pid, result)
        return result

    # -- idempotency keys ----------------------------------------------------------------------

    def _claim_keys(self, pid: int, items: list[Any], result: WriteResult) -> list[Any]:
        """Items to write: those without a key, or whose key is new. Marks the others."""
        keyed = [i.idem for i in items if i.idem is not None]
        if not keyed:
            return items
        seen = {key: (h, loads(response)) for k_in, k_params in self.sql.any_of("key", [k.key for k in keyed])
                for key, h, response in self._select(
                    f"SELECT key, request_hash, response FROM idempotency_keys"
                    f" WHERE project_id = {self.sql.p} AND {k_in}", [pid, *k_params])}
        seen.update({k: (i.request_hash, i.response) for k, i in self._new_keys.items()})
        keep = []
        for item in items:
            idem = item.idem
            if idem is None:
                keep.append(item)
            elif idem.key in seen:
                first_hash, first_response = seen[idem.key]
                if first_hash == idem.request_hash:
                    result.keys[idem.key] = "duplicate"
                    result.replayed[idem.key] = first_response
                else:
                    result.keys[idem.key] = "conflict"
            else:
                seen[idem.key] = (idem.request_hash, idem.response)
                self._new_keys[idem.key] = idem
                result.keys[idem.key] = "created"
                keep.append(item)
        return keep

    def _record_keys(self, pid: int, result: WriteResult) -> None:
        if not self._new_keys:
            return
        now = time.time_ns()
        cols = ("project_id", "key", "request_hash", "response", "created_ns")
        # PostgreSQL: a key another server process claimed since `_claim_keys` looked fails the
        # transaction (a unique violation), which the writer runs again (`faults.conflict`): it then
        # answers the item as the other's duplicate instead of storing it twice. SQLite has one writer.
        self.sql.executemany(
            self.cur, self.sql.insert_sql("idempotency_keys", cols, frozenset(("response",)),
                                          "" if self.sql.pg else "ON CONFLICT (project_id, key) DO NOTHING"),
            [(pid, k, i.request_hash, dumps(i.response), now) for k, i in self._new_keys.items()])
        self._new_keys = {}

    # -- spans ---------------------------------------------------------------------------------

    def _trace_rows(self, pid: int, trace_ids: set[str]) -> dict[str, dict[str, Any]]:
        if not trace_ids:
            return {}
        lock = " FOR UPDATE" if self.sql.pg else ""
        found = [r for t_in, t_params in self.sql.any_of("trace_id", trace_ids) for r in self._select(
            f"SELECT {', '.join(tracerow.TRACE_COLUMNS)} FROM traces"
            f" WHERE project_id = {self.sql.p} AND {t_in}{lock}", [pid, *t_params])]
        rows = {}
        for r in found:
            row = dict(zip(tracerow.TRACE_COLUMNS, r))
            row["attributes"] = loads(row["attributes"])
            rows[row["trace_id"]] = row
            if tracerow.completed(row):
                self._completed_before.add(row["trace_id"])
        self._stored_traces.update(rows)
        return rows

    def _write_spans(self, pid: int, spans: list[SpanRecord], rows: dict[str, dict[str, Any]],
                     require_parents: bool, result: WriteResult) -> None:
        unique: dict[tuple[str, str], SpanRecord] = {}
        for s in spans:
            unique.setdefault((s.trace_id, s.span_id), s)
        # (trace, id) pairs of the batch's spans and of the parents they name, in traces already
        # stored: a span is stored with its trace row, so a trace without one has no spans yet.
        stored = self._stored_traces
        keys = {key for key in unique if key[0] in stored} | {
            (s.trace_id, s.parent_span_id) for s in unique.values()
            if s.parent_span_id and s.trace_id in stored}
        existing: set[tuple[str, str]] = set()
        if keys:
            existing = self._stored_spans(pid, {(rows[t]["seq"], span_id) for t, span_id in keys})
        new = [s for key, s in unique.items() if key not in existing]
        result.duplicates = {key for key in unique if key in existing}
        new_keys = {(s.trace_id, s.span_id) for s in new}
        if require_parents:
            known = existing | new_keys
            result.orphans = {(s.trace_id, s.span_id) for s in new
                              if s.parent_span_id and (s.trace_id, s.parent_span_id) not in known}
            new = [s for s in new if (s.trace_id, s.span_id) not in result.orphans]
        result.spans_stored, result.spans_duplicate = len(new), len(spans) - len(new)
        if not new:
            return
        amended = self._apply_earlier_events(pid, new)
        now = time.time_ns()
        awaited: dict[str, set[str]] = {}  # per trace: parents named by its spans, not stored
        declared: set[str] = set()

        def folded() -> Iterator[tuple[Any, ...]]:
            # Each span is folded into its trace row as COPY takes its row, so on PostgreSQL the
            # folding overlaps the database's work instead of coming before it (in isolation the
            # writer took ~4 us a span less: 46-53 -> 42-49).
            for s in sorted(new, key=operator.attrgetter("start_ns")):
                row = rows.get(s.trace_id) or rows.setdefault(
                    s.trace_id, tracerow.new_row(pid, s.trace_id, next(self._seqs), now))
                tracerow.fold_span(row, amended.get((s.trace_id, s.span_id), s) if amended else s, declared)
                row["last_span_ns"] = now
                self._touched.add(s.trace_id)
                waiting = awaited.get(s.trace_id)
                if waiting is None:
                    waiting = awaited[s.trace_id] = set((row["awaited_parents"] or "").split())
                if s.span_id in waiting:  # a stored child counted this span as missing
                    waiting.discard(s.span_id)
                    row["missing_parent_count"] -= 1
                parent = s.parent_span_id
                # A remote parent is in another process's trace data: not waited for.
                if (parent and parent not in waiting and (s.trace_id, parent) not in existing
                        and (s.trace_id, parent) not in new_keys and not s.parent_remote):
                    waiting.add(parent)
                    row["missing_parent_count"] += 1
                encoded = s.row if s.row is not None and s.row[0] == pid else span_row(pid, s, self._encoder)
                yield (*encoded[:STORED], row["seq"])

        self.sql.insert(self.cur, "spans", SPAN_INSERT, SPAN_JSON, folded(),
                        "ON CONFLICT (trace_seq, span_id) DO NOTHING")
        for trace_id, waiting in awaited.items():
            rows[trace_id]["awaited_parents"] = " ".join(sorted(waiting)) or None

    def _stored_spans(self, pid: int, keys: set[tuple[int, str]], running: bool = False) -> set[tuple[str, str]]:
        """(trace_id, span_id) of the spans stored under `keys` (trace_seq, span_id); only those
        without an end with `running`."""
        return {tuple(r) for pairs, params in self.sql.pairs(keys) for r in self._select(
            f"SELECT s.trace_id, s.span_id FROM {pairs} {self.sql.join} spans s ON s.trace_seq = k.t"
            f" AND s.span_id = k.s AND s.project_id = {self.sql.p}" + (" WHERE s.end_ns IS NULL" if running else ""),
            [*params, pid])}

    def _store_resources(self, pid: int, resources: dict[int, bytearray]) -> None:
        new = [(pid, rid, doc) for rid, doc in resources.items() if (pid, rid) not in self._stored_resources]
        if new:
            self.sql.executemany(
                self.cur, self.sql.insert_sql("resources", ("project_id", "resource_id", "attributes"),
                                              _RESOURCE_JSON, "ON CONFLICT (project_id, resource_id) DO NOTHING"),
                new)
            self._stored_resources.written(pid, (rid for _, rid, _ in new))

    def _apply_earlier_events(self, pid: int, new: list[SpanRecord]) -> dict[tuple[str, str], SpanRecord]:
        """Content (GenAI log records), END / ERROR events and AMENDMENTs that arrived before
        their span. Answers the amended spans, by key, as their trace rows fold them in; a span
        is stored as it came (amendments never edit one)."""
        found = [r for t_in, t_params in self.sql.any_of("trace_id", {s.trace_id for s in new})
                 for r in self._select(
                     f"SELECT trace_id, span_id, event_type, time_ns, payload FROM span_events"
                     f" WHERE project_id = {self.sql.p} AND {t_in} AND span_id IS NOT NULL"
                     " AND event_type IN ('LOG', 'END', 'ERROR', 'AMENDMENT') ORDER BY time_ns, id",
                     [pid, *t_params])]
        if not found:
            return {}
        by_span: dict[tuple[str, str], list[tuple[str, int, Any]]] = defaultdict(list)
        for trace_id, span_id, event_type, time_ns, payload in found:
            by_span[(trace_id, span_id)].append((event_type, time_ns, loads(payload)))
        amended: dict[tuple[str, str], SpanRecord] = {}
        for s in new:
            events = by_span.get((s.trace_id, s.span_id))
            if not events:
                continue
            ins: list[str] = []
            outs: list[str] = []
            patches: list[Any] = []
            changed = False
            for event_type, time_ns, payload in events:
                if event_type == amendment.EVENT_TYPE:
                    patches.append(amendment.patch_of(payload))
                    continue
                derived = payload.get("derived") or {}
                if derived.get("input_text"):
                    ins.append(derived["input_text"])
                if derived.get("output_text"):
                    outs.append(derived["output_text"])
                if event_type in LIFECYCLE_END and s.end_ns is None:
                    changed = True
                    s.end_ns = time_ns
                    s.status = STATUS_ERROR if event_type == "ERROR" else STATUS_SUCCESS
                    s.status_message = s.status_message or payload.get("message")
            if ins and not s.mapped.input_text:
                changed = True
                s.mapped.input_text = "\n".join(ins)
            if outs and not s.mapped.output_text:
                changed = True
                s.mapped.output_text = "\n".join(outs)
            if changed:
                s.row = span_row(pid, s, self._encoder)
            if patches:
                amended[(s.trace_id, s.span_id)] = _amended(s, patches)
        return amended

    def _upsert_traces(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        cols = tracerow.TRACE_COLUMNS
        now = time.time_ns()
        new: list[tuple[Any, ...]] = []
        stored: list[tuple[Any, ...]] = []
        for row in rows:
            row["status"] = tracerow.status_of(row)
            row["updated_ns"] = now
            (stored if row["trace_id"] in self._stored_traces else new).append(tuple(
                dumps(row[c]) if c == "attributes" and row[c] is not None else row[c] for c in cols))
        updates = ", ".join(f"{c} = excluded.{c}" for c in cols if c not in ("project_id", "trace_id", "seq"))
        upsert = f"ON CONFLICT (project_id, trace_id) DO UPDATE SET {updates}"
        if new:
            # Most of a batch's traces are new: on PostgreSQL they are COPYed, as spans are. Upserted
            # one statement each, a row cost its backend 63-90 us; COPYed, 30-47. In trace id order,
            # so two processes storing some of the same traces first wait for each other one way.
            new.sort()
            self.sql.insert(self.cur, "traces", cols, _TRACE_JSON, self.sql.rows(new), upsert)
        if stored:
            self.sql.executemany(self.cur, self.sql.insert_sql("traces", cols, _TRACE_JSON, upsert), stored)
        if new:
            pid = rows[0]["project_id"]
            if self._new_traces is None:
                count_new_traces(self.cur, self.sql, {pid: len(new)})
            else:
                self._new_traces[pid] = self._new_traces.get(pid, 0) + len(new)

    # -- events and evals ----------------------------------------------------------------------

    def _write_events(self, pid: int, events: list[EventRecord], rows: dict[str, dict[str, Any]]) -> None:
        q = self.sql.p
        params = []
        texts: dict[tuple[str, str], tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
        ends: dict[tuple[str, str], EventRecord] = {}
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
            if e.event_type in LIFECYCLE_END and e.trace_id and e.span_id:
                ends.setdefault((e.trace_id, e.span_id), e)
            params.append((pid, e.trace_id, e.span_id, e.event_type, e.name, e.time_ns, dumps(payload),
                           e.idem.key if e.idem else None))
        amends = [(t, s, e) for e in events if e.event_type == amendment.EVENT_TYPE
                  and (t := e.trace_id) is not None and (s := e.span_id) is not None and t in rows]
        if amends:  # before the batch's events are stored: those stored are the earlier ones
            self._fold_amendments(pid, amends, rows)
        self.sql.insert(self.cur, "span_events", EVENT_COLUMNS, frozenset(("payload",)), self.sql.rows(params))
        # Spans already stored without content take it from their log records.
        updates = []
        for (trace_id, span_id), (ins, outs) in texts.items():
            row = rows.get(trace_id)
            if row is None:  # a trace without a row has no spans
                continue
            input_text, output_text = "\n".join(ins) or None, "\n".join(outs) or None
            updates.append((input_text, output_text, pid, row["seq"], span_id))
            if (input_text and not row["input_text"]) or (output_text and not row["output_text"]):
                row["own_text"] = True  # the span may keep text of its own: search the trace's
            row["input_text"] = row["input_text"] or input_text
            row["output_text"] = row["output_text"] or output_text
            self._touched.add(trace_id)
        if updates:
            self.sql.executemany(
            self.cur, f"UPDATE spans SET input_text = COALESCE(input_text, {q}),"
                f" output_text = COALESCE(output_text, {q})"
                f" WHERE project_id = {q} AND trace_seq = {q} AND span_id = {q}", updates)
        if ends:
            self._close_spans(pid, ends, rows)

    def _fold_amendments(self, pid: int, amends: list[tuple[str, str, EventRecord]],
                         rows: dict[str, dict[str, Any]]) -> None:
        """AMENDMENTs of stored spans: their trace rows' totals follow (`tracerow.amend_span`).
        One of a span not stored yet waits for it (`_apply_earlier_events`)."""
        q = self.sql.p
        columns = ("trace_id", "span_id", "start_ns", "end_ns", *amendment.AMENDABLE)
        stored: dict[tuple[str, str], dict[str, Any]] = {}
        for pairs, params in self.sql.pairs({(rows[t]["seq"], s) for t, s, _ in amends}):
            for r in self._select(
                    f"SELECT {', '.join('s.' + c for c in columns)} FROM {pairs} {self.sql.join} spans s"
                    f" ON s.trace_seq = k.t AND s.span_id = k.s AND s.project_id = {q}", [*params, pid]):
                stored[(r[0], r[1])] = dict(zip(columns, r))
        if not stored:
            return
        # Per span: (time, new?, patch) of its amendments, the stored ones first among equal times.
        patches: dict[tuple[str, str], list[tuple[int, bool, Any]]] = defaultdict(list)
        for t_in, t_params in self.sql.any_of("trace_id", {t for t, _ in stored}):
            for trace_id, span_id, time_ns, payload in self._select(
                    f"SELECT trace_id, span_id, time_ns, payload FROM span_events WHERE project_id = {q}"
                    f" AND {t_in} AND event_type = 'AMENDMENT' ORDER BY time_ns, id", [pid, *t_params]):
                if (trace_id, span_id) in stored:
                    patches[(trace_id, span_id)].append((time_ns, False, amendment.patch_of(loads(payload))))
        for t, s, e in amends:
            if (t, s) in stored:
                patches[(t, s)].append((e.time_ns, True, amendment.patch_of(e.payload)))
        for key, applied in patches.items():
            if not any(new for _, new, _ in applied):
                continue
            before, after = dict(stored[key]), dict(stored[key])
            for _, new, patch in sorted(applied, key=operator.itemgetter(0, 1)):
                if not new:
                    amendment.apply_patch(before, patch)
                amendment.apply_patch(after, patch)
            tracerow.amend_span(rows[key[0]], before, after)
            self._touched.add(key[0])

    def _close_spans(self, pid: int, ends: dict[tuple[str, str], EventRecord],
                     rows: dict[str, dict[str, Any]]) -> None:
        """END / ERROR events end stored running spans; for spans not stored yet they wait."""
        q = self.sql.p
        keys = {(rows[t]["seq"], s) for t, s in ends if t in rows}  # a trace without a row has no spans
        running = self._stored_spans(pid, keys, running=True) if keys else set()
        updates = []
        now = time.time_ns()
        for key in running:
            e = ends[key]
            error = e.event_type == "ERROR"
            row = rows[key[0]]
            updates.append((e.time_ns, STATUS_ERROR if error else STATUS_SUCCESS,
                            e.payload.get("message") if error else None,
                            e.payload.get("output_text"), pid, row["seq"], key[1]))
            tracerow.close_span(row, e.time_ns, error, now)
            self._touched.add(key[0])
        if updates:
            self.sql.executemany(
            self.cur, f"UPDATE spans SET end_ns = {q}, status = {q}, status_message = COALESCE({q}, status_message),"
                f" output_text = COALESCE(output_text, {q})"
                f" WHERE project_id = {q} AND trace_seq = {q} AND span_id = {q}", updates)

    def _write_evals(self, pid: int, evals: list[EvalRecord], rows: dict[str, dict[str, Any]]) -> None:
        self.sql.insert(
            self.cur, "evaluation_results", EVAL_COLUMNS, frozenset(("metadata",)),
            self.sql.rows([(pid, e.trace_id, e.span_id, e.eval_name, e.eval_model, e.score, e.passed,
                            dumps(e.metadata), e.user_review_passed, e.created_ns) for e in evals]))
        reviewed = [e for e in evals if e.user_review_passed is not None]
        if reviewed:
            q = self.sql.p
            self.sql.executemany(
            self.cur, f"UPDATE traces SET user_review_passed = {q} WHERE project_id = {q} AND trace_id = {q}",
                [(e.user_review_passed, pid, e.trace_id) for e in reviewed])
            for e in reviewed:
                if e.trace_id in rows:
                    rows[e.trace_id]["user_review_passed"] = e.user_review_passed
