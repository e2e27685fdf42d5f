"""Send a trace to LLM Trace Hub through its JSON API, with nothing but httpx.

    pip install httpx
    python examples/send_trace_via_api.py          # TRACEHUB_URL / TRACEHUB_API_KEY override the defaults

It posts a trace with two spans, a log event and an amendment, a LangGraph run, and an evaluation,
then prints where to look at them.
"""

from __future__ import annotations

import os
import sys
import uuid
from datetime import UTC, datetime, timedelta

import httpx

BASE_URL = os.environ.get("TRACEHUB_URL", "http://localhost:8000")
API_KEY = os.environ.get("TRACEHUB_API_KEY", "dev-key")


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def main() -> int:
    try:
        send_and_print()
    except httpx.HTTPError as exc:  # hub down, key refused, a request rejected
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def send_and_print() -> None:
    client = httpx.Client(base_url=BASE_URL, headers={"x-api-key": API_KEY}, timeout=10)
    now = datetime.now(UTC)
    trace_id, root_id, llm_id = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())

    r = client.post("/api/v1/ingest/traces", json={
        "trace": {"trace_id": trace_id, "name": "chat-request", "model": "gpt-4.1-mini",
                  "environment": "dev", "user_id": "user-42", "session_id": "session-1",
                  "input_text": "환불 규정 알려줘", "attributes": {"team": "support"}},
        "spans": [
            {"span_id": root_id, "name": "chat-request", "span_type": "chain",
             "start_time": iso(now), "end_time": iso(now + timedelta(seconds=2)), "status": "success",
             "input_text": "환불 규정 알려줘", "output_text": "구매 후 7일 이내 전액 환불됩니다.",
             "idempotency_key": f"{trace_id}-root"},
            {"span_id": llm_id, "parent_span_id": root_id, "name": "chat gpt-4.1-mini",
             "span_type": "llm", "model": "gpt-4.1-mini", "status": "success",
             "start_time": iso(now + timedelta(milliseconds=100)),
             "end_time": iso(now + timedelta(milliseconds=1900)),
             "input_text": "user: 환불 규정 알려줘", "output_text": "구매 후 7일 이내 전액 환불됩니다.",
             "input_tokens": 420, "output_tokens": 58, "idempotency_key": f"{trace_id}-llm"},
        ],
    })
    r.raise_for_status()

    client.post("/api/v1/ingest/spans", json={"events": [
        {"trace_id": trace_id, "span_id": llm_id, "event_type": "LOG", "event_time": iso(now),
         "payload": {"message": "retrieved 5 docs"}, "idempotency_key": f"{trace_id}-log"},
        {"trace_id": trace_id, "span_id": llm_id, "event_type": "AMENDMENT", "event_time": iso(now),
         "payload": {"patch": {"attributes": {"retry": 1}}}, "idempotency_key": f"{trace_id}-amd"},
    ]}).raise_for_status()

    run_trace = str(uuid.uuid4())
    client.post("/api/v1/ingest/langgraph-runs", json={
        "trace_id": run_trace, "run_id": f"run-{run_trace[:8]}", "graph_name": "agent_router",
        "status": "success", "start_time": iso(now), "end_time": iso(now + timedelta(seconds=3)),
        "model": "gpt-4.1-mini", "environment": "dev",
        "nodes": [
            {"node_id": "router", "node_name": "intent_router", "node_type": "router",
             "start_time": iso(now), "end_time": iso(now + timedelta(seconds=1)),
             "input_state": {"question": "환불 규정 알려줘"}, "output_state": {"route": "policy_lookup"}},
            {"node_id": "policy_lookup", "node_name": "policy_lookup", "node_type": "tool",
             "parent_node_id": "router", "start_time": iso(now + timedelta(seconds=1)),
             "end_time": iso(now + timedelta(seconds=3)),
             "input_state": {"route": "policy_lookup"}, "output_state": {"policy_id": "refund-v3"}},
        ],
    }).raise_for_status()

    client.post("/api/v1/evals", json={
        "trace_id": trace_id, "eval_name": "faithfulness", "eval_model": "gpt-4.1-mini",
        "score": 0.91, "passed": True, "metadata": {"prompt_version": "v2"},
        "user_review_passed": True, "idempotency_key": f"{trace_id}-eval",
    }).raise_for_status()

    stored = client.get(f"/api/v1/traces/{trace_id}").json()
    print(f"trace {stored['trace']['trace_id']}: {len(stored['spans'])} spans, "
          f"{len(stored['evals'])} eval, status {stored['trace']['status']}")
    print(f"trace:          {BASE_URL}/api/v1/traces/{stored['trace']['trace_id']}")
    print(f"langgraph run:  {BASE_URL}/api/v1/traces/{run_trace.replace('-', '')}")


if __name__ == "__main__":
    raise SystemExit(main())
