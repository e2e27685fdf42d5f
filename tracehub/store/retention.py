"""Retention: each project's traces are deleted `projects.retention_days` after their last activity,
with everything that hangs off them.

A trace's last activity is the latest of its start, its end and the server's last write to it
(`traces.updated_ns`): a trace still written to stays however old its spans' clocks say it is, and
traces replayed from an old export stay `retention_days` after they arrived. What goes with a trace:
its spans (the decision engine's judge spans too), span events, evaluations, decisions, judge runs,
and cases with their webhook notifications and delivery attempts; then the resources no span names
any more. What stays: the project's settings, keys, policies, webhook endpoints, idempotency keys
and the judge cache (verdicts by a hash of their input, no trace text).

```
prune(): per project with a retention, oldest first (ix_traces_project_start), on a connection of
  │      its own: the candidates whose last activity is before the cutoff, a chunk of them at a time
  │      (sized from the chunks before to take about CHUNK_S of the writer)
  ▼
run(prune_chunk): one transaction per chunk. In the server, the writer's decision lane (SQLite's
                  write lock stays the writer thread's; ingest waits one chunk at most); in
                  `tracehub prune`, a transaction of the command's own. The chunk checks each
                  trace again under the lock: one written to meanwhile stays.
  ▼  the pass then waits as long as the chunk took: pruning takes at most half the writer
```

What a chunk keeps right:
- `projects.trace_count` loses the traces deleted, in the statement before COMMIT (as the writer
  adds, so server processes sharing PostgreSQL cannot deadlock on the project's row).
- The stats roll-ups: the triggers of migration 0017 take a deleted trace's share out of its hour,
  its evaluations included (the trace row goes first; an evaluation deleted after it finds no hour).
- Search, SQLite: a row is taken out of its FTS5 index with the values it was indexed with
  (`search.fts_values`), or the index breaks. A span's input and output may have been filled after
  it was indexed (log records, an END event): FTS5's per-row sizes (`<fts>_docsize`) say which
  columns were empty then, and those are given as NULL. Only rows in the index are taken out. The
  row holding a table's largest id stays, with its trace, until a newer row exists: SQLite would
  give that id again, to a row below the index's mark, which search would then never see.
  PostgreSQL: the side tables' rows go by trace; the chunk locks them against the indexer first
  (SHARE ROW EXCLUSIVE), so an indexing step cannot add rows of spans it read before they went.
- Resources: those the deleted spans named and no span names now (`ix_spans_resource`). A writer
  takes a resource it stored as stored for `StoredResources.MAX_AGE_S` (10 minutes) at most, far
  below the shortest retention (a day): a resource no span names came with no span written since
  the cutoff (every span written moves its trace's last activity), so no writer, in this process or
  another, still takes it as stored. A span that names it later stores it again.

Space: SQLite reuses the freed pages for new rows; a database made with `auto_vacuum=INCREMENTAL`
also gets them back after each pass (`PRAGMA incremental_vacuum`, in steps through `run`).
PostgreSQL's autovacuum makes the dead rows reusable.

What this module must never do: take SQLite's write lock in the server from any thread but the
writer's, or delete a trace written to after the cutoff.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, TypeVar

import sqlalchemy as sa

from tracehub.store import partitions
from tracehub.store.background import Background
from tracehub.store.sql import Sql
from tracehub.store.faults import lost
from tracehub.store.search import DOCUMENT_COLUMNS, INDEXED, Indexed, document, padded
from tracehub.store.writer import Writer, WriterStopped

log = logging.getLogger(__name__)

T = TypeVar("T")
# Runs a piece of work in a transaction of its own and commits: (cursor, Sql) -> result.
Run = Callable[[Callable[[Any, Sql], T]], T]

DAY_NS = 86_400 * 10**9
MAX_RETENTION_DAYS = 36_500
# A chunk: at most CHUNK_TRACES traces, and as many spans as the chunks before deleted in about
# CHUNK_S of the writer's time (FIRST_CHUNK_SPANS to begin with, MIN_CHUNK_SPANS at least, one trace
# at least). Taking a span out of SQLite's search index costs half as much again as indexing it
# (~0.5 ms of CPU for the benchmark's spans): 500 traces of 10 spans each held the writer for 2.5 s.
CHUNK_TRACES = 500
CHUNK_S = 0.1
FIRST_CHUNK_SPANS = 200
MIN_CHUNK_SPANS = 20
# The server's first pass after start: soon, but not among the start's own work.
FIRST_PASS_S = 60.0
# SQLite with auto_vacuum=INCREMENTAL: free pages given back to the file per transaction.
VACUUM_PAGES = 2_000

# Before the cutoff on every count: started, ended (or never), and last written.
_OLD = "start_ns < {p} AND coalesce(end_ns, start_ns) < {p} AND updated_ns < {p}"


@dataclass
class Pruned:
    """Rows a prune deleted (or, in a dry run, would delete)."""

    traces: int = 0
    spans: int = 0
    span_events: int = 0
    evaluations: int = 0
    decisions: int = 0
    judge_runs: int = 0
    cases: int = 0
    notifications: int = 0
    resources: int = 0

    def add(self, other: Pruned) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def describe(self) -> str:
        parts = [f"{getattr(self, f.name)} {f.name.replace('_', ' ')}" for f in dataclasses.fields(self)
                 if f.name != "traces" and getattr(self, f.name)]
        return f"{self.traces} traces" + (f" ({', '.join(parts)})" if parts else "")


@dataclass
class ProjectPass:
    """One project's part of a pass: its retention, the cutoff it ran with and what went."""

    name: str
    retention_days: int
    cutoff_ns: int
    pruned: Pruned
    chunks: int = 0
    longest_s: float = 0.0  # the longest chunk's time in its transaction


def cutoff_of(now_ns: int, retention_days: int) -> int:
    return now_ns - retention_days * DAY_NS


def retention_days_of(text: str) -> int | None:
    """A retention as typed: days (1-MAX_RETENTION_DAYS), or 0 / "off" for keeping traces for ever
    (None). Raises ValueError otherwise."""
    if text.strip().lower() == "off":
        return None
    days = int(text)
    if not 0 <= days <= MAX_RETENTION_DAYS:
        raise ValueError(f"{days} is not within 0-{MAX_RETENTION_DAYS}")
    return days or None


def _fetch(cur: Any, statement: str, params: list[Any]) -> list[Any]:
    cur.execute(statement, params)
    return list(cur.fetchall())


def candidates(cur: Any, sql: Sql, project_id: int, cutoff_ns: int, after: tuple[int, str] | None,
               limit: int = CHUNK_TRACES) -> list[tuple[int, str, int]]:
    """(start_ns, trace_id, span_count) of the project's oldest traces whose last activity is before
    the cutoff, after `after` in that order: the index on (project_id, start_ns, trace_id) drives."""
    p = sql.p
    resume = ""
    params: list[Any] = [project_id, cutoff_ns, cutoff_ns, cutoff_ns]
    if after is not None:
        resume = f" AND (start_ns > {p} OR (start_ns = {p} AND trace_id > {p}))"
        params = [*params, after[0], after[0], after[1]]
    return [(r[0], r[1], r[2]) for r in _fetch(
        cur, f"SELECT start_ns, trace_id, span_count FROM traces WHERE project_id = {p} AND {_OLD.format(p=p)}{resume}"
             f" ORDER BY start_ns, trace_id LIMIT {int(limit)}", params)]


def prune_chunk(cur: Any, sql: Sql, project_id: int, trace_ids: list[str], cutoff_ns: int,
                keep_spans: bool = False) -> Pruned:
    """Delete the traces among `trace_ids` whose last activity is still before the cutoff, with
    everything that hangs off them, in the caller's transaction (it commits). With `keep_spans`
    their spans stay for their partition's DROP (PostgreSQL, `_drop_partitions`)."""
    p = sql.p
    done = Pruned()
    if sql.pg:
        cur.execute("LOCK TABLE span_search, span_event_search IN SHARE ROW EXCLUSIVE MODE")
    rows: list[tuple[str, int | None]] = []
    for cond, params in sql.any_of("trace_id", trace_ids):
        rows += _fetch(cur, f"SELECT trace_id, seq FROM traces WHERE project_id = {p} AND {cond}"
                            f" AND {_OLD.format(p=p)}" + (" ORDER BY trace_id FOR UPDATE" if sql.pg else ""),
                       [project_id, *params, cutoff_ns, cutoff_ns, cutoff_ns])
    if not sql.pg:
        rows = _without_newest_rows(cur, project_id, rows)
    if not rows:
        return done
    ids = [trace_id for trace_id, _ in rows]
    seqs = [seq for _, seq in rows if seq is not None]
    by_trace = _of_traces(sql, project_id, ids)
    by_seq = list(sql.any_of("trace_seq", seqs))

    named: set[int] = set()
    if keep_spans:
        by_seq = []
    for cond, params in by_seq:
        named.update(r[0] for r in _fetch(
            cur, f"SELECT DISTINCT resource_id FROM spans WHERE {cond} AND resource_id IS NOT NULL", params))
    spans, events = INDEXED
    if sql.pg:
        for where, params in by_trace:
            for t in INDEXED:
                cur.execute(f"DELETE FROM {t.pg_table} WHERE {where}", params)
    else:
        _unindex_spans(cur, sql, spans, seqs)
        for where, params in _of_traces(sql, project_id, ids, "s."):
            _unindex(cur, sql, events, where, params)

    # The trace rows before their evaluations: the roll-ups' trigger takes both out of the hour.
    done.traces = _delete(cur, "traces", by_trace)
    done.spans = _delete(cur, "spans", by_seq)
    done.span_events = _delete(cur, "span_events", by_trace)
    done.evaluations = _delete(cur, "evaluation_results", by_trace)
    done.decisions = _delete(cur, "trace_decisions", by_trace)
    done.judge_runs = _delete(cur, "judge_runs", by_trace)
    case_ids = [r[0] for where, params in by_trace
                for r in _fetch(cur, f"SELECT case_id FROM cases WHERE {where}", params)]
    if case_ids:
        by_case = [(f"project_id = {p} AND {cond}", [project_id, *params])
                   for cond, params in sql.any_of("case_id", case_ids)]
        notes = [r[0] for where, params in by_case
                 for r in _fetch(cur, f"SELECT id FROM notifications WHERE {where}", params)]
        _delete(cur, "notification_attempts", list(sql.any_of("notification_id", notes)))
        done.notifications = _delete(cur, "notifications", by_case)
        done.cases = _delete(cur, "cases", by_trace)
    done.resources = _unused_resources(project_id, named, cur, sql)
    if done.traces:
        cur.execute(f"UPDATE projects SET trace_count = trace_count - {p} WHERE id = {p}", [done.traces, project_id])
    return done


def _chunk(project_id: int, ids: list[str], cutoff_ns: int, cur: Any, sql: Sql,
           keep_spans: bool = False) -> tuple[Pruned, float]:
    """`prune_chunk` and the seconds it took (the writer's time, not the wait for it)."""
    started = time.monotonic()
    done = prune_chunk(cur, sql, project_id, ids, cutoff_ns, keep_spans)
    return done, time.monotonic() - started


def _of_traces(sql: Sql, project_id: int, ids: list[str], prefix: str = "") -> list[tuple[str, list[Any]]]:
    """Conditions (with their parameters) on the rows of the traces `ids` of the project."""
    return [(f"{prefix}project_id = {sql.p} AND {cond}", [project_id, *params])
            for cond, params in sql.any_of(f"{prefix}trace_id", ids)]


def _delete(cur: Any, table: str, conditions: list[tuple[str, list[Any]]]) -> int:
    n = 0
    for where, params in conditions:
        cur.execute(f"DELETE FROM {table} WHERE {where}", params)
        n += max(cur.rowcount, 0)
    return n


def _without_newest_rows(cur: Any, project_id: int,
                         rows: list[tuple[str, int | None]]) -> list[tuple[str, int | None]]:
    """SQLite: `rows` but the traces holding the largest id of spans or span_events (see the module
    docstring)."""
    cur.execute("SELECT trace_seq FROM spans WHERE id = (SELECT max(id) FROM spans)")
    newest_span = cur.fetchone()
    cur.execute("SELECT project_id, trace_id FROM span_events WHERE id = (SELECT max(id) FROM span_events)")
    newest_event = cur.fetchone()
    return [(trace_id, seq) for trace_id, seq in rows
            if not (newest_span is not None and seq == newest_span[0])
            and not (newest_event is not None and (project_id, trace_id) == tuple(newest_event))]


def _unindex_spans(cur: Any, sql: Sql, t: Indexed, seqs: list[int]) -> None:
    """Take the traces `seqs` out of the spans' FTS5 index: each document (some of a trace's
    spans, `spans_fts_docs`) with the values it was indexed with (`search.document`)."""
    docs: list[tuple[int, int, int]] = []
    spans: dict[int, list[tuple[Any, ...]]] = collections.defaultdict(list)
    for cond, params in sql.any_of("s.trace_seq", seqs):
        docs += _fetch(cur, f"SELECT d.id, d.last_id, s.trace_seq FROM spans s JOIN spans_fts_docs d ON d.id = s.id"
                            f" WHERE {cond}", params)
        for row in _fetch(cur, f"SELECT id, trace_seq, {DOCUMENT_COLUMNS} FROM spans s WHERE {cond} ORDER BY id",
                          params):
            spans[row[1]].append(row)
    removed = [(first, *document([r for r in spans[seq] if first <= r[0] <= last])) for first, last, seq in docs]
    cur.executemany(f"INSERT INTO {t.fts} ({t.fts}, rowid, {', '.join(t.columns)}) VALUES ('delete', ?, ?, ?, ?, ?)",
                    removed)
    for cond, params in sql.any_of("id", [first for first, _, _ in docs]):
        cur.execute(f"DELETE FROM spans_fts_docs WHERE {cond}", params)


def _unindex(cur: Any, sql: Sql, t: Indexed, where: str, params: list[Any]) -> None:
    """Take the rows of `t` matching `where` (over `s`) out of its FTS5 index, each column as it was
    indexed: empty columns (0 tokens in `<fts>_docsize`) as NULL. One statement for all the rows
    alike: FTS5 writes its pending changes out at the end of every statement, and a statement a row
    cost three times as much."""
    found = _fetch(cur, f"SELECT s.id, d.sz FROM {t.table} s JOIN {t.fts}_docsize d ON d.id = s.id WHERE {where}",
                   params)
    alike: dict[tuple[bool, ...], list[int]] = collections.defaultdict(list)
    for row_id, sz in found:
        alike[tuple(n > 0 for n in _varints(sz, len(t.columns)))].append(row_id)
    for indexed, ids in alike.items():
        values = ", ".join(padded(t, c) if was else "NULL" for c, was in zip(t.columns, indexed))
        for cond, id_params in sql.any_of("id", ids):
            cur.execute(f"INSERT INTO {t.fts} ({t.fts}, rowid, {', '.join(t.columns)})"
                        f" SELECT 'delete', id, {values} FROM {t.table} WHERE {cond}", id_params)


def _varints(blob: bytes, n: int) -> list[int]:
    """The first `n` of SQLite's big-endian varints in `blob` (FTS5's per-column token counts)."""
    out, value = [], 0
    for byte in blob:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            out.append(value)
            value = 0
            if len(out) == n:
                break
    return out + [0] * (n - len(out))


def plan(cur: Any, sql: Sql, project_id: int, cutoff_ns: int) -> Pruned:
    """What a prune at `cutoff_ns` would delete (a dry run): traces and what hangs off them."""
    p = sql.p
    old = f"SELECT {{}} FROM traces WHERE project_id = {p} AND {_OLD.format(p=p)}"
    params = [project_id, cutoff_ns, cutoff_ns, cutoff_ns]

    def count(statement: str, extra: list[Any]) -> int:
        return int(_fetch(cur, statement, extra + params)[0][0])

    found = Pruned(traces=count(old.format("count(*)"), []))
    found.spans = count(f"SELECT count(*) FROM spans WHERE trace_seq IN ({old.format('seq')})", [])
    for field, table in (("span_events", "span_events"), ("evaluations", "evaluation_results"),
                         ("decisions", "trace_decisions"), ("judge_runs", "judge_runs"), ("cases", "cases")):
        setattr(found, field, count(f"SELECT count(*) FROM {table} WHERE project_id = {p}"
                                    f" AND trace_id IN ({old.format('trace_id')})", [project_id]))
    return found


def projects_with_retention(cur: Any, sql: Sql, name: str | None = None) -> list[tuple[int, str, int | None]]:
    """(id, name, retention_days) of the projects with a retention, or of the one named."""
    if name is not None:
        return [(r[0], r[1], r[2]) for r in _fetch(
            cur, f"SELECT id, name, retention_days FROM projects WHERE name = {sql.p}", [name])]
    return [(r[0], r[1], r[2]) for r in _fetch(
        cur, "SELECT id, name, retention_days FROM projects WHERE retention_days > 0 ORDER BY id", [])]


def prune(cur: Any, sql: Sql, run: Run[Any], now_ns: int, project: str | None = None,
          dry_run: bool = False, pause: Callable[[float], bool] = lambda _s: True) -> Iterator[ProjectPass]:
    """One pass: each project with a retention (or `project`), its old traces deleted a chunk at a
    time through `run`. `cur` reads candidates outside the chunks' transactions (autocommit).
    `pause(seconds)` is called between chunks; False stops the pass. Yields each project's pass."""
    kept = projects_with_retention(cur, sql, project)
    dropped: dict[int, ProjectPass] = {}
    if sql.pg and not dry_run:
        partitions.maintain(cur, now_ns)
        if project is None:
            dropped = _drop_partitions(cur, sql, run, now_ns, kept, pause)
    for project_id, name, days in kept:
        if not days:
            yield ProjectPass(name, 0, 0, Pruned())
            continue
        cutoff = cutoff_of(now_ns, days)
        if dry_run:
            yield ProjectPass(name, days, cutoff, plan(cur, sql, project_id, cutoff))
            continue
        result = dropped.get(project_id) or ProjectPass(name, days, cutoff, Pruned())
        after, budget = None, FIRST_CHUNK_SPANS
        rows, spent = 0, 0.0  # the pace so far: FTS5's merges make single chunks vary fivefold
        while found := candidates(cur, sql, project_id, cutoff, after):
            taken = _within(found, budget)
            after = taken[-1][:2]
            done, seconds = run(functools.partial(_chunk, project_id, [t[1] for t in taken], cutoff))
            result.pruned.add(done)
            result.chunks += 1
            result.longest_s = max(result.longest_s, seconds)
            log.debug("retention: project %r chunk of %s in %.3f s", name, done.describe(), seconds)
            rows, spent = rows + sum(t[2] for t in taken), spent + seconds
            budget = max(MIN_CHUNK_SPANS, int(rows / max(spent, 1e-3) * CHUNK_S))
            if not pause(seconds):
                break
        yield result


def _drop_partitions(cur: Any, sql: Sql, run: Run[Any], now_ns: int, kept: list[tuple[int, str, int | None]],
                     pause: Callable[[float], bool]) -> dict[int, ProjectPass]:
    """PostgreSQL: each partition of spans no longer active (`partitions.ended`) whose every trace is
    past its project's retention loses its trace rows and what hangs off them in chunks, its spans
    left, then is dropped whole. A chunk that keeps a trace (written to meanwhile) keeps the
    partition too. Returns each project's part, by id."""
    out = {pid: ProjectPass(name, d, cutoff_of(now_ns, d), Pruned()) for pid, name, d in kept if d}
    # A trace its project keeps: one without a retention, or last active within it.
    cutoff = f"({int(now_ns)} - p.retention_days::bigint * {DAY_NS})"
    keeps = f"NOT (coalesce(p.retention_days, 0) > 0 AND {_OLD.format(p=cutoff)})"
    for k in partitions.ended(cur, now_ns):
        if partitions.holds_trace(cur, k, keeps):
            continue
        whole = True
        while whole and (found := partitions.traces_in(cur, k, CHUNK_TRACES)):
            by_project: dict[int, list[str]] = collections.defaultdict(list)
            for project_id, trace_id in found:
                by_project[project_id].append(trace_id)
            for project_id, ids in by_project.items():
                part = out.get(project_id)
                if part is None:  # its retention was turned off since the check
                    whole = False
                    break
                done, seconds = run(functools.partial(_chunk, project_id, ids, part.cutoff_ns, keep_spans=True))
                part.pruned.add(done)
                part.chunks += 1
                part.longest_s = max(part.longest_s, seconds)
                whole = whole and done.traces == len(ids)
                if not pause(seconds):
                    return out
        if not whole:
            continue
        spans, named = partitions.drop(cur, k)
        for project_id in {pid for pid, _ in named}:
            gone = run(functools.partial(_unused_resources, project_id, {r for p, r in named if p == project_id}))
            if project_id in out:  # else spans an earlier pass left, its retention turned off since
                out[project_id].pruned.resources += gone
        for project_id, n in spans.items():
            if project_id in out:
                out[project_id].pruned.spans += n
        log.info("retention: dropped partition %s (%d spans)", partitions.name(k), sum(spans.values()))
    return out


def _unused_resources(project_id: int, named: set[int], cur: Any, sql: Sql) -> int:
    """Delete the project's resources among `named` that no span names; how many went."""
    n = 0
    for cond, params in sql.any_of("resource_id", named):
        cur.execute(f"DELETE FROM resources WHERE project_id = {sql.p} AND {cond} AND NOT EXISTS (SELECT 1 FROM spans s"
                    " WHERE s.project_id = resources.project_id AND s.resource_id = resources.resource_id)",
                    [project_id, *params])
        n += max(cur.rowcount, 0)
    return n


def _within(found: list[tuple[int, str, int]], spans: int) -> list[tuple[int, str, int]]:
    """The first of `found` whose spans add up to at most `spans` (one trace at least)."""
    total = 0
    for i, (_, _, count) in enumerate(found):
        total += count
        if total > spans and i:
            return found[:i]
    return found


def free_pages(cur: Any, sql: Sql, run: Run[Any], pause: Callable[[float], bool] = lambda _s: True) -> int:
    """SQLite with auto_vacuum=INCREMENTAL: give the free pages back to the file, VACUUM_PAGES a
    transaction. Returns the pages given back (0 elsewhere: the pages stay for new rows)."""
    if sql.pg or _fetch(cur, "PRAGMA auto_vacuum", [])[0][0] != 2:
        return 0
    given = 0
    while (free := _fetch(cur, "PRAGMA freelist_count", [])[0][0]) > 0:
        started = time.monotonic()
        run(_incremental_vacuum)
        now_free = _fetch(cur, "PRAGMA freelist_count", [])[0][0]
        if now_free >= free:
            break
        given += free - now_free
        if not pause(time.monotonic() - started):
            break
    return given


def _incremental_vacuum(cur: Any, _sql: Sql) -> None:
    cur.execute(f"PRAGMA incremental_vacuum({VACUUM_PAGES})")
    cur.fetchall()  # each step of the statement frees one page


@contextlib.contextmanager
def autocommit(dbapi: Any, pg: bool) -> Iterator[None]:
    """Reads outside transactions (chunks BEGIN and COMMIT themselves); the connection goes back to
    the pool as it came."""
    attribute = "autocommit" if pg else "isolation_level"
    before = getattr(dbapi, attribute)
    setattr(dbapi, attribute, True if pg else None)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):  # a broken connection is dropped by the pool anyway
            setattr(dbapi, attribute, before)


class Retention(Background):
    """The server's retention: a pass every `interval_s` (the first after FIRST_PASS_S at most),
    each chunk deleted through the writer's decision lane."""

    def __init__(self, engine: sa.Engine, writer: Writer, interval_s: float) -> None:
        super().__init__(engine, "tracehub-retention", "th-retention")
        self._writer = writer
        self._interval_s = interval_s
        self._sql = Sql(engine.dialect.name)

    def _lane(self, work: Callable[[Any, Sql], T]) -> T:
        result: T = self._writer.submit_decision(lambda tx: work(tx.cur, tx.sql)).result()
        return result

    def _pause(self, seconds: float) -> bool:
        return not self._stop.wait(seconds)

    def _run(self, dbapi: Any) -> None:
        with autocommit(dbapi, self._sql.pg):
            self._passes(dbapi)

    def _passes(self, dbapi: Any) -> None:
        wait = min(self._interval_s, FIRST_PASS_S)
        while not self._stop.wait(wait):
            wait = self._interval_s
            cur = dbapi.cursor()
            try:
                deleted = False
                for done in prune(cur, self._sql, self._lane, time.time_ns(), pause=self._pause):
                    if done.pruned.traces:
                        deleted = True
                        log.info("retention: project %r lost %s whose last activity was over %d days ago,"
                                 " in %d chunks (the longest %.2f s)", done.name, done.pruned.describe(),
                                 done.retention_days, done.chunks, done.longest_s)
                if deleted and not self._stop.is_set():
                    free_pages(cur, self._sql, self._lane, self._pause)
            except WriterStopped:
                return
            except Exception:
                if lost(dbapi):
                    raise  # `Background` starts again on a new connection
                log.exception("retention pass failed; trying again in %.0f s", wait)
