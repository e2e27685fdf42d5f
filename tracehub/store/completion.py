"""When a trace is complete: the one definition that the trace list's filters, the trace view and
whatever acts on completed traces (the decision engine) share, as SQL over the `traces` row.

A trace is open while one of its spans runs or a parent its spans name has not arrived
(`awaited_parents`). A parent the writer still awaits `grace_ns` after it last stored or ended one
of the trace's spans (`last_span_ns`, its own clock, not the client's), with every stored span
ended, is given up: a caller that did not export to us, or a client that does not mark a remote
parent in the span's flags. It then no longer counts as open, and a trace whose only reason to run
was that parent is `success` (or the `error` it already is). A parent arriving later still fits in.

Given up depends on the time of the question, so the writer stores what it knows
(`tracerow.status_of`) and this module decides the rest at read time. It never writes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import sqlalchemy as sa

from tracehub.records import STATUS_RUNNING, STATUS_SUCCESS
from tracehub.store.schema import traces


@dataclass(frozen=True)
class Completion:
    """SQL expressions over `traces` at one moment."""

    given_up: sa.ColumnElement[bool]  # its awaited parents are given up
    awaited: sa.ColumnElement[int]  # parents still awaited
    open_count: sa.ColumnElement[int]  # running spans + awaited parents
    status: sa.ColumnElement[str]  # running / success / error, given-up parents applied
    completed: sa.ColumnElement[bool]  # nothing open, and not running
    cutoff_ns: int | None = None  # the moment bound in (`completion`), for an index range

    def status_is(self, value: str) -> sa.ColumnElement[bool]:
        """`status == value`, written so that the status index still serves it."""
        t = traces.c
        settled = sa.and_(t.status_explicit.is_(None), self.given_up)
        if value == STATUS_RUNNING:
            return sa.and_(t.status == STATUS_RUNNING, sa.not_(settled))
        if value == STATUS_SUCCESS:
            return sa.and_(t.status.in_((STATUS_SUCCESS, STATUS_RUNNING)),
                           sa.or_(t.status == STATUS_SUCCESS, settled))
        return t.status == value


# The moment a parent awaited since no later is given up (`cutoff`), left to the execution: a
# statement built once over `COMPLETION` serves every read (`{CUTOFF.key: cutoff(now, grace)}`).
CUTOFF = sa.bindparam("completion_cutoff_ns", type_=sa.BigInteger)


def cutoff(now_ns: int, grace_ns: int) -> int:
    return now_ns - grace_ns


def _completion(at: sa.ColumnElement[int]) -> Completion:
    t = traces.c
    given_up = sa.and_(
        t.missing_parent_count > 0, t.running_span_count == 0,
        sa.func.coalesce(t.last_span_ns, t.updated_ns) <= at)
    awaited = sa.case((given_up, 0), else_=t.missing_parent_count)
    status = sa.case((sa.and_(t.status == STATUS_RUNNING, t.status_explicit.is_(None), given_up),
                      STATUS_SUCCESS), else_=t.status)
    completed = sa.and_(
        t.running_span_count == 0, sa.or_(t.missing_parent_count == 0, given_up),
        sa.or_(t.status != STATUS_RUNNING, sa.and_(t.status_explicit.is_(None), given_up)))
    return Completion(given_up, awaited, t.running_span_count + awaited, status, completed)


COMPLETION = _completion(CUTOFF)


def completion(now_ns: int, grace_ns: int) -> Completion:
    """At `now_ns`, the moment bound in: for a statement built for one read."""
    at = cutoff(now_ns, grace_ns)
    return replace(_completion(sa.literal(at, sa.BigInteger)), cutoff_ns=at)
