"""PostgreSQL: the spans table in partitions by time, so retention drops a day's spans with one
DROP TABLE instead of deleting them a row at a time (migration 1002).

A span's partition is its trace's: `spans` is partitioned by range of `trace_seq`, and trace
numbers are handed out by the sequence trace_seq in the range of the active partition. Partition
k (`spans_p<k>`) holds the numbers [k * STRIDE, (k + 1) * STRIDE), so every span of a trace, the
ones that come days later too, sits in the partition that was active when the trace was first
stored. `span_partitions` says when each became the active one.

```
maintain(): under an advisory lock, once the active partition is PERIOD_NS old: setval(trace_seq)
  │         to the next one's first number (only the lock holder moves the sequence past a bound,
  │         and only while it is below it, so no number is handed out twice); the one after is
  │         made ahead (CREATE TABLE LIKE + ATTACH: no lock that stops ingest)
  ▼
ended(): partitions no longer active for GRACE_NS; retention drops those whose every trace is
  │      past its project's retention (`holds_trace`). Writers give up a reserved block of numbers after
  │      sql.SEQ_BLOCK_MAX_AGE_S, far below GRACE_NS, so none still makes traces there.
  ▼
retention.prune: the partition's trace rows and what hangs off them go in chunks (each checked
                 again under its lock: a trace written to meanwhile stays, and so does its
                 partition), then DETACH CONCURRENTLY and DROP TABLE.
```
"""

from __future__ import annotations

from typing import Any

STRIDE = 1 << 40  # trace numbers a partition: ~10^12, never used up in its PERIOD_NS
PERIOD_NS = 86_400 * 10**9
GRACE_NS = 600 * 10**9
_LOCK = 0x7472616365  # pg_advisory_xact_lock key of the partition upkeep


def name(k: int) -> str:
    return f"spans_p{int(k)}"


def bounds(k: int) -> tuple[int, int]:
    return k * STRIDE, (k + 1) * STRIDE


def _one(cur: Any, statement: str, params: list[Any] | None = None) -> Any:
    cur.execute(statement, params or [])
    row = cur.fetchone()
    return None if row is None else row[0]


def _started(cur: Any) -> dict[int, int | None]:
    cur.execute("SELECT number, started_ns FROM span_partitions")
    return dict(cur.fetchall())


def create(cur: Any, k: int) -> None:
    """Partition `k`, made apart and attached: ATTACH takes a lock that inserts and reads pass,
    where CREATE TABLE ... PARTITION OF would stop both while it waits for its lock."""
    lo, hi = bounds(k)
    cur.execute(f"CREATE TABLE {name(k)} (LIKE spans INCLUDING DEFAULTS INCLUDING CONSTRAINTS"
                " INCLUDING COMPRESSION INCLUDING STORAGE) WITH (toast_tuple_target = 8160)")
    cur.execute(f"ALTER TABLE spans ATTACH PARTITION {name(k)} FOR VALUES FROM ({lo}) TO ({hi})")
    cur.execute("INSERT INTO span_partitions (number) VALUES (%s)", [k])


def active(cur: Any) -> int:
    """The partition new traces go to (trace_seq's last value: sequences are not transactional)."""
    return int(_one(cur, "SELECT last_value FROM trace_seq")) // STRIDE


def maintain(cur: Any, now_ns: int) -> int | None:
    """Roll over to the next partition once the active one is PERIOD_NS old, and have the one
    after it ready. `cur` is in autocommit; returns the partition rolled over to, if any."""
    cur.execute("BEGIN")
    try:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK])
        k = active(cur)
        started = _started(cur)
        rolled = None
        if k not in started:
            create(cur, k)  # a partition is always made ahead; this only mends a lost one
        since = started.get(k)
        if since is None:
            cur.execute("UPDATE span_partitions SET started_ns = %s WHERE number = %s", [now_ns, k])
        elif now_ns - since >= PERIOD_NS:
            if k + 1 not in started:
                create(cur, k + 1)
            cur.execute("SELECT setval('trace_seq', %s, false)", [bounds(k + 1)[0]])
            cur.execute("UPDATE span_partitions SET started_ns = %s WHERE number = %s", [now_ns, k + 1])
            k = rolled = k + 1
        if k + 1 not in _started(cur):
            create(cur, k + 1)
        cur.execute("COMMIT")
        return rolled
    except BaseException:
        cur.execute("ROLLBACK")
        raise


def ended(cur: Any, now_ns: int) -> list[int]:
    """Partitions, oldest first, that stopped being the active one over GRACE_NS ago."""
    started = _started(cur)
    current = active(cur)
    return [k for k in sorted(started) if k < current
            and (after := started.get(k + 1)) is not None and after <= now_ns - GRACE_NS]


def holds_trace(cur: Any, k: int, condition: str) -> bool:
    """Whether partition `k` numbers a trace row meeting `condition` (over traces `t` and their
    projects `p`)."""
    lo, hi = bounds(k)
    return _one(cur, f"SELECT 1 FROM traces t JOIN projects p ON p.id = t.project_id"
                     f" WHERE t.seq >= %s AND t.seq < %s AND {condition} LIMIT 1", [lo, hi]) is not None


def traces_in(cur: Any, k: int, limit: int) -> list[tuple[int, str]]:
    """(project_id, trace_id) of up to `limit` trace rows numbered in partition `k`."""
    lo, hi = bounds(k)
    cur.execute("SELECT project_id, trace_id FROM traces WHERE seq >= %s AND seq < %s ORDER BY seq LIMIT %s",
                [lo, hi, limit])
    return [(r[0], r[1]) for r in cur.fetchall()]


def drop(cur: Any, k: int) -> tuple[dict[int, int], set[tuple[int, int]]]:
    """Detach and drop partition `k` (`cur` in autocommit; its trace rows are gone). Returns its
    spans by project and the resources they named."""
    table = name(k)
    spans: dict[int, int] = {}
    named: set[tuple[int, int]] = set()
    if _one(cur, "SELECT to_regclass(%s)", [table]) is not None:
        cur.execute(f"SELECT project_id, count(*) FROM {table} GROUP BY project_id")
        spans = {r[0]: int(r[1]) for r in cur.fetchall()}
        cur.execute(f"SELECT DISTINCT project_id, resource_id FROM {table} WHERE resource_id IS NOT NULL")
        named = {(r[0], r[1]) for r in cur.fetchall()}
        pending = _one(cur, "SELECT inhdetachpending FROM pg_inherits WHERE inhrelid = %s::regclass", [table])
        if pending is not None:  # a DETACH CONCURRENTLY stopped halfway is finished instead
            cur.execute(f"ALTER TABLE spans DETACH PARTITION {table} {'FINALIZE' if pending else 'CONCURRENTLY'}")
    cur.execute("BEGIN")
    cur.execute(f"DROP TABLE IF EXISTS {table}")
    cur.execute("DELETE FROM span_partitions WHERE number = %s", [k])
    cur.execute("COMMIT")
    return spans, named
