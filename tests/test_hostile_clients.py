"""Hostile and careless HTTP clients against a real server: idle and slow-header sockets, requests
past the concurrency cap, raw UTF-8 in the request target, and the headers every answer carries."""

from __future__ import annotations

import json
import secrets
import socket
import time
from http.client import HTTPResponse
from pathlib import Path
from typing import Callable

import httpx
from google.rpc import status_pb2

from conftest import ServerProcess
from otlp_helpers import make_span, new_trace_id, post, request_of

HEADER_TIMEOUT_S = 2


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _closed_by_server(sock: socket.socket, within_s: float) -> bool:
    """True once the server closes `sock` (EOF or reset) within `within_s`, reading what it sent."""
    sock.settimeout(within_s)
    try:
        while sock.recv(65536):
            pass
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return True


def _response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    answer = HTTPResponse(sock)
    answer.begin()
    body = answer.read()
    return answer.status, {k.lower(): v for k, v in answer.getheaders()}, body


def test_idle_and_slow_header_sockets_neither_take_the_listeners_down_nor_stay_open(
        server_factory: Callable[..., ServerProcess]) -> None:
    hub = server_factory("sqlite", env={"TRACEHUB_HEADER_TIMEOUT": str(HEADER_TIMEOUT_S)})
    held: list[socket.socket] = []
    for url in (hub.url, hub.otlp_http):
        for i in range(300):  # more than the 256 requests a listener serves at once
            sock = _connect(url)
            if i % 2:  # half a request head, never finished
                sock.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\ncontent-type: application/x-prot")
            held.append(sock)
    opened = time.monotonic()
    # One more sends a byte of its head now and then (slowloris), after a complete request.
    trickler = _connect(hub.url)
    trickler.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert _response(trickler)[0] == 200

    for url in (hub.url, hub.otlp_http):
        assert httpx.get(url + "/healthz", timeout=5).status_code == 200
    assert post(hub, request_of(make_span(new_trace_id(), secrets.token_bytes(8)))).status_code == 200

    started = time.monotonic()
    for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\n":
        try:
            trickler.sendall(bytes([byte]))
        except (ConnectionResetError, BrokenPipeError):
            break
        if _closed_by_server(trickler, 0.25):
            break
    else:
        raise AssertionError("the slow-header connection was never closed")
    assert time.monotonic() - started < HEADER_TIMEOUT_S + 1.5
    for sock in held:
        assert _closed_by_server(sock, max(0.1, opened + HEADER_TIMEOUT_S + 2 - time.monotonic()))
        sock.close()
    trickler.close()


def _hold_request(url: str, path: str) -> socket.socket:
    """A request whose body never finishes: it stays in the server, counted against the cap."""
    sock = _connect(url)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nx-api-key: dev-key\r\n"
                 "content-type: application/x-protobuf\r\ncontent-length: 100000\r\n\r\n".encode() + b"\0" * 10)
    return sock


def _wait_full(url: str) -> None:
    """Until the held requests fill the cap (the answers below fail if they never do)."""
    deadline = time.monotonic() + 5
    while httpx.get(url + "/healthz", timeout=5).status_code != 503 and time.monotonic() < deadline:
        time.sleep(0.05)


def test_past_the_request_cap_the_answer_is_the_endpoints_own_and_the_upload_is_not_reset(
        server_factory: Callable[..., ServerProcess]) -> None:
    hub = server_factory("sqlite", env={"TRACEHUB_MAX_CONCURRENT_REQUESTS": "2"})
    held = [_hold_request(url, "/v1/traces") for url in (hub.url, hub.otlp_http) for _ in range(2)]
    for url in (hub.url, hub.otlp_http):
        _wait_full(url)
    large = b"\x0a" * (8 * 1024 * 1024)  # far more than the socket buffers hold: the server must read it
    with httpx.Client(timeout=30, headers={"x-api-key": "dev-key"}) as client:
        r = client.post(hub.url + "/v1/traces", content=large, headers={"content-type": "application/x-protobuf"})
        assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
        assert r.headers["content-type"] == "application/x-protobuf"
        status = status_pb2.Status.FromString(r.content)
        assert status.code == 14 and "retry later" in status.message  # UNAVAILABLE

        r = client.post(hub.otlp_http + "/v1/traces", content=large, headers={"content-type": "application/json"})
        assert r.status_code == 503 and r.headers["retry-after"]
        assert r.headers["content-type"] == "application/json" and r.json()["code"] == 14

        r = client.post(hub.url + "/api/v1/ingest/traces", content=large, headers={"content-type": "application/json"})
        assert r.status_code == 503 and r.headers["retry-after"]
        assert r.headers["content-type"] == "application/problem+json" and r.json()["status"] == 503
        r = client.get(hub.url + "/api/v1/traces")
        assert r.status_code == 503 and r.headers["content-type"] == "application/problem+json"

        for sock in held:
            sock.close()
        deadline = time.monotonic() + 10
        while (r := client.get(hub.url + "/api/v1/traces")).status_code == 503:  # the same connections
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert r.status_code == 200
        tid = new_trace_id()
        body = request_of(make_span(tid, secrets.token_bytes(8)))
        r = client.post(hub.otlp_http + "/v1/traces", content=body, headers={"content-type": "application/x-protobuf"})
        assert r.status_code == 200


def _otlp_json_span(trace_id: str, text: str) -> bytes:
    span = {"traceId": trace_id, "spanId": secrets.token_hex(8), "name": "chat",
            "startTimeUnixNano": "1780000000000000000", "endTimeUnixNano": "1780000001000000000",
            "attributes": [{"key": "input.value", "value": {"stringValue": text}}]}
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}, ensure_ascii=False).encode()


def test_raw_utf8_in_the_target_of_a_later_request_on_a_connection_after_a_chunked_body(
        server: ServerProcess) -> None:
    word = "환불" + secrets.token_hex(4)
    tid = secrets.token_hex(16)
    # Blank lines (JSON whitespace) and UTF-8 in the body, split across chunks: none of it is a head.
    body = b"\r\n\r\n" + _otlp_json_span(tid, f"{word} 규정 é")
    sock = _connect(server.url)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 7]), body[i:i + 7]) for i in range(0, len(body), 7))
    sock.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nx-api-key: dev-key\r\ncontent-type: application/json\r\n"
                 b"transfer-encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n")
    status, _, answer = _response(sock)
    assert status == 200, answer
    server.wait_trace(tid)
    sock.sendall(f"GET /api/v1/traces?search={word} HTTP/1.1\r\nHost: x\r\nx-api-key: dev-key\r\n\r\n".encode())
    status, _, answer = _response(sock)
    sock.close()
    assert status == 200, answer
    assert [t["trace_id"] for t in json.loads(answer)["items"]] == [tid]
    detail = server.client.get(f"/api/v1/traces/{tid}").json()
    assert detail["spans"][0]["input_text"] == f"{word} 규정 é"


def test_answers_carry_nosniff_and_api_answers_no_store(server: ServerProcess) -> None:
    for r in (server.client.get("/api/v1/traces"), server.client.get("/api/v1/nothing-here"),
              httpx.get(server.url + "/api/v1/traces"), httpx.get(server.url + "/healthz")):
        assert r.headers["x-content-type-options"] == "nosniff", r.url
        assert r.headers["cache-control"] == "no-store", r.url
    r = post(server, request_of(make_span(new_trace_id(), secrets.token_bytes(8))))
    assert r.status_code == 200 and r.headers["x-content-type-options"] == "nosniff"


def test_a_defect_is_a_500_problem_with_the_same_headers_and_no_internals() -> None:
    """No route is known to fail; one made to fail shows what the app's handlers answer."""
    from starlette.applications import Starlette
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from tracehub.api.app import HANDLERS

    async def broken(_request: object) -> None:
        raise RuntimeError("secret internals")

    app = Starlette(routes=[Route("/broken", broken)], exception_handlers=HANDLERS)
    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.get("/broken")
    assert r.status_code == 500 and r.headers["content-type"] == "application/problem+json"
    assert (r.headers["x-content-type-options"], r.headers["cache-control"]) == ("nosniff", "no-store")
    assert "secret" not in r.text


def test_on_a_public_bind_dev_key_is_refused_with_the_reason_and_other_keys_work(
        tmp_path: Path, database_url_factory: Callable[[str], str]) -> None:
    hub = ServerProcess(database_url_factory("sqlite"), tmp_path)
    hub.host = "0.0.0.0"  # every address; the test connects to loopback only
    made = hub.cli("keys", "create", "--project", "prod")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().split()[-1]
    try:
        hub.start()
        r = hub.client.get("/api/v1/traces")
        assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
        assert "non-loopback" in r.json()["detail"] and "tracehub keys create" in r.json()["detail"]
        r = post(hub, request_of(make_span(new_trace_id(), secrets.token_bytes(8))))
        assert r.status_code == 401 and "non-loopback" in status_pb2.Status.FromString(r.content).message
        assert httpx.get(hub.url + "/api/v1/traces", headers={"x-api-key": key}).status_code == 200
        r = post(hub, request_of(make_span(new_trace_id(), secrets.token_bytes(8))), x_api_key=key)
        assert r.status_code == 200
    finally:
        hub.stop()
        hub.client.close()
