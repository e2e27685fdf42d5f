"""OTLP server behaviour per the specification, against a real server: encodings, partial success,
limits, errors, duplicates, out-of-order arrival, logs, byte-for-byte replays of real exporters."""

from __future__ import annotations

import gzip
import json
import secrets
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import sqlalchemy as sa
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from conftest import ServerProcess
from otlp_helpers import EXPORT_PATH, NS, make_span, new_trace_id, post, request_of
from tracehub.store.resources import StoredResources

WIRE = Path(__file__).parent / "fixtures" / "otlp-wire"
def detail(server: ServerProcess, trace_id: bytes) -> dict[str, Any]:
    r = server.client.get(f"/api/v1/traces/{trace_id.hex()}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_success_means_committed_and_visible_at_once(server: ServerProcess) -> None:
    tid = new_trace_id()
    r = post(server, request_of(make_span(tid, b"\x01" * 8, name="root")))
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-protobuf"
    assert not ExportTraceServiceResponse.FromString(r.content).HasField("partial_success")
    assert [s["name"] for s in detail(server, tid)["spans"]] == ["root"]  # no polling


def test_numbers_beyond_their_columns_are_dropped_not_wrapped(server: ServerProcess) -> None:
    # spans.step is an INTEGER and token counts BIGINT; binary COPY would wrap what overflows.
    tid = new_trace_id()
    spans = [make_span(tid, bytes([0x41, i]) * 4, name=f"n{i}", langgraph__node=f"n{i}",
                       langgraph__step=step, gen_ai__usage__input_tokens=tokens)
             for i, (step, tokens) in enumerate([(2**31 - 1, 2**40), (2**31, 2**63 - 1), (-(2**31) - 1, 7)])]
    r = post(server, request_of(*spans))
    assert r.status_code == 200, r.text
    got = {s["name"]: (s["langgraph"]["step"], s["input_tokens"]) for s in detail(server, tid)["spans"]}
    assert got == {"n0": (2**31 - 1, 2**40), "n1": (None, 2**63 - 1), "n2": (None, 7)}


def test_nul_characters_are_stored_not_refused(server: ServerProcess) -> None:
    # PostgreSQL refuses NUL in text: there it becomes U+FFFD, SQLite keeps it. JSON (attributes,
    # events) keeps it on both.
    tid = new_trace_id()
    span = make_span(tid, b"\x31" * 8, name="nul\x00name", note="a\x00b", input__value="in\x00put",
                     session__id="s\x00")
    span.events.add(name="ev\x00", time_unix_nano=NS + 1).attributes.add(key="k").value.string_value = "x\x00y"
    r = post(server, request_of(span))
    assert r.status_code == 200, r.text
    assert not ExportTraceServiceResponse.FromString(r.content).HasField("partial_success")
    nul = "\ufffd" if server.database_url.startswith("postgresql") else "\x00"
    [got] = detail(server, tid)["spans"]
    assert got["name"] == f"nul{nul}name"
    assert got["attributes"]["note"] == "a\x00b"
    assert got["events"][0]["attributes"] == {"k": "x\x00y"}
    assert (got["input_text"], got["session_id"]) == (f"in{nul}put", f"s{nul}")
    # A filter may not hold NUL on either database (PostgreSQL could never match it, SQLite's LIKE
    # stops at it); the stored value is found by its text.
    r = server.client.get("/api/v1/traces", params={"session_id": "s\x00"})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "query.session_id"
    if nul != "\x00":
        listed = server.client.get("/api/v1/traces", params={"session_id": f"s{nul}"}).json()["items"]
        assert [t["name"] for t in listed] == [f"nul{nul}name"]


def test_each_span_keeps_its_resource_which_is_stored_once(server: ServerProcess) -> None:
    marker = secrets.token_hex(4)

    def resource_spans(resource: dict[str, str], *spans: Span) -> ResourceSpans:
        return ResourceSpans(resource=Resource(attributes=[
            KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in resource.items()]),
            scope_spans=[ScopeSpans(spans=spans)])

    a = {"service.name": f"a-{marker}", "host.name": "서버-1"}
    b = {"service.name": f"b-{marker}"}
    tid = new_trace_id()
    first = ExportTraceServiceRequest(resource_spans=[
        resource_spans(a, make_span(tid, b"\x01" * 8, name="a1"), make_span(tid, b"\x02" * 8, name="a2")),
        resource_spans(b, make_span(tid, b"\x03" * 8, name="b1")),
        resource_spans({}, make_span(tid, b"\x04" * 8, name="none"))])
    second = ExportTraceServiceRequest(resource_spans=[
        resource_spans(a, make_span(tid, b"\x05" * 8, name="a3"))])
    for req in (first, second):
        r = post(server, req.SerializeToString())
        assert r.status_code == 200, r.text
    got = {s["name"]: s["resource"] for s in detail(server, tid)["spans"]}
    assert got == {"a1": a, "a2": a, "a3": a, "b1": b, "none": {}}
    engine = sa.create_engine(server.database_url)
    try:
        with engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT CAST(attributes AS TEXT) FROM resources"
                                          " WHERE CAST(attributes AS TEXT) LIKE :m"), {"m": f"%{marker}%"}).scalars()
            assert sorted(json.loads(doc)["service.name"] for doc in stored) == [f"a-{marker}", f"b-{marker}"]
    finally:
        engine.dispose()


def test_a_resource_counts_as_stored_only_once_its_transaction_commits() -> None:
    known = StoredResources()
    known.written(1, [10, 11])
    assert (1, 10) in known  # a second request of the same transaction need not store it again
    known.rollback()
    assert (1, 10) not in known and (1, 11) not in known
    known.written(1, [10])
    known.commit()
    assert (1, 10) in known and (2, 10) not in known  # per project
    known.written(1, range(100, 100 + StoredResources.LIMIT))
    known.commit()  # past the bound, what was known is forgotten first
    assert (1, 10) not in known and (1, 100) in known


def test_otlp_json_encoding(server: ServerProcess) -> None:
    tid, root, child = secrets.token_hex(16), secrets.token_hex(8), secrets.token_hex(8)
    body = {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]},
        "scopeSpans": [{"scope": {"name": "json-test"}, "spans": [
            {"traceId": tid, "spanId": child, "parentSpanId": root, "name": "chat", "kind": 3,
             "startTimeUnixNano": str(NS + 1000), "endTimeUnixNano": str(NS + 2000),
             "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                            {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "40"}},
                            {"key": "nested", "value": {"kvlistValue": {"values": [
                                {"key": "a", "value": {"arrayValue": {"values": [
                                    {"doubleValue": 1.5}, {"boolValue": True}]}}}]}}}],
             "status": {"code": 2, "message": "boom"}},
            {"traceId": tid, "spanId": root, "name": "root", "kind": 2,
             "startTimeUnixNano": NS, "endTimeUnixNano": NS + 3000, "unknownField": 1},
        ]}]}]}
    r = httpx.post(server.otlp_http + "/v1/traces", json=body,
                   headers={"x-api-key": server.api_key}, timeout=30)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json() == {}
    got = server.client.get(f"/api/v1/traces/{tid}").json()
    spans = {s["name"]: s for s in got["spans"]}
    assert spans["chat"]["parent_span_id"] == root and spans["chat"]["kind"] == "CLIENT"
    assert spans["chat"]["span_type"] == "llm" and spans["chat"]["input_tokens"] == 40
    assert spans["chat"]["attributes"]["nested"] == {"a": [1.5, True]}
    assert spans["chat"]["status"] == "error" and spans["root"]["kind"] == "SERVER"
    assert spans["root"]["resource"] == {"service.name": "json-svc"}
    assert got["trace"]["status"] == "error" and got["trace"]["duration_ms"] == 0.003


def test_attribute_values_of_every_kind_are_kept(server: ServerProcess) -> None:
    tid = new_trace_id()
    span = make_span(tid, b"\x05" * 8, name="kinds")
    values = {
        "text": AnyValue(string_value="안녕 hello"), "empty_text": AnyValue(string_value=""),
        "zero": AnyValue(int_value=0), "big": AnyValue(int_value=2**62), "no": AnyValue(bool_value=False),
        "yes": AnyValue(bool_value=True), "half": AnyValue(double_value=0.5),
        "zero_double": AnyValue(double_value=0.0), "raw": AnyValue(bytes_value=b"\x00\xff"),
        "unset": AnyValue(),
        "list": AnyValue(array_value=ArrayValue(values=[AnyValue(string_value=""), AnyValue(int_value=3)])),
        "map": AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key="k", value=AnyValue(string_value="v"))])),
    }
    span.attributes.extend(KeyValue(key=k, value=v) for k, v in values.items())
    assert post(server, request_of(span)).status_code == 200
    [got] = detail(server, tid)["spans"]
    assert got["attributes"] == {
        "text": "안녕 hello", "empty_text": "", "zero": 0, "big": 2**62, "no": False, "yes": True,
        "half": 0.5, "zero_double": 0.0, "raw": "AP8=", "unset": None, "list": ["", 3], "map": {"k": "v"},
    }


def test_partial_success_keeps_the_valid_spans(server: ServerProcess) -> None:
    tid = new_trace_id()
    body = request_of(
        make_span(tid, b"\x02" * 8, name="good-root"),
        make_span(tid[:10], b"\x03" * 8, name="short-trace-id"),
        make_span(tid, b"\x00" * 8, name="zero-span-id"),
        make_span(tid, b"\x04" * 8, parent=b"\x02" * 8, name="good-child"),
        make_span(tid, b"\x05" * 8, name="starts-after-2262", start=2**63),
        make_span(tid, b"\x06" * 8, name="ends-after-2262", end=2**64 - 1),
    )
    r = post(server, body)
    assert r.status_code == 200
    answer = ExportTraceServiceResponse.FromString(r.content)
    assert answer.partial_success.rejected_spans == 4
    for name in ("short-trace-id", "zero-span-id", "starts-after-2262", "ends-after-2262"):
        assert name in answer.partial_success.error_message
    assert sorted(s["name"] for s in detail(server, tid)["spans"]) == ["good-child", "good-root"]


def test_log_records_after_2262_are_rejected_and_the_rest_stored(server: ServerProcess) -> None:
    tid = new_trace_id()
    assert post(server, request_of(make_span(tid, b"\x07" * 8, name="with-logs"))).status_code == 200
    request = ExportLogsServiceRequest()
    records = request.resource_logs.add().scope_logs.add().log_records
    records.add(trace_id=tid, span_id=b"\x07" * 8, time_unix_nano=NS + 1, event_name="kept")
    records.add(trace_id=tid, span_id=b"\x07" * 8, observed_time_unix_nano=2**64 - 1, event_name="too-late")
    r = post(server, request.SerializeToString(), "/v1/logs")
    assert r.status_code == 200
    answer = ExportLogsServiceResponse.FromString(r.content)
    assert answer.partial_success.rejected_log_records == 1
    assert "2262" in answer.partial_success.error_message
    [span] = detail(server, tid)["spans"]
    assert [e["name"] for e in span["events"] if e["event_type"] == "LOG"] == ["kept"]


def test_partial_success_in_json(server: ServerProcess) -> None:
    tid = secrets.token_hex(16)
    body = {"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": tid, "spanId": secrets.token_hex(8), "name": "ok", "startTimeUnixNano": NS,
         "endTimeUnixNano": NS + 1},
        {"traceId": "not-hex", "spanId": secrets.token_hex(8), "name": "bad", "startTimeUnixNano": NS},
    ]}]}]}
    r = httpx.post(server.otlp_http + "/v1/traces", json=body, headers={"x-api-key": server.api_key})
    assert r.status_code == 200
    assert r.json()["partialSuccess"]["rejectedSpans"] == "1"
    assert [s["name"] for s in server.client.get(f"/api/v1/traces/{tid}").json()["spans"]] == ["ok"]


@pytest.mark.parametrize("content_type, body", [
    ("application/x-protobuf", b"\xff\xff\xff\xff garbage"),
    ("application/json", b"{not json"),
    ("application/json", b"[1, 2]"),
    ("application/json", b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}'),
])
def test_undecodable_body_is_400_with_status(server: ServerProcess, content_type: str, body: bytes) -> None:
    r = post(server, body, content_type=content_type)
    assert r.status_code == 400
    if content_type == "application/json":
        status = r.json()
        assert status["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0] and status["message"]
    else:
        status = status_pb2.Status.FromString(r.content)
        assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert "cannot decode" in status.message


def test_unsupported_content_type_and_encoding_are_415(server: ServerProcess) -> None:
    assert post(server, b"x", content_type="text/plain").status_code == 415
    assert post(server, b"x", content_encoding="br").status_code == 415


def test_bad_key_is_401(server: ServerProcess) -> None:
    r = post(server, request_of(make_span(new_trace_id(), b"\x05" * 8)), x_api_key="wrong")
    assert r.status_code == 401
    assert status_pb2.Status.FromString(r.content).code == grpc.StatusCode.UNAUTHENTICATED.value[0]
    r = httpx.post(server.otlp_http + "/v1/traces", content=b"", timeout=10,
                   headers={"content-type": "application/x-protobuf"})
    assert r.status_code == 401


def test_bearer_token_is_accepted(server: ServerProcess) -> None:
    tid = new_trace_id()
    r = httpx.post(server.otlp_http + "/v1/traces", content=request_of(make_span(tid, b"\x06" * 8)),
                   headers={"content-type": "application/x-protobuf",
                            "authorization": f"Bearer {server.api_key}"})
    assert r.status_code == 200
    assert len(detail(server, tid)["spans"]) == 1


def test_oversized_and_gzip_bomb_bodies_are_413(server: ServerProcess) -> None:
    limit = 16 * 1024 * 1024
    r = post(server, b"\x00" * (limit + 1))
    assert r.status_code == 413
    bomb = gzip.compress(b"\x00" * (limit * 4))  # ~65 KB that inflates to 64 MiB
    assert len(bomb) < 100_000
    r = post(server, bomb, content_encoding="gzip")
    assert r.status_code == 413
    assert "after decompression" in status_pb2.Status.FromString(r.content).message
    assert httpx.get(server.url + "/healthz").status_code == 200


def test_truncated_gzip_is_400(server: ServerProcess) -> None:
    body = gzip.compress(request_of(make_span(new_trace_id(), b"\x07" * 8)))
    assert post(server, body[: len(body) // 2], content_encoding="gzip").status_code == 400


def test_duplicate_delivery_is_stored_once(server: ServerProcess) -> None:
    tid = new_trace_id()
    body = request_of(make_span(tid, b"\x08" * 8, name="root", **{"gen_ai__operation__name": "chat",
                                                                    "gen_ai__usage__input_tokens": 10}),
                      make_span(tid, b"\x09" * 8, parent=b"\x08" * 8, name="child"))
    for _ in range(3):
        assert post(server, body).status_code == 200
    got = detail(server, tid)
    assert len(got["spans"]) == 2
    assert got["trace"]["span_count"] == 2 and got["trace"]["input_tokens"] == 10


def test_spans_in_any_order_across_requests(server: ServerProcess) -> None:
    tid = new_trace_id()
    root, mid, leaf_a, leaf_b = (bytes([i]) * 8 for i in (0x11, 0x12, 0x13, 0x14))
    post(server, request_of(make_span(tid, leaf_a, mid, "leaf-a", NS + 20, NS + 30),
                            make_span(tid, leaf_b, mid, "leaf-b", NS + 40, NS + 50)))
    t = detail(server, tid)["trace"]
    assert t["has_open_spans"] and t["open_span_count"] == 1 and t["status"] == "running"
    assert t["span_count"] == 2 and t["completion_rate"] == pytest.approx(2 / 3, abs=1e-3)
    post(server, request_of(make_span(tid, mid, root, "mid", NS + 10, NS + 60)))
    t = detail(server, tid)["trace"]
    assert t["open_span_count"] == 1 and t["span_count"] == 3 and t["name"] == "mid"  # the top so far
    post(server, request_of(make_span(tid, root, b"", "root", NS, NS + 100_000)))
    got = detail(server, tid)
    t = got["trace"]
    assert (t["open_span_count"], t["has_open_spans"], t["completion_rate"]) == (0, False, 1.0)
    assert t["status"] == "success" and t["name"] == "root" and t["span_count"] == 4
    assert t["start_time"] == got["spans"][0]["start_time"] and t["duration_ms"] == 0.1
    tree = got["tree"]
    assert [n["name"] for n in tree] == ["root"]
    assert [n["name"] for n in tree[0]["children"]] == ["mid"]
    assert [n["name"] for n in tree[0]["children"][0]["children"]] == ["leaf-a", "leaf-b"]
    assert [(e["name"], e["depth"]) for e in got["timeline"]] == [
        ("root", 0), ("mid", 1), ("leaf-a", 2), ("leaf-b", 2)]


def test_trace_model_is_the_earliest_model_call(server: ServerProcess) -> None:
    """An agent span may declare a model; the trace shows the one called first, in any order."""
    tid = new_trace_id()
    agent, call_a, call_b = (bytes([i]) * 8 for i in (0x31, 0x32, 0x33))
    post(server, request_of(
        make_span(tid, call_b, agent, "chat b", NS + 30, NS + 40, gen_ai__operation__name="chat",
                  gen_ai__request__model="model-b"),
        make_span(tid, agent, b"", "agent", NS, NS + 50, gen_ai__operation__name="invoke_agent",
                  gen_ai__request__model="declared"),
        make_span(tid, call_a, agent, "chat a", NS + 10, NS + 20, gen_ai__operation__name="chat",
                  gen_ai__request__model="model-a")))
    got = detail(server, tid)
    assert got["trace"]["model"] == "model-a"
    assert [s["name"] for s in got["spans"]] == ["agent", "chat a", "chat b"]
    alone = new_trace_id()
    post(server, request_of(make_span(alone, agent, b"", "agent", NS, NS + 50,
                                      gen_ai__operation__name="invoke_agent", gen_ai__request__model="declared")))
    assert detail(server, alone)["trace"]["model"] == "declared"


def test_grpc_raw_errors_and_partial_success(server: ServerProcess) -> None:
    channel = grpc.insecure_channel(server.otlp_grpc)
    export = channel.unary_unary(EXPORT_PATH)
    tid = new_trace_id()
    body = request_of(make_span(tid, b"\x21" * 8), make_span(b"\x00" * 16, b"\x22" * 8, name="bad"))
    answer = ExportTraceServiceResponse.FromString(export(body, metadata=[("x-api-key", server.api_key)]))
    assert answer.partial_success.rejected_spans == 1
    assert len(detail(server, tid)["spans"]) == 1
    with pytest.raises(grpc.RpcError) as bad_key:
        export(body, metadata=[("x-api-key", "nope")])
    assert bad_key.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as garbage:
        export(b"\xff\xff\xff", metadata=[("x-api-key", server.api_key)])
    assert garbage.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    channel.close()


def _replay(server: ServerProcess, folder: str) -> list[bytes]:
    bodies = []
    for meta_path in sorted((WIRE / folder).glob("*.headers.json")):
        meta = json.loads(meta_path.read_text())
        body = meta_path.with_name(meta_path.name.replace(".headers.json", ".bin")).read_bytes()
        headers = {k: v for k, v in meta["headers"].items() if k.lower() not in ("host", "content-length")}
        headers["x-api-key"] = server.api_key
        r = httpx.post(server.otlp_http + meta["path"], content=body, headers=headers, timeout=30)
        assert r.status_code == 200, (meta_path.name, r.status_code, r.content)
        bodies.append(gzip.decompress(body) if "gzip" in folder else body)
    return bodies


def _trace_ids(bodies: list[bytes]) -> set[str]:
    ids = set()
    for body in bodies:
        try:
            req = ExportTraceServiceRequest.FromString(body)
        except Exception:
            continue
        ids |= {s.trace_id.hex() for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans}
    return ids


@pytest.mark.parametrize("folder", ["default", "gzip_env"])
def test_wire_captures_replay_byte_for_byte(server: ServerProcess, folder: str) -> None:
    bodies = _replay(server, folder)
    for trace_id in _trace_ids(bodies):
        got = server.client.get(f"/api/v1/traces/{trace_id}").json()
        t = got["trace"]
        assert t["has_open_spans"] is False and t["root_span_id"], t
        assert t["span_count"] == len(got["spans"]) >= 2
        assert len(got["tree"]) == 1
        if "router_rag_graph" in (t["name"] or ""):
            types = {s["span_type"] for s in got["spans"]}
            assert {"llm", "tool", "retriever"} <= types
            assert t["input_tokens"] > 0 and t["model"]


def test_wire_logs_fill_the_span_content(server: ServerProcess) -> None:
    _replay(server, "default")
    bodies = [(WIRE / "default" / "002_v1_traces.bin").read_bytes()]
    (trace_id,) = _trace_ids(bodies)
    got = server.client.get(f"/api/v1/traces/{trace_id}").json()
    chat = next(s for s in got["spans"] if s["name"].startswith("chat "))
    logs = [e for e in chat["events"] if e["event_type"] == "LOG"]
    assert logs and logs[0]["name"] == "gen_ai.client.inference.operation.details"
    assert chat["input_text"] and chat["output_text"]


def test_metrics_count_what_was_stored_and_rejected(server: ServerProcess) -> None:
    def value(text: str, name: str) -> float:
        return sum(float(line.split()[-1]) for line in text.splitlines()
                   if line.startswith(name + " ") or line.startswith(name + "{"))

    before = httpx.get(server.url + "/metrics").text
    tid = new_trace_id()
    post(server, request_of(make_span(tid, b"\x41" * 8), make_span(tid[:3], b"\x42" * 8)))
    after = httpx.get(server.url + "/metrics").text
    assert value(after, "tracehub_spans_stored_total") - value(before, "tracehub_spans_stored_total") == 1
    assert value(after, "tracehub_spans_rejected_total") - value(before, "tracehub_spans_rejected_total") == 1
    assert value(after, "tracehub_writer_transactions_total") > value(before, "tracehub_writer_transactions_total")
    assert value(after, "tracehub_writer_busy_seconds_total") > value(before, "tracehub_writer_busy_seconds_total")
    assert "process_resident_memory_bytes" in after
