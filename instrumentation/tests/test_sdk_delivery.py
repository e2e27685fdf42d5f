"""flush() and force_flush() say whether spans reached the hub; JSON calls raise when they fail.

Real hubs (the root conftest's servers) and a port that nothing listens on; the OTLP exporter's
timeout (OTEL_EXPORTER_OTLP_TRACES_TIMEOUT) is cut to 1 s so a hub that is down fails in about a
second instead of ten.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from conftest import free_port
from opentelemetry.sdk.trace import TracerProvider

from llm_trace_hub import HubAPIError, LLMTraceClient
from llm_trace_hub.provider import build_span_processor, build_tracer_provider, hub_span_exporter
from llm_trace_hub.settings import HubSettings


@pytest.fixture(autouse=True)
def _short_export_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "1")


def _dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def _client(url: str, api_key: str = "dev-key") -> LLMTraceClient:
    return LLMTraceClient(base_url=url, api_key=api_key, http_max_attempts=2)


def _one_trace(client: LLMTraceClient, name: str) -> str:
    trace_id = client.start_trace(name=name, input_text="q")
    with client.span("step", "tool"):
        pass
    client.end_trace(output_text="a")
    return trace_id


def test_flush_is_false_when_nothing_listens(caplog: pytest.LogCaptureFixture) -> None:
    client = _client(_dead_url())
    _one_trace(client, "undelivered")
    with caplog.at_level(logging.ERROR, logger="llm_trace_hub.delivery"):
        assert client.flush() is False
    assert "2 spans could not be delivered" in caplog.text
    assert client.flush() is True  # nothing new was exported since: nothing new was lost
    client.shutdown()


def test_flush_is_false_when_the_key_is_refused(server: Any) -> None:
    client = _client(server.url, api_key="not-a-key")
    _one_trace(client, "refused")
    assert client.flush() is False
    client.shutdown()


def test_flush_is_true_while_the_hub_is_up_and_false_once_it_stopped(
    server_factory: Any,
) -> None:
    hub = server_factory("sqlite")
    client = _client(hub.url)
    stored = _one_trace(client, "delivered")
    assert client.flush() is True
    assert {s["name"] for s in hub.wait_trace(stored, 2)["spans"]} == {"delivered", "step"}
    hub.stop()
    _one_trace(client, "after-stop")
    assert client.flush() is False
    client.shutdown()


def test_a_failed_flush_before_an_eval_is_reported_by_the_next_flush(server_factory: Any) -> None:
    """attach_eval flushes first; spans lost there make the app's next flush False."""
    hub = server_factory("sqlite")
    hub.stop()
    client = _client(hub.url)
    trace_id = client.start_trace(name="eval-while-down")
    with client.span("step"):
        pass
    with pytest.raises(HubAPIError):  # connection refused on every attempt: raised, not swallowed
        client.attach_eval("faithfulness", 0.5, True, trace_id=trace_id)
    hub.start()
    client.end_trace()
    assert client.flush() is False  # the root got through, "step" did not
    assert [s["name"] for s in hub.wait_trace(trace_id, 1)["spans"]] == ["eval-while-down"]
    _one_trace(client, "back-up")
    assert client.flush() is True
    client.shutdown()


def test_ingest_langgraph_run_raises_when_nothing_listens() -> None:
    client = _client(_dead_url())
    with pytest.raises(HubAPIError, match=r"ConnectError.*gave up after 2 attempts"):
        client.ingest_langgraph_run("g", [{"node_id": "n", "node_name": "n"}], status="success")
    client.shutdown()


def test_providers_report_undelivered_spans() -> None:
    """configure()'s two shapes: our provider, and the hub's processor added to the app's."""
    hub = HubSettings(_dead_url(), "dev-key")
    ours = build_tracer_provider(hub, shutdown_on_exit=False)
    apps = TracerProvider(shutdown_on_exit=False)
    apps.add_span_processor(build_span_processor(hub_span_exporter(hub)))
    for provider in (ours, apps):
        with provider.get_tracer("t").start_as_current_span("lost"):
            pass
        assert provider.force_flush(10_000) is False
        provider.shutdown()
