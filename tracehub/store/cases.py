"""Cases, webhook endpoints and the notification outbox: the queries of the cases API and of the
webhook delivery worker. Every function takes the connection it runs on and, but for the worker's
outbox, the caller's project_id.

Writes are single short statements that test their own precondition (a case moves only from the
status its transition allows; a notification is updated only while pending), so they need no lock
held across a read and hold SQLite's write lock for one statement. The worker claims due
notifications by pushing their `next_attempt_ns` past a lease in the same statement (with `FOR
UPDATE SKIP LOCKED` on PostgreSQL, so server processes sharing a database never claim one twice);
a worker that dies mid-delivery leaves them due again when the lease ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from tracehub.store.schema import (
    cases,
    notification_attempts,
    notifications,
    trace_decisions,
    webhook_endpoints,
)

CASE_STATUSES = ("open", "acknowledged", "resolved")
# The statuses each transition leaves from.
TRANSITIONS = {"acknowledged": ("open",), "resolved": ("open", "acknowledged")}


def _dicts(result: sa.CursorResult[Any]) -> list[dict[str, Any]]:
    return [dict(row) for row in result.mappings()]


@dataclass(frozen=True)
class CaseFilter:
    status: str | None = None
    severity: str | None = None
    reason_code: str | None = None


def list_cases(conn: sa.Connection, project_id: int, f: CaseFilter, page: int, page_size: int
               ) -> tuple[list[dict[str, Any]], int]:
    """A page of the project's cases, newest first, and how many match."""
    c = cases.c
    conds: list[sa.ColumnElement[bool]] = [c.project_id == project_id]
    for column, value in ((c.status, f.status), (c.severity, f.severity), (c.reason_code, f.reason_code)):
        if value is not None:
            conds.append(column == value)
    rows = _dicts(conn.execute(sa.select(cases).where(*conds).order_by(c.created_ns.desc(), c.id.desc())
                               .limit(page_size).offset((page - 1) * page_size)))
    total = conn.execute(sa.select(sa.func.count()).select_from(cases).where(*conds)).scalar_one()
    return rows, int(total)


def get_case(conn: sa.Connection, project_id: int, case_id: str) -> dict[str, Any] | None:
    row = conn.execute(sa.select(cases).where(cases.c.project_id == project_id,
                                              cases.c.case_id == case_id)).mappings().first()
    return dict(row) if row else None


def decision_actions(conn: sa.Connection, project_id: int, decision_ids: list[str]) -> dict[str, str]:
    """decision id -> action, for a page of cases (at most a page's worth of ids)."""
    d = trace_decisions.c
    return dict(conn.execute(sa.select(d.decision_id, d.action).where(
        d.project_id == project_id, d.decision_id.in_(decision_ids))).tuples().all()) if decision_ids else {}


def get_decision(conn: sa.Connection, project_id: int, decision_id: str) -> dict[str, Any] | None:
    row = conn.execute(sa.select(trace_decisions).where(
        trace_decisions.c.project_id == project_id,
        trace_decisions.c.decision_id == decision_id)).mappings().first()
    return dict(row) if row else None


def case_notifications(conn: sa.Connection, project_id: int, case_id: str) -> list[dict[str, Any]]:
    """The case's notifications, oldest first, each with its delivery `attempts_log` in order."""
    n, a = notifications.c, notification_attempts.c
    rows = _dicts(conn.execute(sa.select(notifications).where(n.project_id == project_id, n.case_id == case_id)
                               .order_by(n.id)))
    by_id = {row["id"]: row for row in rows}
    for row in rows:
        row["attempts_log"] = []
    if by_id:
        for attempt in _dicts(conn.execute(sa.select(notification_attempts).where(
                a.project_id == project_id, a.notification_id.in_(list(by_id))).order_by(a.notification_id,
                                                                                        a.attempt))):
            by_id[attempt["notification_id"]]["attempts_log"].append(attempt)
    return rows


def transition(conn: sa.Connection, project_id: int, case_id: str, to: str, note: str | None,
               now_ns: int) -> tuple[bool, str | None]:
    """Move the case to `to` if its status allows. (moved, the status it has now or None when
    there is no such case)."""
    c = cases.c
    values: dict[str, Any] = {"status": to, "updated_ns": now_ns}
    values["acked_ns" if to == "acknowledged" else "resolved_ns"] = now_ns
    if note is not None:
        values["note"] = note
    moved = conn.execute(sa.update(cases).where(
        c.project_id == project_id, c.case_id == case_id, c.status.in_(TRANSITIONS[to])).values(**values))
    if moved.rowcount:
        return True, to
    current = conn.execute(sa.select(c.status).where(c.project_id == project_id, c.case_id == case_id)
                           ).scalar_one_or_none()
    return False, current


# Webhook endpoints

def create_endpoint(conn: sa.Connection, project_id: int, url: str, secret: str, now_ns: int) -> dict[str, Any]:
    row = {"project_id": project_id, "url": url, "secret": secret, "enabled": True,
           "disabled_reason": None, "created_ns": now_ns}
    endpoint_id = conn.execute(sa.insert(webhook_endpoints).values(**row)
                               .returning(webhook_endpoints.c.id)).scalar_one()
    return {"id": endpoint_id, **row}


def list_endpoints(conn: sa.Connection, project_id: int) -> list[dict[str, Any]]:
    w = webhook_endpoints.c
    return _dicts(conn.execute(sa.select(webhook_endpoints).where(w.project_id == project_id).order_by(w.id)))


def enabled_endpoints(conn: sa.Connection, project_id: int) -> list[dict[str, Any]]:
    """What `tracehub.decision.cases.escalation_rows` notifies."""
    w = webhook_endpoints.c
    return _dicts(conn.execute(sa.select(webhook_endpoints).where(w.project_id == project_id, w.enabled)
                               .order_by(w.id)))


def delete_endpoint(conn: sa.Connection, project_id: int, endpoint_id: int) -> bool:
    """Delete it; its pending notifications become disabled (nobody is left to send them to)."""
    w = webhook_endpoints.c
    gone = conn.execute(sa.delete(webhook_endpoints).where(w.project_id == project_id, w.id == endpoint_id))
    if not gone.rowcount:
        return False
    _disable_pending(conn, endpoint_id, "the endpoint was deleted")
    return True


def enable_endpoint(conn: sa.Connection, project_id: int, endpoint_id: int) -> dict[str, Any] | None:
    w = webhook_endpoints.c
    done = conn.execute(sa.update(webhook_endpoints).where(w.project_id == project_id, w.id == endpoint_id)
                        .values(enabled=True, disabled_reason=None))
    if not done.rowcount:
        return None
    row = conn.execute(sa.select(webhook_endpoints).where(w.id == endpoint_id)).mappings().one()
    return dict(row)


def _disable_pending(conn: sa.Connection, endpoint_id: int, reason: str) -> None:
    n = notifications.c
    conn.execute(sa.update(notifications).where(n.endpoint_id == endpoint_id, n.status == "pending")
                 .values(status="disabled", last_error=reason))


# The outbox, for the delivery worker (all projects)

def claim_due(conn: sa.Connection, now_ns: int, lease_until_ns: int, limit: int) -> list[dict[str, Any]]:
    """Take up to `limit` due pending notifications for this worker until `lease_until_ns`, each
    with its endpoint's url, secret and enabled (None when the endpoint is gone)."""
    n, w = notifications.c, webhook_endpoints.c
    due = (sa.select(n.id).where(n.status == "pending", n.next_attempt_ns <= now_ns)
           .order_by(n.next_attempt_ns).limit(limit).with_for_update(skip_locked=True))
    claimed = _dicts(conn.execute(
        sa.update(notifications).where(n.id.in_(due.scalar_subquery())).values(next_attempt_ns=lease_until_ns)
        .returning(n.id, n.project_id, n.endpoint_id, n.message_id, n.payload, n.attempts)))
    if claimed:
        endpoints = {row["id"]: row for row in _dicts(conn.execute(
            sa.select(w.id, w.url, w.secret, w.enabled).where(w.id.in_({c["endpoint_id"] for c in claimed}))))}
        for row in claimed:
            endpoint = endpoints.get(row["endpoint_id"])
            row["url"] = endpoint and endpoint["url"]
            row["secret"] = endpoint and endpoint["secret"]
            row["enabled"] = bool(endpoint and endpoint["enabled"])
    claimed.sort(key=lambda row: int(row["id"]))
    return claimed


def next_due_ns(conn: sa.Connection) -> int | None:
    n = notifications.c
    value = conn.execute(sa.select(sa.func.min(n.next_attempt_ns)).where(n.status == "pending")).scalar()
    return None if value is None else int(value)


@dataclass(frozen=True)
class Attempt:
    """One delivery attempt of a notification and what it leaves the notification as."""
    notification_id: int
    project_id: int
    endpoint_id: int
    attempt: int  # 1 for the first
    started_ns: int
    latency_ms: float
    status_code: int | None
    error: str | None
    outcome: str  # delivered | retry | failed | gone
    next_attempt_ns: int = 0  # when outcome is retry


def record_attempt(conn: sa.Connection, a: Attempt, now_ns: int) -> None:
    """The attempt row and the notification's new state; `gone` (410) also disables the endpoint
    and its other pending notifications."""
    n = notifications.c
    conn.execute(sa.insert(notification_attempts).values(
        project_id=a.project_id, notification_id=a.notification_id, attempt=a.attempt,
        started_ns=a.started_ns, status_code=a.status_code, error=a.error, latency_ms=a.latency_ms))
    values: dict[str, Any] = {"attempts": a.attempt, "last_error": a.error}
    if a.outcome == "delivered":
        values.update(status="delivered", delivered_ns=now_ns)
    elif a.outcome == "retry":
        values.update(next_attempt_ns=a.next_attempt_ns)
    else:
        values.update(status="failed" if a.outcome == "failed" else "disabled")
    conn.execute(sa.update(notifications).where(n.id == a.notification_id, n.status == "pending").values(**values))
    if a.outcome == "gone":
        w = webhook_endpoints.c
        conn.execute(sa.update(webhook_endpoints).where(w.id == a.endpoint_id).values(
            enabled=False, disabled_reason=a.error))
        _disable_pending(conn, a.endpoint_id, f"endpoint disabled: {a.error}")


def disable_notification(conn: sa.Connection, notification_id: int, reason: str) -> None:
    """A claimed notification whose endpoint was disabled or deleted meanwhile: not sent."""
    n = notifications.c
    conn.execute(sa.update(notifications).where(n.id == notification_id, n.status == "pending")
                 .values(status="disabled", last_error=reason))
