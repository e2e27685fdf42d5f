"""LLM Trace Hub client SDK: the ``LLMTraceClient`` facade, ``configure()``, and (in
:mod:`llm_trace_hub.langgraph`) the LangGraph OpenTelemetry instrumentor.

This distribution depends on the OpenTelemetry API/SDK/OTLP exporter and httpx only; it never
imports the hub server. See the README for a tour.
"""

from __future__ import annotations

from llm_trace_hub.client import LLMTraceClient
from llm_trace_hub.http_api import HubAPIError
from llm_trace_hub.provider import configure
from llm_trace_hub.settings import ContentSettings, HubSettings
from llm_trace_hub.spans import SpanHandle
from llm_trace_hub.version import __version__

__all__ = [
    "ContentSettings",
    "HubAPIError",
    "HubSettings",
    "LLMTraceClient",
    "SpanHandle",
    "__version__",
    "configure",
]
