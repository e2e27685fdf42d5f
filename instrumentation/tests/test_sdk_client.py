"""LLMTraceClient against OTel's in-memory exporter and httpx's mock transport (a fake hub)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from llm_trace_hub import HubAPIError, LLMTraceClient
from llm_trace_hub.http_api import HubAPI

HEX = set("0123456789abcdef")


class FakeHub:
    """A scripted hub behind httpx.MockTransport: records requests, answers from a queue."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.answers: list[httpx.Response | Exception] = []
        self.sleeps: list[float] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if self.answers else httpx.Response(201, json={"ok": True})
        if isinstance(answer, Exception):
            raise answer
        return answer

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]

    def api(self) -> HubAPI:
        return HubAPI(
            "http://hub.test",
            "dev-key",
            transport=httpx.MockTransport(self.handle),
            sleep=self.sleeps.append,
            max_attempts=4,
        )


@pytest.fixture
def hub() -> FakeHub:
    return FakeHub()


@pytest.fixture
def memory() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def client(hub: FakeHub, memory: InMemorySpanExporter) -> Iterator[LLMTraceClient]:
    c = LLMTraceClient(
        base_url="http://hub.test",
        api_key="dev-key",
        span_processor=SimpleSpanProcessor(memory),
        http_api=hub.api(),
    )
    yield c
    c.shutdown()


def by_name(memory: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {s.name: s for s in memory.get_finished_spans()}


def parent_id(span: ReadableSpan) -> str | None:
    return format(span.parent.span_id, "016x") if span.parent else None


def test_spec_example_flow(
    client: LLMTraceClient, hub: FakeHub, memory: InMemorySpanExporter
) -> None:
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
    client.attach_eval(
        eval_name="faithfulness",
        eval_model="gpt-4.1-mini",
        score=0.72,
        passed=True,
        trace_id=trace_id,
        user_review_passed=True,
    )
    assert client.flush()

    assert len(trace_id) == 32 and set(trace_id) <= HEX
    assert len(span.span_id) == 16 and set(span.span_id) <= HEX and span.trace_id == trace_id
    spans = by_name(memory)
    root, retrieval = spans["chat-request"], spans["retrieval"]
    assert format(root.context.trace_id, "032x") == trace_id and root.parent is None
    assert parent_id(retrieval) == format(root.context.span_id, "016x")
    assert {
        "tracehub.span.type": "chain",
        "gen_ai.request.model": "gpt-4.1-mini",
        "user.id": "user-42",
        "session.id": "session-1",
        "input.value": "원금 보장 투자 추천해줘",
        "deployment.environment.name": "prod",
        "tracehub.auto_ended": True,
    }.items() <= dict(root.attributes or {}).items()
    assert root.resource.attributes["deployment.environment.name"] == "prod"
    assert root.resource.attributes["service.name"] == "llm-app"
    assert retrieval.attributes is not None
    assert retrieval.attributes["tracehub.span.type"] == "tool"
    assert retrieval.attributes["source"] == "kb"
    assert retrieval.status.status_code == StatusCode.OK
    [event] = retrieval.events
    assert event.name == "log"
    assert dict(event.attributes or {}) == {
        "message": "retrieved 5 docs",
        "level": "info",
        "metadata": '{"k":5}',
    }

    [request] = hub.requests
    assert request.url.path == "/api/v1/evals"
    assert request.headers["x-api-key"] == "dev-key"
    body = json.loads(request.content)
    assert body == {
        "trace_id": trace_id,
        "eval_name": "faithfulness",
        "eval_model": "gpt-4.1-mini",
        "score": 0.72,
        "passed": True,
        "metadata": {},
        "user_review_passed": True,
        "idempotency_key": body["idempotency_key"],
    }
    assert body["idempotency_key"].startswith("eval-")


def test_attach_eval_flushes_ended_spans_first(memory: InMemorySpanExporter) -> None:
    exported_at_post: list[list[str]] = []

    def handle(request: httpx.Request) -> httpx.Response:
        exported_at_post.append([s.name for s in memory.get_finished_spans()])
        return httpx.Response(201, json={})

    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # A real batch processor with a long delay: only an explicit flush exports before the POST.
    client = LLMTraceClient(
        span_processor=BatchSpanProcessor(memory, schedule_delay_millis=60_000),
        http_api=HubAPI("http://hub.test", "k", transport=httpx.MockTransport(handle)),
    )
    trace_id = client.start_trace(name="t")
    with client.span("step"):
        pass
    client.attach_eval("relevance", score=1.0)
    assert exported_at_post == [["step"]]
    assert client.current_trace_id() == trace_id
    client.shutdown()


def test_attach_eval_retries_with_one_idempotency_key(client: LLMTraceClient, hub: FakeHub) -> None:
    hub.answers += [
        httpx.ConnectError("refused"),
        httpx.Response(503),
        httpx.Response(429, headers={"retry-after": "0.25"}),
        httpx.Response(201, json={"eval_id": "e1"}),
    ]
    answer = client.attach_eval("faithfulness", score=0.5, passed=False, trace_id="a" * 32)
    assert answer == {"eval_id": "e1"}
    keys = {b["idempotency_key"] for b in hub.bodies()}
    assert len(hub.requests) == 4 and len(keys) == 1
    assert len(hub.sleeps) == 3 and hub.sleeps[2] == 0.25  # Retry-After honoured


def test_attach_eval_gives_up(client: LLMTraceClient, hub: FakeHub) -> None:
    hub.answers += [httpx.Response(500)] * 4
    with pytest.raises(HubAPIError) as failed:
        client.attach_eval("faithfulness", score=0.5, trace_id="b" * 32)
    assert failed.value.status_code == 500 and len(hub.requests) == 4

    hub.answers.append(httpx.Response(422, json={"detail": "bad score"}))
    with pytest.raises(HubAPIError) as refused:
        client.attach_eval("faithfulness", score=7, trace_id="b" * 32)
    assert refused.value.status_code == 422 and refused.value.body == {"detail": "bad score"}
    assert len(hub.requests) == 5  # a 4xx other than 429 is not retried


def test_end_span_error_and_end_trace_output(
    client: LLMTraceClient, memory: InMemorySpanExporter
) -> None:
    client.start_trace(name="req", input_text={"q": "hi"})
    tool = client.start_span("call_api", span_type="tool")
    client.end_span(status="error", span_id=tool.span_id, error=TimeoutError("upstream slow"))
    client.end_trace(output_text="sorry", status="error")
    spans = by_name(memory)
    failed = spans["call_api"]
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.status.description == "TimeoutError: upstream slow"
    assert [e.name for e in failed.events] == ["exception"]
    root = spans["req"]
    assert root.status.status_code == StatusCode.ERROR
    assert root.attributes is not None
    assert root.attributes["output.value"] == "sorry"
    assert root.attributes["input.value"] == '{"q":"hi"}'
    assert root.attributes["input.mime_type"] == "application/json"
    assert "tracehub.auto_ended" not in root.attributes
    assert not trace.get_current_span().get_span_context().is_valid  # context restored


def test_span_context_manager_marks_errors(
    client: LLMTraceClient, memory: InMemorySpanExporter
) -> None:
    client.start_trace(name="req")
    with pytest.raises(KeyError), client.span("lookup", "retriever"):
        raise KeyError("missing")
    span = by_name(memory)["lookup"]
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes is not None and span.attributes["tracehub.span.type"] == "retriever"


def test_nested_spans_follow_the_current_span(
    client: LLMTraceClient, memory: InMemorySpanExporter
) -> None:
    client.start_trace(name="req")
    outer = client.start_span("outer")
    inner = client.start_span("inner")
    client.end_span(span_id=inner.span_id)
    sibling = client.start_span("sibling")  # outer is current again
    client.end_span()  # current = sibling
    client.end_span()  # current = outer
    client.flush()
    spans = by_name(memory)
    assert parent_id(spans["inner"]) == outer.span_id
    assert parent_id(spans["sibling"]) == outer.span_id
    assert "tracehub.auto_ended" not in (spans["outer"].attributes or {})
    assert sibling.trace_id == outer.trace_id


def test_context_propagates_per_asyncio_task(
    client: LLMTraceClient, memory: InMemorySpanExporter
) -> None:
    async def worker(name: str) -> str:
        step = client.start_span(f"{name}-step")
        await asyncio.sleep(0.01)  # the other task runs here with its own current span
        child = client.start_span(f"{name}-child")
        await asyncio.sleep(0.01)
        client.end_span(span_id=child.span_id)
        client.end_span(span_id=step.span_id)
        return step.span_id

    async def main() -> tuple[str, list[str]]:
        trace_id = client.start_trace(name="async-request")
        ids = await asyncio.gather(worker("a"), worker("b"))
        return trace_id, list(ids)

    trace_id, (a_step, b_step) = asyncio.run(main())
    client.flush()
    spans = by_name(memory)
    root_id = format(spans["async-request"].context.span_id, "016x")
    assert parent_id(spans["a-step"]) == root_id and parent_id(spans["b-step"]) == root_id
    assert parent_id(spans["a-child"]) == a_step
    assert parent_id(spans["b-child"]) == b_step
    assert {format(s.context.trace_id, "032x") for s in spans.values()} == {trace_id}


def test_context_propagates_to_threads(
    client: LLMTraceClient, memory: InMemorySpanExporter
) -> None:
    trace_id = client.start_trace(name="threaded")
    fan = client.start_span("fan_out")

    def job(i: int) -> str:
        handle = client.start_span(f"job-{i}")
        client.end_span(span_id=handle.span_id)
        return handle.trace_id

    with ThreadPoolExecutor(3) as pool:
        traces = list(pool.map(client.wrap(job), range(3)))
    explicit: list[str] = []
    t = threading.Thread(
        target=lambda: explicit.append(
            client.start_span("explicit", trace_id=trace_id, parent_span_id=fan.span_id).span_id
        )
    )
    t.start()
    t.join()
    client.end_span(span_id=explicit[0])
    bare = threading.Thread(
        target=lambda: client.end_span(span_id=client.start_span("bare").span_id)
    )
    bare.start()
    bare.join()
    client.end_span(span_id=fan.span_id)
    client.flush()
    spans = by_name(memory)
    assert traces == [trace_id] * 3
    for i in range(3):
        assert parent_id(spans[f"job-{i}"]) == fan.span_id
    assert parent_id(spans["explicit"]) == fan.span_id
    # A thread with no context and no ids falls back to the latest open trace's root.
    assert parent_id(spans["bare"]) == format(spans["threaded"].context.span_id, "016x")


def test_langgraph_node_methods(client: LLMTraceClient, memory: InMemorySpanExporter) -> None:
    trace_id = client.start_langgraph_run(
        graph_name="agent_router",
        run_id="lg-run-002",
        input_text="환불 규정 알려줘",
        model="gpt-4.1-mini",
    )
    router = client.start_langgraph_node(
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
    client.flush()
    spans = by_name(memory)
    run = spans["agent_router"]
    assert format(run.context.trace_id, "032x") == trace_id
    assert dict(run.attributes or {})["langgraph.run.id"] == "lg-run-002"
    assert dict(run.attributes or {})["tracehub.span.type"] == "chain"
    first, second = spans["intent_router"], spans["policy_lookup"]
    assert parent_id(first) == format(run.context.span_id, "016x")
    assert parent_id(second) == router.span_id
    a, b = dict(first.attributes or {}), dict(second.attributes or {})
    assert a["tracehub.span.type"] == "node" and a["langgraph.node.type"] == "router"
    assert a["langgraph.graph.name"] == "agent_router" and a["langgraph.node"] == "intent_router"
    assert (a["langgraph.step"], b["langgraph.step"]) == (1, 2)
    assert b["langgraph.triggers"] == ("intent_router",)
    assert json.loads(a["input.value"]) == {"question": "환불 규정 알려줘"}
    assert json.loads(b["output.value"]) == {"policy_id": "refund-v3"}
    assert first.status.status_code == StatusCode.OK


def test_node_methods_need_a_run(client: LLMTraceClient) -> None:
    with pytest.raises(ValueError, match="start_langgraph_run"):
        client.start_langgraph_node(node_id="x")


def test_ingest_langgraph_run_posts_spec_body(client: LLMTraceClient, hub: FakeHub) -> None:
    start = datetime(2026, 2, 7, 10, 0, tzinfo=timezone.utc)
    client.ingest_langgraph_run(
        graph_name="agent_router",
        run_id="lg-run-001",
        trace_id="3" * 32,
        model="gpt-4.1-mini",
        environment="prod",
        start_time=start,
        end_time="2026-02-07T10:00:04Z",
        nodes=[
            {
                "node_id": "plan",
                "node_name": "planner",
                "node_type": "router",
                "start_time": start,
                "input_state": {"question": "..."},
                "output_state": {"route": "retrieval"},
            },
            {
                "node_id": "retrieve",
                "node_name": "retrieval",
                "parent_node_id": "plan",
                "output_state": {"docs": {1, 2}},
                "idempotency_key": "retrieve-1",
            },
        ],
    )
    [body] = hub.bodies()
    assert hub.requests[0].url.path == "/api/v1/ingest/langgraph-runs"
    assert body["trace_id"] == "3" * 32 and body["status"] == "success"
    assert body["start_time"] == "2026-02-07T10:00:00Z"
    assert body["end_time"] == "2026-02-07T10:00:04Z"
    plan, retrieve = body["nodes"]
    assert plan["idempotency_key"] == "lg-run-001:plan"
    assert plan["start_time"] == "2026-02-07T10:00:00Z"
    assert retrieve["idempotency_key"] == "retrieve-1"
    assert retrieve["output_state"] == {"docs": [1, 2]}  # a set, serialized safely


def test_client_honours_given_tracer_provider(hub: FakeHub, memory: InMemorySpanExporter) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    c = LLMTraceClient(tracer_provider=provider, http_api=hub.api())
    c.start_trace(name="own-provider", environment="staging")
    c.flush()
    [span] = memory.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["deployment.environment.name"] == "staging"
    assert c.tracer_provider is provider
