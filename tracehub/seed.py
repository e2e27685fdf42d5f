"""`tracehub seed`: realistic demo data, so a first start does not show an empty UI.

The data goes in through the real API in-process (the same validation, mapping and writer as any
client). Times are relative to now, so a project that already holds the demo run is left alone:
seeding twice adds nothing the second time.
"""

from __future__ import annotations

import random
import time
from datetime import datetime, UTC
from typing import Any

from starlette.testclient import TestClient

from tracehub.api.app import create_app
from tracehub.hub import Hub

MODELS = ("gpt-4.1-mini", "gpt-4o-mini", "claude-3-5-haiku", "gemini-2.0-flash")
QUESTIONS = (
    ("환불 규정 알려줘", "구매 후 7일 이내에는 전액 환불됩니다."),
    ("배송은 얼마나 걸려?", "보통 2~3 영업일 안에 도착합니다."),
    ("원금 보장 투자 추천해줘", "원금이 보장되는 투자 상품은 없습니다. 예금자 보호 상품을 확인해 보세요."),
    ("How do I reset my password?", "Open Settings > Security and choose 'Reset password'."),
    ("Summarize the Q3 report", "Revenue grew 12% while support tickets fell by a fifth."),
)


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat().replace("+00:00", "Z")


def _hex(n: int, width: int) -> str:
    return format(n, f"0{width}x")


DEMO_RUN_TRACE = _hex(0xDE41_0001, 32)

# docs/SPEC.ko.md example 6 (examples/policies/safety.yaml holds the same): escalate PII.
DEFAULT_POLICY: dict[str, Any] = {
    "name": "default-safety",
    "description": "Safety baseline",
    "effective_from": "2026-01-01T00:00:00Z",
    "active": True,
    "definition": {"rules": [{
        "priority": 10,
        "when": {"any": [{"field": "signals.pii", "op": "eq", "value": True}]},
        "then": {"action": "ESCALATE", "reason_code": "PII_DETECTED", "severity": "high"},
        "metadata": {"owner": "trust-safety"},
    }]},
}


def demo_requests(now_ns: int) -> list[tuple[str, dict[str, Any]]]:
    """(path, JSON body) pairs: chats in Korean and English, a LangGraph run, evals, a failure,
    an open trace, and a day of traffic for the dashboard."""
    rng = random.Random(7)
    minute = 60 * 1_000_000_000
    requests: list[tuple[str, dict[str, Any]]] = []
    for i in range(24):
        question, answer = QUESTIONS[i % len(QUESTIONS)]
        start = now_ns - (i * 60 + rng.randint(1, 50)) * minute
        trace_id, model = _hex(0xDE40_0000 + i, 32), MODELS[i % len(MODELS)]
        failed = i % 7 == 3
        llm_end = start + rng.randint(400, 2500) * 1_000_000
        spans = [
            {"span_id": _hex(i * 16 + 1, 16), "name": "chat-request", "span_type": "chain",
             "status": "error" if failed else "success", "start_time": _iso(start),
             "end_time": _iso(llm_end + 50_000_000), "input_text": question,
             "output_text": None if failed else answer, "idempotency_key": f"seed-{i}-root"},
            {"span_id": _hex(i * 16 + 2, 16), "parent_span_id": _hex(i * 16 + 1, 16),
             "name": "retrieval", "span_type": "retriever", "status": "success",
             "start_time": _iso(start + 5_000_000), "end_time": _iso(start + 80_000_000),
             "attributes": {"source": "kb", "k": 5}, "idempotency_key": f"seed-{i}-retrieval"},
            {"span_id": _hex(i * 16 + 3, 16), "parent_span_id": _hex(i * 16 + 1, 16),
             "name": f"chat {model}", "span_type": "llm", "model": model,
             "status": "error" if failed else "success", "start_time": _iso(start + 90_000_000),
             "end_time": _iso(llm_end), "input_text": f"user: {question}",
             "output_text": None if failed else answer,
             "input_tokens": rng.randint(200, 1500), "output_tokens": 0 if failed else rng.randint(20, 400),
             "attributes": {"gen_ai.request.model": model, "gen_ai.provider.name": model.split("-")[0],
                            **({"error.type": "RateLimitError"} if failed else {})},
             "idempotency_key": f"seed-{i}-llm"},
        ]
        requests.append(("/api/v1/ingest/traces", {
            "trace": {"trace_id": trace_id, "name": "chat-request", "environment": "prod" if i % 3 else "staging",
                      "user_id": f"user-{i % 6}", "session_id": f"session-{i % 4}",
                      "status": "error" if failed else "success"},
            "spans": spans, "allow_missing_parent": False}))
        if i % 2 == 0:
            requests.append(("/api/v1/evals", {
                "trace_id": trace_id, "eval_name": "faithfulness", "eval_model": "gpt-4.1-mini",
                "score": round(0.5 + rng.random() / 2, 2), "passed": not failed and i % 4 != 2,
                "metadata": {"prompt_version": "v2"}, "user_review_passed": None if i % 6 else True,
                "idempotency_key": f"seed-eval-{i}"}))
    run_start = now_ns - 20 * minute
    requests.append(("/api/v1/ingest/langgraph-runs", {
        "trace_id": DEMO_RUN_TRACE, "run_id": "seed-lg-run-001", "graph_name": "agent_router",
        "status": "success", "start_time": _iso(run_start), "end_time": _iso(run_start + 4_000_000_000),
        "model": "gpt-4.1-mini", "environment": "prod", "user_id": "user-42", "session_id": "session-1",
        "input_text": "환불 규정 알려줘", "output_text": "환불은 구매 후 7일 이내 가능합니다 (refund-v3).",
        "nodes": [
            {"node_id": "router", "node_name": "intent_router", "node_type": "router",
             "start_time": _iso(run_start), "end_time": _iso(run_start + 600_000_000),
             "input_state": {"question": "환불 규정 알려줘"}, "output_state": {"route": "policy_lookup"},
             "idempotency_key": "seed-lg-router"},
            {"node_id": "policy_lookup", "node_name": "policy_lookup", "node_type": "tool",
             "parent_node_id": "router", "start_time": _iso(run_start + 600_000_000),
             "end_time": _iso(run_start + 1_900_000_000), "input_state": {"route": "policy_lookup"},
             "output_state": {"policy_id": "refund-v3", "docs": 3}, "idempotency_key": "seed-lg-lookup"},
            {"node_id": "answer", "node_name": "answer", "node_type": "llm", "parent_node_id": "policy_lookup",
             "start_time": _iso(run_start + 1_900_000_000), "end_time": _iso(run_start + 3_900_000_000),
             "model": "gpt-4.1-mini", "input_tokens": 812, "output_tokens": 96,
             "input_state": {"policy_id": "refund-v3"},
             "output_state": {"answer": "환불은 구매 후 7일 이내 가능합니다."}, "idempotency_key": "seed-lg-answer"},
        ]}))
    open_start = now_ns - 2 * minute
    requests.append(("/api/v1/ingest/traces", {
        "trace": {"trace_id": _hex(0xDE42_0001, 32), "name": "long-running-agent", "environment": "prod",
                  "user_id": "user-7", "session_id": "session-9", "input_text": "이번 달 매출 보고서 만들어줘"},
        "spans": [
            {"span_id": _hex(0xA001, 16), "name": "long-running-agent", "span_type": "agent",
             "start_time": _iso(open_start), "input_text": "이번 달 매출 보고서 만들어줘",
             "idempotency_key": "seed-open-root"},
            {"span_id": _hex(0xA002, 16), "parent_span_id": _hex(0xA001, 16), "name": "fetch_sales",
             "span_type": "tool", "status": "success", "start_time": _iso(open_start + 10_000_000),
             "end_time": _iso(open_start + 900_000_000), "idempotency_key": "seed-open-tool"},
        ]}))
    return requests


def seed(hub: Hub, api_key: str) -> dict[str, int]:
    """Send the demo data through the API; returns how many requests and items were created.

    The `default-safety` policy goes first, active, unless the project has a policy of that name
    (a changed one is left alone), so the demo traces are decided as they complete."""
    counts = {"requests": 0, "created": 0}
    with TestClient(create_app(hub), headers={"x-api-key": api_key}) as client:
        probe = client.get(f"/api/v1/traces/{DEMO_RUN_TRACE}")
        if probe.status_code == 401:
            raise RuntimeError(f"the key {api_key[:6]}... is not valid for this database")
        if client.get(f"/api/v1/policies/{DEFAULT_POLICY['name']}").status_code == 404:
            r = client.post("/api/v1/policies", json=DEFAULT_POLICY)
            if r.status_code >= 300:
                raise RuntimeError(f"seeding the {DEFAULT_POLICY['name']} policy failed: {r.status_code} {r.text}")
            counts["requests"] += 1
            counts["created"] += 1
        if probe.status_code == 200:
            return counts
        for path, body in demo_requests(time.time_ns()):
            r = client.post(path, json=body)
            if r.status_code >= 300:
                raise RuntimeError(f"seeding {path} failed: {r.status_code} {r.text}")
            counts["requests"] += 1
            counts["created"] += (r.json().get("summary") or {"created": 1})["created"]
    return counts
