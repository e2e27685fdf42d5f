"""Send one trace to a running LLM Trace Hub with the Python SDK, then print where to read it.

    pip install -e instrumentation
    tracehub serve &                       # or any hub reachable at LLM_TRACE_HUB_BASE_URL
    python examples/send_trace_via_sdk.py [BASE_URL] [API_KEY]

This is the spec's SDK example, plus a LangGraph run recorded by hand and ``end_trace``. It exits
1 when the spans did not reach the hub (``flush()`` is False: hub down, key refused).
"""

from __future__ import annotations

import sys

from llm_trace_hub import HubAPIError, HubSettings, LLMTraceClient


def main() -> int:
    # Unset arguments fall back to LLM_TRACE_HUB_BASE_URL / LLM_TRACE_HUB_API_KEY, then defaults.
    args = [*sys.argv[1:], None, None]
    hub = HubSettings.from_env(args[0], args[1])
    client = LLMTraceClient(base_url=hub.base_url, api_key=hub.api_key, service_name="sdk-example")

    trace_id = client.start_trace(
        name="chat-request",
        input_text="원금 보장 투자 추천해줘",
        model="gpt-4.1-mini",
        environment="prod",
        user_id="user-42",
        session_id="session-1",
    )
    span = client.start_span("retrieval", span_type="tool", attributes={"source": "kb"})
    client.log_event("retrieved 5 docs", metadata={"k": 5})
    client.end_span(status="success", span_id=span.span_id)
    try:
        client.attach_eval(
            eval_name="faithfulness",
            eval_model="gpt-4.1-mini",
            score=0.72,
            passed=True,
            trace_id=trace_id,
            user_review_passed=True,
        )
    except HubAPIError as exc:  # the trace itself is still sent
        print(f"warning: eval not attached: {exc}", file=sys.stderr)
    client.end_trace(output_text="원금이 보장되는 투자 상품은 추천할 수 없습니다.")

    run_trace_id = client.start_langgraph_run(
        graph_name="agent_router",
        run_id="lg-run-002",
        input_text="환불 규정 알려줘",
        model="gpt-4.1-mini",
    )
    client.start_langgraph_node(
        node_id="router",
        node_name="intent_router",
        node_type="router",
        input_state={"question": "환불 규정 알려줘"},
    )
    client.end_langgraph_node(node_id="router", output_state={"route": "policy_lookup"})
    client.start_langgraph_node(
        node_id="policy_lookup",
        node_name="policy_lookup",
        node_type="tool",
        parent_node_id="router",
        input_state={"route": "policy_lookup"},
    )
    client.end_langgraph_node(node_id="policy_lookup", output_state={"policy_id": "refund-v3"})

    delivered = client.flush()
    client.shutdown()
    if not delivered:
        print(f"error: the spans did not reach {client.settings.base_url}", file=sys.stderr)
        return 1
    print(f"trace:          {client.settings.base_url}/api/v1/traces/{trace_id}")
    print(f"langgraph run:  {client.settings.base_url}/api/v1/traces/{run_trace_id}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
