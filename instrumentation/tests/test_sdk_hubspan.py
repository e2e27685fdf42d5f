"""HubSpan behaves as the SDK's span: the same script on both providers exports the same OTLP."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

from llm_trace_hub.tracer import HubSpan, HubTracerProvider

RESOURCE = Resource.create({"service.name": "svc"})


class Opaque:
    """No __str__ or __repr__ of its own."""

    __str__ = object.__str__


class Named:
    def __str__(self) -> str:
        return "named"


def attributes_of_every_kind(tracer: trace.Tracer) -> None:
    span = tracer.start_span(
        "kinds",
        attributes={
            "s": "text",
            "b": True,
            "i": 7,
            "f": 1.5,
            "strs": ["a", "b"],
            "ints": (1, 2),
            "": 0,
        },
    )
    span.set_attribute("none", None)
    span.set_attribute("bytes", b"\x00\x01")
    span.set_attribute("obj", Named())
    span.set_attribute("opaque", Opaque())
    span.set_attribute("", "empty key")
    span.set_attributes({3: "int key", "mixed": [1, "a"], "map": {"k": "v", "n": 1}})
    span.set_attributes({"": "dropped from a mapping", Opaque(): "key without a str"})
    span.set_attribute("s", "replaced")
    span.end()


def limits(tracer: trace.Tracer) -> None:
    span = tracer.start_span("limits", attributes={"a": "0123456789", "b": 1})
    for i in range(5):
        span.set_attribute(f"k{i}", i)
    span.set_attribute("b", 2)  # present: replaced, not counted as dropped
    for i in range(4):
        span.add_event(f"e{i}", {"x": "0123456789", "y": 1, "z": 2, "w": 3})
    span.add_link(SpanContext(1, 2, is_remote=True), {"l": "0123456789"})
    span.add_link(SpanContext(3, 4, is_remote=True))
    span.end()


def status_rules(tracer: trace.Tracer) -> None:
    for steps in (
        [Status(StatusCode.ERROR, "bad"), Status(StatusCode.OK)],
        [Status(StatusCode.OK), Status(StatusCode.ERROR, "late")],
        [Status(StatusCode.ERROR, "kept"), Status(StatusCode.UNSET)],
        [StatusCode.ERROR, StatusCode.UNSET],
    ):
        span = tracer.start_span("status")
        for step in steps:
            span.set_status(step)
        span.end()
    span = tracer.start_span("described")
    span.set_status(StatusCode.ERROR, "with description")
    span.end()


def after_end(tracer: trace.Tracer) -> None:
    span = tracer.start_span("ended", kind=SpanKind.CLIENT)
    span.update_name("renamed")
    span.end(end_time=2_000)
    span.set_attribute("late", 1)
    span.add_event("late")
    span.set_status(Status(StatusCode.ERROR, "late"))
    span.update_name("late")
    span.end()
    assert not span.is_recording()


def exceptions(tracer: trace.Tracer) -> None:
    with (
        pytest.raises(ValueError),
        tracer.start_as_current_span("outer", kind=SpanKind.SERVER),
        tracer.start_as_current_span("inner", record_exception=False),
    ):
        raise ValueError("boom")
    with pytest.raises(KeyError), tracer.start_span("managed") as span:
        span.record_exception(RuntimeError("noted"), {"extra": "x"}, timestamp=5)
        raise KeyError("k")


def parents_and_links(tracer: trace.Tracer) -> None:
    remote = SpanContext(
        0xABC,
        0xDEF,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("vendor", "x")]),
    )
    ctx = trace.set_span_in_context(NonRecordingSpan(remote))
    links = [
        Link(SpanContext(5, 6, is_remote=True), {"why": "batch"}),
        Link(trace.INVALID_SPAN_CONTEXT),
    ]
    span = tracer.start_span("remote child", context=ctx, links=links, start_time=1_000)
    with trace.use_span(span, end_on_exit=True):
        tracer.start_span("grandchild").end()
    unsampled = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(0))
    dropped = tracer.start_span(
        "unsampled", context=trace.set_span_in_context(NonRecordingSpan(unsampled))
    )
    assert not dropped.is_recording()
    dropped.end()


SCRIPTS = [attributes_of_every_kind, limits, status_rules, after_end, exceptions, parents_and_links]
LIMITS = dict(
    max_span_attributes=4,
    max_span_attribute_length=5,
    max_events=2,
    max_links=1,
    max_event_attributes=2,
    max_link_attributes=1,
    max_attribute_length=4,
)


def export(
    provider_class: type[TracerProvider], script: Callable[[trace.Tracer], None], **kwargs: Any
) -> tuple[list[ReadableSpan], list[str]]:
    exporter = InMemorySpanExporter()
    provider = provider_class(resource=RESOURCE, shutdown_on_exit=False, **kwargs)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    records: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Capture()
    for name in ("opentelemetry", "llm_trace_hub"):
        logging.getLogger(name).addHandler(handler)
    try:
        script(provider.get_tracer("test", "1.0", "https://schema"))
    finally:
        for name in ("opentelemetry", "llm_trace_hub"):
            logging.getLogger(name).removeHandler(handler)
    return list(exporter.get_finished_spans()), records


def comparable(spans: list[ReadableSpan]) -> list[dict[str, Any]]:
    """The OTLP the spans encode to, with ids and clock readings replaced by their order."""
    request = encode_spans(spans)
    ids: dict[bytes, int] = {}
    out = []
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for s in ss.spans:
                d: dict[str, Any] = {"resource": str(rs.resource), "scope": str(ss.scope)}
                for key in ("trace_id", "span_id", "parent_span_id"):
                    value = getattr(s, key)
                    d[key] = ids.setdefault(value, len(ids)) if value else value
                    s.ClearField(key)
                d["fixed_times"] = [
                    t for t in (s.start_time_unix_nano, s.end_time_unix_nano) if t < 10**6
                ]
                s.ClearField("start_time_unix_nano")
                s.ClearField("end_time_unix_nano")
                for event in s.events:
                    if event.time_unix_nano > 10**6:
                        event.ClearField("time_unix_nano")
                    for kv in event.attributes:
                        if kv.key == "exception.stacktrace":
                            kv.value.string_value = "(differs: the frames)"
                d["span"] = str(s)
                out.append(d)
    return out


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda s: s.__name__)
@pytest.mark.parametrize("limited", [False, True], ids=["default limits", "tight limits"])
def test_exports_what_the_sdk_span_exports(
    script: Callable[[trace.Tracer], None], limited: bool
) -> None:
    kwargs = {"span_limits": SpanLimits(**LIMITS)} if limited else {}
    sdk_spans, sdk_logs = export(TracerProvider, script, **kwargs)
    hub_spans, hub_logs = export(HubTracerProvider, script, **kwargs)
    assert hub_spans and all(isinstance(s, HubSpan) for s in hub_spans)
    assert comparable(hub_spans) == comparable(sdk_spans)
    # A warning for each misuse the SDK warns about.
    assert len(hub_logs) == len(sdk_logs)


def test_spans_are_frozen_once_ended() -> None:
    (span,), _ = export(HubTracerProvider, lambda t: t.start_span("s", attributes={"a": 1}).end())
    with pytest.raises(TypeError):
        span.attributes["b"] = 2  # type: ignore[index]
    assert dict(span.attributes) == {"a": 1}
    assert span.to_json()  # ReadableSpan's own formatting works on it


def test_sampler_and_disabled_sdk_are_the_providers() -> None:
    spans, _ = export(HubTracerProvider, lambda t: t.start_span("off").end(), sampler=ALWAYS_OFF)
    assert spans == []


def test_disabled_sdk_gives_the_no_op_tracer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    tracer = HubTracerProvider(shutdown_on_exit=False).get_tracer("t")
    assert not tracer.start_span("s").is_recording()


def test_one_tracer_per_scope_and_resource_follows_the_provider() -> None:
    provider = HubTracerProvider(resource=RESOURCE, shutdown_on_exit=False)
    tracer = provider.get_tracer("a", "1")
    assert provider.get_tracer("a", "1") is tracer
    assert provider.get_tracer("b", "1") is not tracer
    provider._update_resource(Resource({"process.pid": 42}))  # what the SDK does after a fork
    span = tracer.start_span("s")
    assert isinstance(span, HubSpan) and span.resource.attributes["process.pid"] == 42


def test_processors_hear_of_a_span_as_from_the_sdk() -> None:
    """on_start, the SDK's ending hook where it has one, and on_end, in that order."""

    def heard(provider_class: type[TracerProvider]) -> list[tuple[str, str, bool]]:
        calls: list[tuple[str, str, bool]] = []

        class Listener(SpanProcessor):
            def on_start(self, span: Any, parent_context: Any = None) -> None:
                calls.append(("start", span.name, span.end_time is None))

            def _on_ending(self, span: Any) -> None:
                calls.append(("ending", span.name, span.end_time is None))

            def on_end(self, span: ReadableSpan) -> None:
                calls.append(("end", span.name, span.end_time is None))

        provider = provider_class(shutdown_on_exit=False)
        provider.add_span_processor(Listener())
        provider.get_tracer("t").start_span("s").end()
        return calls

    assert heard(HubTracerProvider) == heard(TracerProvider)
