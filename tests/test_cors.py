"""CORS for browser OTLP exporters: off by default; with TRACEHUB_CORS_ALLOWED_ORIGINS, `/v1/traces` and
`/v1/logs` (on the OTLP/HTTP port and the main port) answer preflights and carry the CORS headers for
the allowed origins only; no other path answers CORS."""

from __future__ import annotations

import secrets
from typing import Callable

import httpx
import pytest

from conftest import API_KEY, ServerProcess

ALLOWED = "https://app.example.com"
REFUSED = "https://evil.example.net"


def _preflight(url: str, origin: str, headers: str = "content-type,x-api-key") -> httpx.Response:
    return httpx.options(url, headers={"origin": origin, "access-control-request-method": "POST",
                                       "access-control-request-headers": headers}, timeout=30)


def _post_trace(url: str, origin: str) -> tuple[str, httpx.Response]:
    trace_id = secrets.token_hex(16)
    span = {"traceId": trace_id, "spanId": secrets.token_hex(8), "name": "browser fetch",
            "startTimeUnixNano": "1780000000000000000", "endTimeUnixNano": "1780000001000000000"}
    body = {"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}
    return trace_id, httpx.post(url, json=body, timeout=30,
                                headers={"origin": origin, "x-api-key": API_KEY})


@pytest.fixture(scope="module")
def cors_server(server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    return server_factory("sqlite", env={"TRACEHUB_CORS_ALLOWED_ORIGINS": f"{ALLOWED}, https://other.example"})


@pytest.mark.parametrize("port", ["otlp_http", "url"])
@pytest.mark.parametrize("path", ["/v1/traces", "/v1/logs"])
def test_preflight_of_an_allowed_origin_is_answered(cors_server: ServerProcess, port: str, path: str) -> None:
    r = _preflight(getattr(cors_server, port) + path, ALLOWED, "content-type,x-api-key,authorization")
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == ALLOWED
    assert "POST" in r.headers["access-control-allow-methods"]
    allowed = {h.strip().lower() for h in r.headers["access-control-allow-headers"].split(",")}
    assert {"content-type", "x-api-key", "authorization"} <= allowed
    assert "access-control-allow-credentials" not in r.headers


@pytest.mark.parametrize("port", ["otlp_http", "url"])
def test_preflight_of_another_origin_is_refused(cors_server: ServerProcess, port: str) -> None:
    r = _preflight(getattr(cors_server, port) + "/v1/traces", REFUSED)
    assert r.status_code == 400
    assert "access-control-allow-origin" not in r.headers


@pytest.mark.parametrize("port", ["otlp_http", "url"])
def test_a_post_from_the_allowed_origin_is_stored_and_readable_by_the_page(cors_server: ServerProcess,
                                                                            port: str) -> None:
    trace_id, r = _post_trace(getattr(cors_server, port) + "/v1/traces", ALLOWED)
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == ALLOWED
    assert "retry-after" in r.headers["access-control-expose-headers"].lower()
    assert r.headers["x-content-type-options"] == "nosniff"  # the listener's own headers stay
    cors_server.wait_trace(trace_id)


def test_a_post_from_another_origin_gets_no_cors_headers(cors_server: ServerProcess) -> None:
    """A browser never lets that page read the answer (nor send it: its preflight was refused)."""
    _trace_id, r = _post_trace(cors_server.otlp_http + "/v1/traces", REFUSED)
    assert "access-control-allow-origin" not in r.headers


def test_a_refused_post_carries_the_cors_headers_so_the_exporter_sees_why(cors_server: ServerProcess) -> None:
    r = httpx.post(cors_server.otlp_http + "/v1/traces", json={"resourceSpans": []}, timeout=30,
                   headers={"origin": ALLOWED, "x-api-key": "not-a-key"})
    assert r.status_code == 401
    assert r.headers["access-control-allow-origin"] == ALLOWED


@pytest.mark.parametrize("path", ["/api/v1/traces", "/healthz", "/login"])
def test_other_paths_answer_no_cors(cors_server: ServerProcess, path: str) -> None:
    r = _preflight(cors_server.url + path, ALLOWED)
    assert "access-control-allow-origin" not in r.headers
    got = httpx.get(cors_server.url + path, headers={"origin": ALLOWED, "x-api-key": API_KEY}, timeout=30)
    assert "access-control-allow-origin" not in got.headers


def test_cors_is_off_by_default_and_any_origin_with_a_star(server_factory: Callable[..., ServerProcess]) -> None:
    plain = server_factory("sqlite")
    r = _preflight(plain.otlp_http + "/v1/traces", ALLOWED)
    assert r.status_code == 405 and "access-control-allow-origin" not in r.headers
    _trace_id, posted = _post_trace(plain.otlp_http + "/v1/traces", ALLOWED)
    assert posted.status_code == 200 and "access-control-allow-origin" not in posted.headers
    plain.stop()

    star = server_factory("sqlite", env={"TRACEHUB_CORS_ALLOWED_ORIGINS": "*"})
    r = _preflight(star.otlp_http + "/v1/traces", REFUSED)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
    trace_id, posted = _post_trace(star.otlp_http + "/v1/traces", REFUSED)
    assert posted.status_code == 200 and posted.headers["access-control-allow-origin"] == "*"
    star.wait_trace(trace_id)
