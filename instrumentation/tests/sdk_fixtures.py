"""Fixtures of the instrumentor tests: OTel in-memory export and the instrumentor.

Imported by name into the test modules that use them (not a conftest.py: the server's tests
import the root `conftest` module by name, and a second conftest.py would shadow it).
Every test that instruments LangGraph goes through `instrument`, which always uninstruments
afterwards, so no test sees another's wrappers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llm_trace_hub.langgraph import LangGraphInstrumentor


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    tp = TracerProvider(shutdown_on_exit=False)
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    yield tp
    tp.shutdown()


@pytest.fixture
def instrument(provider: TracerProvider) -> Iterator[Callable[..., LangGraphInstrumentor]]:
    """`instrument(**kwargs)` instruments LangGraph onto the in-memory provider."""
    instrumentor = LangGraphInstrumentor()

    def start(**kwargs: Any) -> LangGraphInstrumentor:
        instrumentor.instrument(tracer_provider=provider, **kwargs)
        return instrumentor

    yield start
    instrumentor.uninstrument()


class Spans:
    """Finished spans with lookups by name and parent (a tiny query helper for assertions)."""

    def __init__(self, spans: tuple[ReadableSpan, ...]) -> None:
        self.all = list(spans)

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.all if s.name == name]

    def one(self, name: str) -> ReadableSpan:
        found = self.named(name)
        assert len(found) == 1, f"expected one {name!r}, got {[s.name for s in self.all]}"
        return found[0]

    def children(self, parent: ReadableSpan) -> list[ReadableSpan]:
        pid = parent.context.span_id
        return [s for s in self.all if s.parent is not None and s.parent.span_id == pid]

    def parent_of(self, span: ReadableSpan) -> ReadableSpan | None:
        if span.parent is None:
            return None
        return next((s for s in self.all if s.context.span_id == span.parent.span_id), None)

    def of_type(self, span_type: str) -> list[ReadableSpan]:
        return [s for s in self.all if (s.attributes or {}).get("tracehub.span.type") == span_type]


@pytest.fixture
def finished(exporter: InMemorySpanExporter) -> Callable[[], Spans]:
    return lambda: Spans(exporter.get_finished_spans())
