"""ESCALATE's outbox rows: the case a decision opens and one notification per webhook endpoint.

`escalation_rows` is pure (no I/O): the engine calls it and writes what it returns in the decision's
own transaction, so a case never exists without its decision, nor a decision without its case and
notifications. The delivery worker (`tracehub/decision/webhooks.py`) sends the notifications later.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

CASE_CREATED = "case.created"


def case_title(action: str, reason_code: str, severity: str, trace_id: str) -> str:
    return f"{action} {reason_code} ({severity}) on trace {trace_id}"


def escalation_rows(
    project_id: int,
    trace_id: str,
    decision_id: str,
    action: str,
    reason_code: str,
    severity: str,
    policy_name: str | None,
    policy_version: int | None,
    endpoints: list[dict[str, Any]],
    now_ns: int,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The `cases` row and the `notifications` rows (pending, due now) for the enabled `endpoints`."""
    case_id = uuid.uuid4().hex
    title = case_title(action, reason_code, severity, trace_id)
    case = {
        "case_id": case_id,
        "project_id": project_id,
        "trace_id": trace_id,
        "decision_id": decision_id,
        "status": "open",
        "severity": severity,
        "reason_code": reason_code,
        "title": title,
        "note": None,
        "created_ns": now_ns,
        "updated_ns": now_ns,
        "acked_ns": None,
        "resolved_ns": None,
    }
    timestamp = datetime.fromtimestamp(now_ns // 1_000_000_000, UTC).isoformat().replace("+00:00", "Z")
    data = {
        "case_id": case_id,
        "trace_id": trace_id,
        "decision_id": decision_id,
        "action": action,
        "reason_code": reason_code,
        "severity": severity,
        "policy_name": policy_name,
        "policy_version": policy_version,
        "title": title,
    }
    notifications = [
        {
            "project_id": project_id,
            "case_id": case_id,
            "endpoint_id": endpoint["id"],
            "event_type": CASE_CREATED,
            # Standard Webhooks' webhook-id: the same for every retry, so receivers can deduplicate.
            "message_id": f"msg_{uuid.uuid4().hex}",
            "payload": {"type": CASE_CREATED, "timestamp": timestamp, "data": dict(data)},
            "status": "pending",
            "attempts": 0,
            "next_attempt_ns": now_ns,
            "last_error": None,
            "created_ns": now_ns,
            "delivered_ns": None,
        }
        for endpoint in endpoints
        if endpoint.get("enabled", True)
    ]
    return case, notifications
