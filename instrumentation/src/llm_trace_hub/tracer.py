"""A lighter span for the hub's own tracer providers.

The OTel SDK's span validates every attribute through ``BoundedAttributes`` (a lock and an ABC
check per value), keeps events and links in locked ``BoundedList`` objects, and copies itself into
a new ``ReadableSpan`` when it ends: about half of what a span costs the application. The spans
made here are the same thing to everything downstream - a ``trace.Span`` to the app and to
context propagation, a ``ReadableSpan`` to span processors and exporters - with the SDK's rules:
span limits (``OTEL_SPAN_*_LIMIT``), attribute cleaning (values that are not plain ``str``,
``bool``, ``int`` or ``float`` go through the SDK's own ``BoundedAttributes``), status precedence,
no changes after ``end()``.

:class:`HubTracerProvider` is an SDK ``TracerProvider`` whose tracers make these spans; the hub's
client and ``configure()`` build one. Sampling, id generation, the resource and the span
processors are the provider's; the SDK's default sampler (``parentbased_always_on``) is applied
inline.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Mapping, Sequence
from time import time_ns
from types import MappingProxyType
from typing import Any, cast

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace.sampling import DEFAULT_ON, Decision
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util import types

logger = logging.getLogger(__name__)

_PLAIN = frozenset({str, bool, int, float})
_UNSET = Status(StatusCode.UNSET)
# W3C trace context level 2 flag; absent from older OTel APIs.
_RANDOM = getattr(TraceFlags, "RANDOM_TRACE_ID", 0)


class HubSpan(SdkSpan):
    """A recording span; see the module documentation."""

    # Class-level defaults: most spans never change these, and each instance field costs a store.
    _kind = SpanKind.INTERNAL
    _end_time: int | None = None
    _status = _UNSET
    _events: list[Event] | tuple[()] = ()
    _links: list[Link] | tuple[()] = ()
    _dropped_attributes = 0
    _dropped_events = 0
    _dropped_links = 0
    _record_exception = True
    _set_status_on_exception = True

    def __init__(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        tracer: HubTracer,
        start_time: int,
    ) -> None:
        # ReadableSpan.__init__ is not called: it would build an empty Resource per span.
        self._name = name
        self._context = context
        self._parent = parent
        self._tracer = tracer
        self._start_time: int | None = start_time
        self._attributes: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f'{type(self).__name__}(name="{self._name}", context={self._context})'

    # -- ReadableSpan ---------------------------------------------------------------------------
    @property
    def attributes(self) -> types.Attributes:
        return MappingProxyType(self._attributes)

    @property
    def events(self) -> Sequence[Event]:
        return tuple(self._events)

    @property
    def links(self) -> Sequence[Link]:
        return tuple(self._links)

    @property
    def dropped_attributes(self) -> int:
        return self._dropped_attributes

    @property
    def dropped_events(self) -> int:
        return self._dropped_events

    @property
    def dropped_links(self) -> int:
        return self._dropped_links

    @property
    def resource(self) -> Resource:
        return self._tracer.resource

    @property
    def instrumentation_scope(self) -> InstrumentationScope:
        return self._tracer.scope

    @property
    def instrumentation_info(self) -> Any:
        return self._tracer.instrumentation_info

    # -- trace.Span -----------------------------------------------------------------------------
    def get_span_context(self) -> SpanContext:
        return cast(SpanContext, self._context)

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        with self._lock:
            if self._end_time is not None:
                logger.warning("Setting attribute on ended span.")
                return
            self._put({key: value}, one=True)

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        with self._lock:
            if self._end_time is not None:
                logger.warning("Setting attribute on ended span.")
                return
            self._put(attributes)

    def _put(self, attributes: Mapping[str, types.AnyValue], one: bool = False) -> None:
        """Clean and store ``attributes``; the caller holds the lock (or owns the span)."""
        store = self._attributes
        limits = self._tracer.limits
        limit, length = limits.max_span_attributes, limits.max_span_attribute_length
        for key, value in attributes.items():
            if (
                type(key) is not str
                or not key
                or type(value) not in _PLAIN
                or (length is not None and isinstance(value, str) and len(value) > length)
            ):
                # The SDK's own cleaning, with its conversions and warnings: one attribute is
                # cleaned as its __setitem__ does, a mapping as its constructor does.
                cleaned = BoundedAttributes(
                    None, None if one else {key: value}, immutable=False, max_value_len=length
                )
                if one:
                    cleaned[key] = value
                self._dropped_attributes += cleaned.dropped
                for clean_key, clean_value in cleaned.items():
                    self._store(store, limit, clean_key, clean_value)
            elif key in store:
                del store[key]  # a replaced attribute moves to the end, as in the SDK
                store[key] = value
            elif limit is None or len(store) < limit:
                store[key] = value
            else:
                self._store(store, limit, key, value)

    def _store(self, store: dict[str, Any], limit: int | None, key: str, value: Any) -> None:
        store.pop(key, None)
        if limit is not None and len(store) >= limit:
            self._dropped_attributes += 1
            if not limit:
                return
            logger.warning("Attributes dict is full. Dropping the oldest key-value pair.")
            del store[next(iter(store))]
        store[key] = value

    def add_event(
        self, name: str, attributes: types.Attributes = None, timestamp: int | None = None
    ) -> None:
        limits = self._tracer.limits
        bounded = self._frozen_attributes(limits.max_event_attributes, attributes)
        event = Event(name=name, attributes=bounded, timestamp=timestamp)
        with self._lock:
            if self._end_time is not None:
                logger.warning("Tried calling add_event on an ended span.")
                return
            self._events = self._append(self._events, limits.max_events, "_dropped_events", event)

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        link = self._link(context, attributes)
        if link is None:
            return
        with self._lock:
            if self._end_time is not None:
                logger.warning("Tried calling add_link on an ended span.")
                return
            self._links = self._append(
                self._links, self._tracer.limits.max_links, "_dropped_links", link
            )

    def _link(self, context: SpanContext, attributes: types.Attributes) -> Link | None:
        if not (context and (context.is_valid or attributes or context.trace_state)):
            return None
        limit = self._tracer.limits.max_link_attributes
        return Link(context, self._frozen_attributes(limit, attributes))

    def _frozen_attributes(
        self, limit: int | None, attributes: types.Attributes
    ) -> BoundedAttributes:
        """An event's or a link's attributes, cleaned and bounded as the SDK does."""
        length = self._tracer.limits.max_attribute_length
        return BoundedAttributes(limit, attributes, immutable=True, max_value_len=length)

    def _append(
        self, items: Sequence[Any], limit: int | None, dropped: str, item: Any
    ) -> list[Any]:
        """``items`` as a list with ``item`` added; a full list drops its oldest, as BoundedList."""
        out = items if isinstance(items, list) else list(items)
        if limit is not None and len(out) >= limit:
            setattr(self, dropped, getattr(self, dropped) + 1)
            if not limit:
                return out
            del out[0]
        out.append(item)
        return out

    def update_name(self, name: str) -> None:
        with self._lock:
            if self._end_time is not None:
                logger.warning("Tried calling update_name on an ended span.")
                return
            self._name = name

    def is_recording(self) -> bool:
        return self._end_time is None

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        with self._lock:
            if self._end_time is not None:
                logger.warning("Tried calling set_status on an ended span.")
                return
            # OK is final, and UNSET never overrides.
            if self._status.status_code is StatusCode.OK:
                return
            if isinstance(status, Status):
                if status.status_code is StatusCode.UNSET:
                    return
                if description is not None:
                    logger.warning(
                        "Description %s ignored. Use either `Status` or "
                        "`(StatusCode, Description)`",
                        description,
                    )
                self._status = status
            elif status is not StatusCode.UNSET:
                self._status = Status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        module = type(exception).__module__
        qualname = type(exception).__qualname__
        values: dict[str, Any] = {
            "exception.type": f"{module}.{qualname}"
            if module and module != "builtins"
            else qualname,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        if attributes:
            values.update(attributes)
        self.add_event("exception", values, timestamp)

    def end(self, end_time: int | None = None) -> None:
        with self._lock:
            if self._end_time is not None:
                logger.warning("Calling end() on an ended span.")
                return
            self._end_time = end_time if end_time is not None else time_ns()
        tracer = self._tracer
        if tracer.on_ending is not None:
            tracer.on_ending(self)
        # Processors and exporters get the span itself: nothing changes it after this point.
        tracer.span_processor.on_end(self)

    def __exit__(self, exc_type: Any, exc_val: BaseException | None, exc_tb: Any) -> None:
        if exc_val is not None and self.is_recording():
            if self._record_exception:
                self.record_exception(exc_val, escaped=True)
            if self._set_status_on_exception:
                self.set_status(Status(StatusCode.ERROR, f"{type(exc_val).__name__}: {exc_val}"))
        trace_api.Span.__exit__(self, exc_type, exc_val, exc_tb)  # past the SDK's: it records too


class HubTracer(trace_api.Tracer):
    """Makes :class:`HubSpan` objects with an SDK tracer's sampler, ids, resource and processors."""

    def __init__(
        self, sdk_tracer: SdkTracer, scope: InstrumentationScope, limits: SpanLimits
    ) -> None:
        self._sdk = sdk_tracer
        self.sampler = sdk_tracer.sampler
        self.id_generator = sdk_tracer.id_generator
        self.span_processor: SpanProcessor = sdk_tracer.span_processor
        # The SDK's hook for processors between end() and on_end (newer SDKs only).
        self.on_ending = getattr(self.span_processor, "_on_ending", None)
        self.instrumentation_info = sdk_tracer.instrumentation_info
        self.scope = scope
        self.limits = limits
        self._default_on = self.sampler is DEFAULT_ON
        random = getattr(self.id_generator, "is_trace_id_random", lambda: False)()
        self._root_flags = (
            TraceFlags(TraceFlags.SAMPLED | (_RANDOM if random else 0)),
            TraceFlags(TraceFlags.DEFAULT | (_RANDOM if random else 0)),
        )
        self._child_flags = {
            (sampled, rnd): TraceFlags((TraceFlags.SAMPLED if sampled else 0) | rnd)
            for sampled in (True, False)
            for rnd in {0, _RANDOM}
        }

    @property
    def resource(self) -> Resource:
        return self._sdk.resource

    def start_span(
        self,
        name: str,
        context: context_api.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace_api.Span:
        parent: SpanContext | None = trace_api.get_current_span(context).get_span_context()
        if parent is not None and not isinstance(parent, SpanContext):
            raise TypeError("parent_span_context must be a SpanContext or None.")
        links = links or ()
        if parent is None or not parent.is_valid:
            parent = None
            trace_id = self.id_generator.generate_trace_id()
        else:
            trace_id = parent.trace_id
        if self._default_on:
            # The SDK default, parentbased_always_on, decided without its delegation chain: a
            # root is sampled, a child follows its parent's flag and keeps its trace state.
            sampled = parent is None or parent.trace_flags.sampled
            trace_state = None if parent is None else parent.trace_state
            recording, extra = sampled, attributes
        else:
            sampling = self.sampler.should_sample(context, trace_id, name, kind, attributes, links)
            sampled = sampling.decision is Decision.RECORD_AND_SAMPLE
            trace_state = sampling.trace_state
            recording, extra = sampling.decision is not Decision.DROP, sampling.attributes
        if parent is None:
            flags = self._root_flags[0 if sampled else 1]
        else:
            flags = self._child_flags[(sampled, parent.trace_flags & _RANDOM)]
        span_context = SpanContext(
            trace_id,
            self.id_generator.generate_span_id(),
            is_remote=False,
            trace_flags=flags,
            trace_state=trace_state,
        )
        if not recording:
            return trace_api.NonRecordingSpan(span_context)
        span = HubSpan(
            name, span_context, parent, self, start_time if start_time is not None else time_ns()
        )
        if kind is not SpanKind.INTERNAL:
            span._kind = kind
        if not record_exception:
            span._record_exception = False
        if not set_status_on_exception:
            span._set_status_on_exception = False
        if extra:
            span._put(extra)
        for link in links:
            made = span._link(link.context, link.attributes) if link else None
            if made is not None:
                span._links = span._append(
                    span._links, self.limits.max_links, "_dropped_links", made
                )
        self.span_processor.on_start(span, parent_context=context)
        return span

    # The SDK's own: it calls start_span, and also works as a decorator of async functions.
    start_as_current_span = SdkTracer.start_as_current_span


class HubTracerProvider(TracerProvider):
    """An SDK ``TracerProvider`` whose tracers make :class:`HubSpan` objects."""

    def __init__(self, **kwargs: Any) -> None:
        # The limits the SDK's tracers get (SpanLimits() reads OTEL_*_LIMIT), read once here.
        self._limits = kwargs["span_limits"] = kwargs.get("span_limits") or SpanLimits()
        super().__init__(**kwargs)
        self._hub_tracers: dict[InstrumentationScope, HubTracer] = {}

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: types.Attributes = None,
    ) -> trace_api.Tracer:
        tracer = super().get_tracer(
            instrumenting_module_name, instrumenting_library_version, schema_url, attributes
        )
        if not isinstance(tracer, SdkTracer):
            return tracer  # OTEL_SDK_DISABLED: the SDK's no-op tracer
        scope = InstrumentationScope(
            instrumenting_module_name or "",
            instrumenting_library_version or "",
            schema_url,
            attributes,
        )
        # By scope, as the SDK caches its tracers (older SDKs made a new tracer each call).
        hub = self._hub_tracers.get(scope)
        if hub is None:
            hub = self._hub_tracers.setdefault(scope, HubTracer(tracer, scope, self._limits))
        return hub
