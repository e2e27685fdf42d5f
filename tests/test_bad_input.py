"""Bad input on the JSON API is refused item by item with 422 and the field path, and the valid items
of the same request are stored: times out of the stored range, lone surrogates, short / all-zero ids,
NaN and infinities, documents nested past the limit, list items that are not objects. Query text
with NUL is refused on both databases. Documents stored deeper than orjson encodes (before the limit
existed) still read back."""

from __future__ import annotations

import json
import secrets
import uuid
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from conftest import ServerProcess
from otlp_helpers import make_span, post, request_of
from tracehub.api.schemas import MAX_DEPTH

DONE = {"start_time": "2026-03-01T00:00:00Z", "end_time": "2026-03-01T00:00:01Z"}


@pytest.fixture(scope="module")
def hub(module_server: ServerProcess) -> ServerProcess:
    """A server of its own: one test stores documents no ingest takes any more."""
    return module_server


def send(hub: ServerProcess, path: str, body: Any) -> httpx.Response:
    # json.dumps escapes a lone surrogate as \ud800 (httpx's json= would too, but say it here).
    return hub.client.post(path, content=json.dumps(body, ensure_ascii=True),
                           headers={"content-type": "application/json"})


def nested(levels: int) -> Any:
    """`levels` objects and arrays, one inside the other."""
    value: Any = 1
    for i in range(levels):
        value = [value] if i % 2 else {"a": value}
    return value


def span(name: str = "ok", **fields: Any) -> dict[str, Any]:
    return {"span_id": secrets.token_hex(8), "name": name, **DONE, **fields}


def stored_names(hub: ServerProcess, trace_id: str) -> list[str]:
    r = hub.client.get(f"/api/v1/traces/{trace_id}")
    assert r.status_code == 200, r.text
    return sorted(s["name"] for s in r.json()["spans"])


def assert_items(r: httpx.Response, expected: list[str | None]) -> None:
    """Each item's outcome: None for created, else the path of its 422."""
    assert r.status_code in (207, 422), r.text
    got = [None if x["status"] == "created" else (x["error"]["status"], x["error"]["path"])
           for x in r.json()["results"]]
    assert got == [None if p is None else (422, p) for p in expected], r.text


# -- 12: times out of range, lone surrogates -------------------------------------------------------

@pytest.mark.parametrize("year", ["0001", "1969", "2300", "9999"])
def test_times_out_of_range_fail_their_item_and_the_rest_is_stored(hub: ServerProcess, year: str) -> None:
    tid = uuid.uuid4().hex
    bad = f"{year}-06-01T00:00:00Z"
    r = send(hub, "/api/v1/ingest/traces", {"trace": {"trace_id": tid}, "spans": [
        span("start", start_time=bad), span("good"), span("end", end_time=bad)]})
    assert_items(r, ["spans[0].start_time", None, "spans[2].end_time"])
    assert stored_names(hub, tid) == ["good"]

    events = [{"trace_id": tid, "span_id": secrets.token_hex(8), "event_type": "LOG",
               "event_time": t, "payload": {"message": "m"}} for t in (bad, "2026-03-01T00:00:02Z")]
    assert_items(send(hub, "/api/v1/ingest/spans", {"events": events}), ["events[0].event_time", None])

    run = {"trace_id": uuid.uuid4().hex, "run_id": "r", "graph_name": "g", **DONE, "nodes": [
        {"node_id": "a", **DONE, "start_time": bad}, {"node_id": "b", **DONE},
        {"node_id": "c", **DONE, "end_time": bad}]}
    assert_items(send(hub, "/api/v1/ingest/langgraph-runs", run), ["nodes[0].start_time", None, "nodes[2].end_time"])

    r = send(hub, "/api/v1/ingest/traces", {"trace": {"trace_id": uuid.uuid4().hex, "start_time": bad}})
    assert r.status_code == 422 and [e["path"] for e in r.json()["errors"]] == ["trace.start_time"]


def test_a_1970_time_whose_offset_puts_it_before_the_epoch_is_refused(hub: ServerProcess) -> None:
    tid = uuid.uuid4().hex
    r = send(hub, "/api/v1/ingest/traces", {"trace": {"trace_id": tid}, "spans": [
        span("early", start_time="1970-01-01T00:30:00+01:00"), span("epoch", start_time="1970-01-01T00:00:00Z")]})
    assert_items(r, ["spans[0].start_time", None])
    assert "1970-01-01T00:00:00Z" in r.json()["results"][0]["error"]["message"]


@pytest.mark.parametrize("query", ["0656-06-12T21:28:33-17:46", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",
                                   "2300-01-01T00:00:00Z", "2026-02-30T00:00:00Z"])
def test_list_times_out_of_range_are_422(hub: ServerProcess, query: str) -> None:
    r = hub.client.get("/api/v1/traces", params={"start_after": query})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "query.start_after", r.text


@pytest.mark.parametrize("where", ["name", "attribute", "attribute key", "idempotency_key", "span_id"])
def test_lone_surrogates_fail_their_item(hub: ServerProcess, where: str) -> None:
    tid, lone = uuid.uuid4().hex, "x\ud800"
    bad = {"name": span(lone), "attribute": span("a", attributes={"k": ["v", lone]}),
           "attribute key": span("a", attributes={lone: {"k": 1}}),
           "idempotency_key": span("a", idempotency_key=lone), "span_id": span("a", span_id=lone)}[where]
    r = send(hub, "/api/v1/ingest/traces", {"trace": {"trace_id": tid}, "spans": [bad, span("good")]})
    expected = {"name": "spans[0].name", "attribute": "spans[0].attributes.k[1]",
                "attribute key": f"spans[0].attributes.{lone}", "idempotency_key": "spans[0].idempotency_key",
                "span_id": "spans[0].span_id"}[where]
    assert r.status_code == 207, r.text
    (error,) = [x["error"] for x in r.json()["results"] if x["status"] == "error"]
    assert error["status"] == 422
    # The answer is UTF-8: the path names the surrogate as U+FFFD.
    assert error["path"] == expected.replace("\ud800", "\ufffd")
    assert stored_names(hub, tid) == ["good"]


def test_lone_surrogate_in_an_eval_is_422(hub: ServerProcess) -> None:
    r = send(hub, "/api/v1/evals", {"trace_id": uuid.uuid4().hex, "eval_name": "e\udfff"})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "eval_name", r.text


# -- 13: NUL in query parameters --------------------------------------------------------------------

@pytest.mark.parametrize("name", ["name", "search", "model", "environment", "user_id", "session_id",
                                  "decision", "eval_name", "status"])
def test_nul_in_a_query_parameter_is_422(hub: ServerProcess, name: str) -> None:
    send(hub, "/api/v1/ingest/traces", {"trace": {"trace_id": uuid.uuid4().hex}, "spans": [span()]})
    r = hub.client.get("/api/v1/traces", params={name: "a\x00b" if name != "search" else "\x00"})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"][0]["path"] == f"query.{name}"


def test_unknown_status_is_422(hub: ServerProcess) -> None:
    r = hub.client.get("/api/v1/traces", params={"status": "done"})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "query.status"


@pytest.mark.parametrize("value", ["1_0", " 7", "٣", "+"])
def test_integers_in_the_query_are_ascii_digits(hub: ServerProcess, value: str) -> None:
    for path, name in (("/api/v1/traces", "page_size"), ("/api/v1/traces/stats/overview", "last_hours")):
        r = hub.client.get(path, params={name: value})
        assert r.status_code == 422 and r.json()["errors"][0]["path"] == f"query.{name}", r.text


# -- 14: ids, NaN ----------------------------------------------------------------------------------

@pytest.mark.parametrize("value, path", [
    ("abc", "spans[0].span_id"), ("0" * 16, "spans[0].span_id"), ("1" * 15, "spans[0].span_id"),
    ("1" * 17, "spans[0].span_id"), (" " + "1" * 16, "spans[0].span_id"),
    ("00000000-0000-0000-0000-000000000000", "spans[0].span_id")])
def test_span_ids_are_16_hex_or_a_uuid_and_not_all_zero(hub: ServerProcess, value: str, path: str) -> None:
    tid = uuid.uuid4().hex
    r = send(hub, "/api/v1/ingest/traces", {"trace": {"trace_id": tid}, "spans": [span("bad", span_id=value),
                                                                                    span("good")]})
    assert_items(r, [path, None])


@pytest.mark.parametrize("value", ["abc", "0" * 32, "1" * 31, "00000000-0000-0000-0000-000000000000",
                                   "1111111-11111-1111-1111-111111111111"])
def test_trace_ids_are_32_hex_or_a_uuid_and_not_all_zero(hub: ServerProcess, value: str) -> None:
    for path, body, field in (
            ("/api/v1/ingest/traces", {"trace": {"trace_id": value}}, "trace.trace_id"),
            ("/api/v1/evals", {"trace_id": value, "eval_name": "e"}, "trace_id"),
            ("/api/v1/ingest/langgraph-runs", {"trace_id": value, "run_id": "r", "graph_name": "g"}, "trace_id")):
        r = send(hub, path, body)
        assert r.status_code == 422 and field in [e["path"] for e in r.json()["errors"]], r.text
    r = hub.client.get(f"/api/v1/traces/{value}")
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "path.trace_id"
    events = [{"trace_id": value, "span_id": "1" * 16, "event_type": "LOG"},
              {"trace_id": uuid.uuid4().hex, "span_id": "1" * 16, "event_type": "LOG"}]
    assert_items(send(hub, "/api/v1/ingest/spans", {"events": events}), ["events[0].trace_id", None])


def test_uuids_and_upper_case_hex_are_stored_as_lower_case_hex(hub: ServerProcess) -> None:
    tid = uuid.uuid4()
    sid = secrets.token_hex(8).upper()
    r = send(hub, "/api/v1/ingest/traces", {"trace": {"trace_id": str(tid).upper()},
                                            "spans": [span("a", span_id=sid)]})
    assert r.status_code == 200, r.text
    assert r.json()["trace_id"] == tid.hex and r.json()["results"][0]["span_id"] == sid.lower()
    got = hub.client.get(f"/api/v1/traces/{tid}").json()
    assert got["spans"][0]["span_id"] == sid.lower()


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_are_422(hub: ServerProcess, literal: str) -> None:
    tid = uuid.uuid4().hex
    r = hub.client.post("/api/v1/evals", headers={"content-type": "application/json"},
                        content=f'{{"trace_id": "{tid}", "eval_name": "e", "score": {literal}}}')
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "score", r.text
    body = (f'{{"trace": {{"trace_id": "{tid}"}}, "spans": [{json.dumps(span("good"))}, '
            f'{{"span_id": "{secrets.token_hex(8)}", "name": "bad", "attributes": {{"x": [{literal}]}}}}]}}')
    r = hub.client.post("/api/v1/ingest/traces", headers={"content-type": "application/json"}, content=body)
    assert_items(r, [None, "spans[1].attributes.x[0]"])
    assert hub.client.get(f"/api/v1/traces/{tid}").json()["evals"] == []


# -- Schemathesis's finds: list items that are not objects -----------------------------------------

@pytest.mark.parametrize("path, body, item", [
    ("/api/v1/ingest/spans", {"events": [[None, None]]}, "events[0]"),
    ("/api/v1/ingest/traces", {"trace": {"trace_id": "1" * 32}, "spans": [[None, None]]}, "spans[0]"),
    ("/api/v1/ingest/langgraph-runs", {"trace_id": "1" * 32, "run_id": "r", "graph_name": "g",
                                       "nodes": [[None], "x", 5]}, "nodes[0]"),
])
def test_list_items_that_are_not_objects_fail_as_items(hub: ServerProcess, path: str, body: Any, item: str) -> None:
    r = send(hub, path, body)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", r.text
    assert r.json()["results"][0]["error"]["path"] == item


# -- 10: nesting ----------------------------------------------------------------------------------

def test_nesting_up_to_the_limit_is_stored_and_one_more_level_is_422(hub: ServerProcess) -> None:
    # The body is level 1, "trace" 2, "attributes" 3: the limit leaves MAX_DEPTH - 3 levels inside.
    tid = uuid.uuid4().hex
    inner = MAX_DEPTH - 3
    r = send(hub, "/api/v1/ingest/traces", {"trace": {"trace_id": tid, "attributes": {"d": nested(inner)}}})
    assert r.status_code == 200, r.text
    attrs = hub.client.get(f"/api/v1/traces/{tid}").json()["trace"]["attributes"]
    assert attrs == {"d": nested(inner)}
    r = send(hub, "/api/v1/ingest/traces", {"trace": {"trace_id": uuid.uuid4().hex,
                                                      "attributes": {"d": nested(inner + 1)}}})
    assert r.status_code == 422, r.text
    (error,) = r.json()["errors"]
    assert error["path"].startswith("trace.attributes.d[0].a[0]") and str(MAX_DEPTH) in error["message"]


@pytest.mark.parametrize("path, body, bad", [
    ("/api/v1/ingest/traces", {"trace": {"trace_id": "2" * 32, "attributes": {"x": nested(253)}}}, "trace.attributes"),
    ("/api/v1/evals", {"trace_id": "2" * 32, "eval_name": "e", "metadata": {"x": nested(300)}}, "metadata"),
    ("/api/v1/ingest/langgraph-runs", {"trace_id": "2" * 32, "run_id": "r", "graph_name": "g",
                                       "attributes": {"x": nested(100)}}, "attributes"),
])
def test_deep_documents_fail_the_request(hub: ServerProcess, path: str, body: Any, bad: str) -> None:
    r = send(hub, path, body)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["path"].startswith(bad + ".x")


def test_deep_documents_fail_their_item(hub: ServerProcess) -> None:
    tid, sid = uuid.uuid4().hex, secrets.token_hex(8)
    r = send(hub, "/api/v1/ingest/traces", {"trace": {"trace_id": tid}, "spans": [
        span("deep", attributes={"x": nested(100)}), span("root", span_id=sid)]})
    assert r.status_code == 207 and [x["status"] for x in r.json()["results"]] == ["error", "created"]
    assert r.json()["results"][0]["error"]["path"].startswith("spans[0].attributes.x[0].a[0]")
    events = [{"trace_id": tid, "span_id": sid, "event_type": "AMENDMENT", "payload": {"patch": {"attributes": {"x": nested(80)}}}},
              {"trace_id": tid, "span_id": sid, "event_type": "START", "payload": {"attributes": {"x": nested(80)}}},
              {"trace_id": tid, "span_id": sid, "event_type": "LOG", "payload": {"message": "fine"}}]
    r = send(hub, "/api/v1/ingest/spans", {"events": events})
    assert r.status_code == 207 and [x["status"] for x in r.json()["results"]] == ["error", "error", "created"]
    paths = [x["error"]["path"] for x in r.json()["results"][:2]]
    assert paths[0].startswith("events[0].payload.patch.attributes.x[0].a")
    assert paths[1].startswith("events[1].payload.attributes.x[0].a")
    run = {"trace_id": uuid.uuid4().hex, "run_id": "r", "graph_name": "g", "nodes": [
        {"node_id": "a", "input_state": nested(90)}, {"node_id": "b"}]}
    r = send(hub, "/api/v1/ingest/langgraph-runs", run)
    assert r.status_code == 207 and [x["status"] for x in r.json()["results"]] == ["error", "created"]


def test_otlp_attributes_cannot_nest_past_the_limit(hub: ServerProcess) -> None:
    """OTLP nests values through messages, and protobuf refuses a body nested past 100 of them (47
    arrays, 31 key-value lists), which is under MAX_DEPTH: what it takes reads back."""
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    def deep_span(levels: int) -> Any:
        s = make_span(secrets.token_bytes(16), secrets.token_bytes(8))
        value = AnyValue(int_value=1)
        for _ in range(levels):
            value = AnyValue(array_value={"values": [value]})
        s.attributes.append(KeyValue(key="deep", value=value))
        return s

    ok = deep_span(47)
    assert post(hub, request_of(ok)).status_code == 200
    got = hub.wait_trace(ok.trace_id.hex())["spans"][0]["attributes"]["deep"]
    depth = 0
    while isinstance(got, list):
        got, depth = got[0], depth + 1
    assert depth == 47 and got == 1
    assert 47 + 4 < MAX_DEPTH  # span attributes sit four levels into a detail answer
    assert post(hub, request_of(deep_span(48))).status_code == 400


def test_documents_stored_deeper_than_orjson_encodes_still_read_back(hub: ServerProcess) -> None:
    """Stored before ingest limited nesting: a trace's attributes 260 deep with an integer beyond 64
    bits, an eval's metadata 300 deep. The list and the detail answer 200, the subtrees past
    orjson's limit as their JSON text in a string."""
    tid = uuid.uuid4().hex
    assert send(hub, "/api/v1/ingest/traces", {"trace": {"trace_id": tid}, "spans": [span("root")]}).status_code == 200
    assert send(hub, "/api/v1/evals", {"trace_id": tid, "eval_name": "deep"}).status_code == 201
    attributes, metadata = {"x": nested(260), "big": 2**70}, {"m": nested(300)}
    engine = sa.create_engine(hub.database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE traces SET attributes = :a WHERE trace_id = :t"),
                     {"a": json.dumps(attributes), "t": tid})
        conn.execute(sa.text("UPDATE evaluation_results SET metadata = :m WHERE trace_id = :t"),
                     {"m": json.dumps(metadata), "t": tid})
    engine.dispose()

    listed = hub.client.get("/api/v1/traces", params={"page_size": 200})
    assert listed.status_code == 200, listed.text
    (trace,) = [t for t in listed.json()["items"] if t["trace_id"] == tid]
    assert trace["attributes"]["big"] == 2**70
    assert _unfold(trace["attributes"]["x"]) == nested(260)

    detail = hub.client.get(f"/api/v1/traces/{tid}")
    assert detail.status_code == 200, detail.text
    assert _unfold(detail.json()["evals"][0]["metadata"]["m"]) == nested(300)
    assert _unfold(detail.json()["trace"]["attributes"]["x"]) == nested(260)


def _unfold(value: Any) -> Any:
    """The document again: the string that stands for the part past the limit, parsed in place."""
    path: list[Any] = []
    node = value
    while isinstance(node, (dict, list)):
        key = "a" if isinstance(node, dict) else 0
        path.append((node, key))
        node = node[key]
    assert isinstance(node, str) or node == 1, node
    if isinstance(node, str):
        parent, key = path[-1]
        parent[key] = json.loads(node)
    return value


def test_nul_in_text_fields_is_stored_on_both_databases(hub: ServerProcess) -> None:
    """PostgreSQL refuses NUL in text: it is stored as U+FFFD there (SQLite keeps it), in every
    text column the JSON API fills, instead of failing the request with 503 on every retry."""
    tid, sid, nul = uuid.uuid4().hex, secrets.token_hex(8), "a\x00b"
    trace = {"trace_id": tid, "name": nul, "model": nul, "environment": nul, "user_id": nul,
             "session_id": nul, "input_text": nul, "output_text": nul}
    r = send(hub, "/api/v1/ingest/traces", {"trace": trace, "spans": [
        span(nul, span_id=sid, span_type=nul, model=nul, input_text=nul, idempotency_key=nul, status="running")]})
    assert r.status_code == 200, r.text
    events = [{"trace_id": tid, "span_id": sid, "event_type": "LOG", "payload": {"message": nul}},
              {"trace_id": tid, "span_id": sid, "event_type": "ERROR", "payload": {"message": nul, "output_text": nul},
               "idempotency_key": nul + "e"}]
    assert send(hub, "/api/v1/ingest/spans", {"events": events}).status_code == 200
    r = send(hub, "/api/v1/evals", {"trace_id": tid, "eval_name": nul, "eval_model": nul, "idempotency_key": nul + "v"})
    assert r.status_code == 201, r.text
    run = {"trace_id": uuid.uuid4().hex, "run_id": nul, "graph_name": nul, "nodes": [
        {"node_id": nul, "node_name": nul, "node_type": nul, "error": nul}]}
    assert send(hub, "/api/v1/ingest/langgraph-runs", run).status_code == 200
    stored = nul if hub.database_url.startswith("sqlite") else "a\ufffdb"
    got = hub.client.get(f"/api/v1/traces/{tid}").json()
    assert got["trace"]["name"] == got["spans"][0]["span_type"] == got["spans"][0]["status_message"] == stored
    assert got["evals"][0]["eval_name"] == stored
    # NUL in the span type alone (the type is not one of the texts a span's row was looked through for)
    tid = uuid.uuid4().hex
    assert send(hub, "/api/v1/ingest/traces", {"trace": {"trace_id": tid}, "spans": [span(span_type=nul)]}).status_code == 200
    assert hub.client.get(f"/api/v1/traces/{tid}").json()["spans"][0]["span_type"] == stored


def test_a_uuid_span_id_starts_a_span_and_names_it_as_a_parent(hub: ServerProcess) -> None:
    """A UUID span id is stored as 32 hex characters, which the API then takes as that span's id."""
    tid, sid = str(uuid.uuid4()), uuid.uuid4()
    start = {"trace_id": tid, "span_id": str(sid), "event_type": "START", "payload": {"name": "agent"}}
    assert send(hub, "/api/v1/ingest/spans", {"events": [start]}).status_code == 200
    child = span("child", parent_span_id=sid.hex)
    assert send(hub, "/api/v1/ingest/traces", {"trace": {"trace_id": tid}, "spans": [child]}).status_code == 200
    got = {s["name"]: s for s in hub.client.get(f"/api/v1/traces/{tid}").json()["spans"]}
    assert got["agent"]["span_id"] == got["child"]["parent_span_id"] == sid.hex
