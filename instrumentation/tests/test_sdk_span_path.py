"""The span path's shortcuts keep the SDK's behaviour: sampling, resource, current-span hint."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from llm_trace_hub import LLMTraceClient
from llm_trace_hub.provider import build_resource, build_tracer_provider
from llm_trace_hub.settings import HubSettings


def test_sampler_follows_otel_traces_sampler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    provider = build_tracer_provider(HubSettings(), span_exporter=InMemorySpanExporter())
    assert provider.sampler is ALWAYS_OFF
    assert not provider.get_tracer("t").start_span("s").is_recording()
    provider.shutdown()
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "1.0")
    provider = build_tracer_provider(HubSettings(), span_exporter=InMemorySpanExporter())
    assert provider.get_tracer("t").start_span("s").is_recording()  # sampled by the ratio
    provider.shutdown()


def test_resource_hashes_like_the_sdk_resource() -> None:
    ours = build_resource("svc", "prod")
    sdk = Resource.create({"service.name": "svc", "deployment.environment.name": "prod"})
    assert ours == sdk and hash(ours) == hash(sdk)
    assert ours.attributes["service.name"] == "svc"


def test_spans_of_one_resource_encode_under_it_once() -> None:
    memory = InMemorySpanExporter()
    provider = build_tracer_provider(
        HubSettings(), service_name="svc", span_processor=SimpleSpanProcessor(memory)
    )
    tracer = provider.get_tracer("t")
    for name in ("a", "b", "c"):
        tracer.start_span(name).end()
    request = encode_spans(memory.get_finished_spans())
    [resource_spans] = request.resource_spans
    [scope_spans] = resource_spans.scope_spans
    assert [s.name for s in scope_spans.spans] == ["a", "b", "c"]
    provider.shutdown()


@pytest.fixture
def memory() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def client(memory: InMemorySpanExporter) -> Iterator[LLMTraceClient]:
    c = LLMTraceClient(span_processor=SimpleSpanProcessor(memory))
    yield c
    c.shutdown()


def parent_name(memory: InMemorySpanExporter, name: str) -> str | None:
    spans = {s.context.span_id: s for s in memory.get_finished_spans()}
    [span] = [s for s in spans.values() if s.name == name]
    return spans[span.parent.span_id].name if span.parent else None


def test_siblings_and_a_second_trace_find_their_parents(
    client: LLMTraceClient, memory: InMemorySpanExporter
) -> None:
    first = client.start_trace(name="first")
    for name in ("a", "b"):
        client.end_span(span_id=client.start_span(name).span_id)
    second = client.start_trace(name="second", environment="staging")
    child = client.start_span("in-second")
    assert child.trace_id == second
    client.end_span(span_id=child.span_id)
    client.end_trace(trace_id=second)
    after = client.start_span("after-second")  # the first trace's root is current again
    assert after.trace_id == first
    client.end_span(span_id=after.span_id)
    client.end_trace(trace_id=first)
    client.flush()
    assert parent_name(memory, "a") == parent_name(memory, "b") == "first"
    assert parent_name(memory, "in-second") == "second"
    assert parent_name(memory, "after-second") == "first"
    staging = next(s for s in memory.get_finished_spans() if s.name == "in-second")
    assert staging.resource.attributes.get("deployment.environment.name") == "staging"


def test_a_context_made_elsewhere_is_looked_up(
    client: LLMTraceClient, memory: InMemorySpanExporter
) -> None:
    trace_id = client.start_trace(name="root")
    other = TracerProvider(shutdown_on_exit=False).get_tracer("other")
    foreign = other.start_span("foreign", context=Context())  # a trace of another tracer
    token = otel_context.attach(trace.set_span_in_context(foreign))
    inner = client.start_span("inner")
    client.end_span(span_id=inner.span_id)
    otel_context.detach(token)
    foreign.end()
    assert inner.trace_id != trace_id
    assert inner.trace_id == format(foreign.get_span_context().trace_id, "032x")
    nested = client.start_span("nested")  # the root is current again
    assert nested.trace_id == trace_id
    client.flush()
    assert parent_name(memory, "nested") == "root"
