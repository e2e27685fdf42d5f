"""Wiring an OpenTelemetry SDK pipeline to the hub, and the ``configure()`` one-liner.

An application that only wants its spans in LLM Trace Hub calls::

    import llm_trace_hub
    llm_trace_hub.configure(base_url="http://localhost:8000", api_key="dev-key",
                            service_name="support-bot", environment="prod")

which installs a global ``TracerProvider`` (or, when the app already set an SDK provider, adds one
more span processor to it) exporting OTLP/HTTP protobuf to ``{base_url}/v1/traces`` with the
``x-api-key`` header through a ``BatchSpanProcessor``: batching, retry and backoff are the OTel
SDK's. When LangGraph is installed it is instrumented too. Nothing here talks to the hub directly.

The processor is a :class:`~llm_trace_hub.delivery.HubBatchSpanProcessor`, so the returned
provider's ``force_flush()`` is False when spans did not reach the hub (hub down, key refused).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter

from llm_trace_hub import attributes as attr
from llm_trace_hub.delivery import HubBatchSpanProcessor
from llm_trace_hub.settings import HubSettings

logger = logging.getLogger(__name__)


def hub_span_exporter(hub: HubSettings, timeout_s: float | None = None) -> OTLPSpanExporter:
    """OTLP/HTTP protobuf exporter to the hub's ``/v1/traces`` with its API key header.

    ``timeout_s`` bounds one export with its retries; None leaves it to the OTel SDK's
    ``OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`` / ``OTEL_EXPORTER_OTLP_TIMEOUT`` (10 s by default).
    """
    return OTLPSpanExporter(
        endpoint=hub.traces_endpoint, headers={"x-api-key": hub.api_key}, timeout=timeout_s
    )


class _HashOnceResource(Resource):
    """A Resource whose hash is computed once.

    OTLP encoders group spans by resource, hashing it once per exported span, and
    ``Resource.__hash__`` JSON-dumps every attribute each time. A resource is immutable.
    """

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource.attributes, resource.schema_url)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash


def build_resource(
    service_name: str | None, environment: str | None, extra: Mapping[str, str] | None = None
) -> Resource:
    """Resource with ``service.name`` and ``deployment.environment.name`` (OTEL_* env merged in)."""
    values: dict[str, str] = dict(extra or {})
    if service_name:
        values[attr.SERVICE_NAME] = service_name
    if environment:
        values[attr.DEPLOYMENT_ENVIRONMENT] = environment
    return _HashOnceResource(Resource.create(values))


def build_span_processor(
    exporter: SpanExporter, schedule_delay_ms: float = 1000.0
) -> HubBatchSpanProcessor:
    # A shorter delay than the SDK's 5 s: traces show up in the UI while the user still looks.
    return HubBatchSpanProcessor(exporter, schedule_delay_millis=schedule_delay_ms)


def build_tracer_provider(
    hub: HubSettings,
    *,
    service_name: str | None = None,
    environment: str | None = None,
    span_exporter: SpanExporter | None = None,
    span_processor: SpanProcessor | None = None,
    shutdown_on_exit: bool = True,
) -> TracerProvider:
    """A private SDK ``TracerProvider`` for the hub. ``span_processor`` wins over ``span_exporter``.

    Sampler, span limits and id generator are the SDK's defaults (``OTEL_TRACES_SAMPLER``,
    ``OTEL_SPAN_*_LIMIT``).
    """
    provider = TracerProvider(
        resource=build_resource(service_name, environment), shutdown_on_exit=shutdown_on_exit
    )
    processor = span_processor or build_span_processor(span_exporter or hub_span_exporter(hub))
    provider.add_span_processor(processor)
    return provider


def configure(
    base_url: str | None = None,
    api_key: str | None = None,
    *,
    service_name: str | None = None,
    environment: str | None = None,
    capture_content: bool | None = None,
    max_content_bytes: int | None = None,
    instrument_langgraph: bool = True,
    span_exporter: SpanExporter | None = None,
) -> TracerProvider:
    """Send this process's OpenTelemetry spans to the hub; return the provider used.

    ``base_url``/``api_key`` default to ``LLM_TRACE_HUB_BASE_URL``/``LLM_TRACE_HUB_API_KEY``.
    ``capture_content``/``max_content_bytes`` are passed to the LangGraph instrumentor.
    """
    hub = HubSettings.from_env(base_url, api_key)
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        # The app owns its provider (and maybe other exporters): add the hub beside them.
        current.add_span_processor(build_span_processor(span_exporter or hub_span_exporter(hub)))
        provider = current
    else:
        provider = build_tracer_provider(
            hub, service_name=service_name, environment=environment, span_exporter=span_exporter
        )
        trace.set_tracer_provider(provider)
    if instrument_langgraph:
        _instrument_langgraph(provider, capture_content, max_content_bytes)
    return provider


def _instrument_langgraph(
    provider: TracerProvider, capture_content: bool | None, max_content_bytes: int | None
) -> None:
    try:
        import langgraph  # noqa: F401  (only probing whether the app uses it)
    except ImportError:
        return
    from llm_trace_hub.langgraph import LangGraphInstrumentor

    instrumentor = LangGraphInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        logger.debug("LangGraph already instrumented; keeping the existing instrumentation")
        return
    instrumentor.instrument(
        tracer_provider=provider,
        capture_content=capture_content,
        max_content_bytes=max_content_bytes,
    )
