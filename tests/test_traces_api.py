"""The trace list and detail API: filters, search (Korean too), pagination, isolation, errors."""

from __future__ import annotations

import secrets
import time
import uuid
from typing import Any, Callable

import httpx
import pytest

from conftest import ServerProcess
from otlp_helpers import NS, make_span, post, request_of


def _send_trace(server: ServerProcess, env: str, *, status_error: bool = False, text: str = "",
                user: str = "u-1", start: int = NS, model: str = "gpt-4o-mini",
                key: str | None = None) -> str:
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Status

    tid = secrets.token_bytes(16)
    root = make_span(tid, secrets.token_bytes(8), name="request", start=start, end=start + 9_000_000,
                     **{"input__value": text, "user__id": user, "session__id": "s-" + user})
    llm = make_span(tid, secrets.token_bytes(8), parent=root.span_id, name="chat", start=start + 1,
                    end=start + 8_000_000, **{"gen_ai__operation__name": "chat",
                                              "gen_ai__request__model": model,
                                              "gen_ai__usage__input_tokens": 3})
    if status_error:
        llm.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message="rate limited"))
    resource = Resource(attributes=[KeyValue(key="deployment.environment.name",
                                             value=AnyValue(string_value=env))])
    body = ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        resource=resource, scope_spans=[ScopeSpans(spans=[llm, root])])]).SerializeToString()
    r = post(server, body, **({"x_api_key": key} if key else {}))
    assert r.status_code == 200, r.text
    return tid.hex()


def _list(server: ServerProcess, **params: Any) -> dict[str, Any]:
    r = server.client.get("/api/v1/traces", params=params)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_filters_and_pagination(server: ServerProcess) -> None:
    env = "env-" + secrets.token_hex(4)
    ok = [_send_trace(server, env, start=NS + i * 1_000_000_000, user="alice") for i in range(5)]
    bad = _send_trace(server, env, status_error=True, start=NS + 10_000_000_000, user="bob",
                      model="claude-x")
    page1 = _list(server, environment=env, page_size=4)
    assert page1["total"] == 6 and page1["page"] == 1 and page1["page_size"] == 4
    assert [t["trace_id"] for t in page1["items"]] == [bad, *reversed(ok)][:4]  # newest first
    page2 = _list(server, environment=env, page_size=4, page=2)
    assert [t["trace_id"] for t in page2["items"]] == list(reversed(ok))[3:]
    assert [t["trace_id"] for t in _list(server, environment=env, status="error")["items"]] == [bad]
    assert _list(server, environment=env, status="success")["total"] == 5
    assert [t["trace_id"] for t in _list(server, environment=env, model="claude-x")["items"]] == [bad]
    assert _list(server, environment=env, user_id="alice")["total"] == 5
    assert _list(server, environment=env, session_id="s-bob")["total"] == 1
    assert _list(server, environment=env, has_open_spans="false")["total"] == 6
    assert _list(server, environment=env, has_open_spans="true")["total"] == 0
    after = _list(server, environment=env, start_after="2026-05-28T20:26:43Z")
    assert after["total"] == 3  # starts at +3 s, +4 s and +10 s
    before = _list(server, environment=env, start_before="2026-05-28T20:26:42Z")
    assert before["total"] == 2
    item = page1["items"][0]
    for field in ("trace_id", "name", "status", "start_time", "end_time", "duration_ms", "model",
                  "environment", "user_id", "session_id", "input_text", "output_text", "attributes",
                  "span_count", "open_span_count", "has_open_spans", "completion_rate",
                  "input_tokens", "output_tokens", "total_tokens", "cost_usd", "error_count",
                  "decision", "user_review_passed"):
        assert field in item, field
    assert item["error_count"] == 1 and item["span_count"] == 2 and item["duration_ms"] == 9.0


def test_pages_of_traces_that_start_together_neither_repeat_nor_skip(server: ServerProcess) -> None:
    env = "ties-" + secrets.token_hex(4)
    sent = {_send_trace(server, env, start=NS + 5) for _ in range(5)}
    pages = [[t["trace_id"] for t in _list(server, environment=env, page_size=2, page=p)["items"]]
             for p in (1, 2, 3)]
    listed = [tid for page in pages for tid in page]
    assert listed == sorted(sent, reverse=True)  # ties broken by trace id, newest order kept


@pytest.mark.parametrize("query, hits", [
    ("환불", 1), ("환불 규정", 1), ("규정을", 1), ("REFUND", 1), ("refund polic", 1), ("정책", 0),
    ("%", 0), ('"quoted"', 1), ("a_b", 1), ("x", 1),
])
def test_search_finds_substrings_in_any_case_and_korean(server: ServerProcess, query: str,
                                                        hits: int) -> None:
    env = "search-" + secrets.token_hex(4)
    _send_trace(server, env, text='고객: 환불 규정을 알려주세요 (Refund policy) "quoted" a_b x')
    _send_trace(server, env, text="unrelated question about shipping")
    assert _list(server, environment=env, search=query)["total"] == hits


def test_a_common_search_lists_the_newest_and_counts_up_to_the_cap(server: ServerProcess) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans

    from tracehub.store.search import SEARCH_CAP

    env, phrase = "common-" + secrets.token_hex(4), "often " + secrets.token_hex(3)
    resource = Resource(attributes=[KeyValue(key="deployment.environment.name", value=AnyValue(string_value=env))])
    started = {}
    for first in range(0, SEARCH_CAP + 100, 200):
        spans = []
        for i in range(first, first + 200):
            tid = secrets.token_bytes(16)
            started[tid.hex()] = NS + i * 1_000_000
            spans.append(make_span(tid, secrets.token_bytes(8), name="ask", start=NS + i * 1_000_000,
                                   end=NS + i * 1_000_000 + 5, **{"input__value": f"q{i}: {phrase}?"}))
        body = ExportTraceServiceRequest(resource_spans=[ResourceSpans(
            resource=resource, scope_spans=[ScopeSpans(spans=spans)])]).SerializeToString()
        assert post(server, body).status_code == 200
    newest = sorted(started, key=started.__getitem__, reverse=True)
    for indexed in (False, True):  # the unindexed rows scanned, then the index read
        if indexed:
            _wait_until_indexed(server)
        page = _list(server, search=phrase, page_size=50)
        assert (page["total"], page["total_capped"]) == (SEARCH_CAP, True)
        assert [t["trace_id"] for t in page["items"]] == newest[:50]
        assert [t["trace_id"] for t in _list(server, search=phrase, page_size=50, page=3)["items"]] == newest[100:150]
        # Narrowed by another filter, the count is exact again.
        narrowed = _list(server, search=phrase, environment=env, start_after="2026-05-28T20:26:40Z",
                         start_before="2026-05-28T20:26:40.005Z")
        assert (narrowed["total"], narrowed["total_capped"]) == (5, False)
        rare = _list(server, search=f"q{SEARCH_CAP + 7}: {phrase}")
        assert ([t["trace_id"] for t in rare["items"]], rare["total_capped"]) == ([newest[-SEARCH_CAP - 8]], False)


@pytest.mark.parametrize("query, hits", [("환불", 2), ("불", 2), ("액환", 1), ("환불요", 0), ("칸", 1), ("ab", 1),
                                         ("요", 0)])
def test_one_and_two_character_queries_find_words_inside_and_at_the_end(server: ServerProcess, query: str,
                                                                       hits: int) -> None:
    env = "short-" + secrets.token_hex(4)
    _send_trace(server, env, text="전액환불")
    _send_trace(server, env, text="환불 문의: 칸 ab")
    _wait_until_indexed(server)
    assert _list(server, environment=env, search=query)["total"] == hits


def test_bad_query_parameters_are_problem_json(server: ServerProcess) -> None:
    for params, path in (({"page": "0"}, "query.page"), ({"page_size": "201"}, "query.page_size"),
                         ({"page": "x"}, "query.page"), ({"has_open_spans": "maybe"}, "query.has_open_spans"),
                         ({"start_after": "yesterday"}, "query.start_after"),
                         ({"statuss": "error"}, "query.statuss")):  # misspelt: not ignored
        r = server.client.get("/api/v1/traces", params=params)
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
        assert r.json()["errors"][0]["path"] == path
    r = server.client.get("/api/v1/traces/not-an-id")
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "path.trace_id"
    r = server.client.get("/api/v1/traces/" + "ab" * 16)
    assert r.status_code == 404 and r.json()["status"] == 404
    assert httpx.get(server.url + "/api/v1/traces").status_code == 401


def test_the_list_takes_the_parameters_its_document_names() -> None:
    from tracehub.api.openapi import document
    from tracehub.api.traces import LIST_PARAMS

    documented = document()["paths"]["/api/v1/traces"]["get"]["parameters"]
    assert {p["name"] for p in documented if p["in"] == "query"} == LIST_PARAMS


def test_uuid_and_hex_ids_are_the_same_trace(server: ServerProcess) -> None:
    tid = _send_trace(server, "uuid-" + secrets.token_hex(3))
    dashed = str(uuid.UUID(hex=tid))
    assert server.client.get(f"/api/v1/traces/{dashed}").json()["trace"]["trace_id"] == tid
    assert server.client.get(f"/api/v1/traces/{tid.upper()}").status_code == 200


def test_a_key_never_sees_another_projects_data(server: ServerProcess,
                                                server_factory: Callable[..., ServerProcess]) -> None:
    made = server.cli("keys", "create", "--project", "team-" + secrets.token_hex(3))
    assert made.returncode == 0, made.stderr
    other_key = made.stdout.strip()
    assert other_key.startswith("th_") and "shown only this once" in made.stderr
    env = "iso-" + secrets.token_hex(4)
    mine = _send_trace(server, env)
    theirs = _send_trace(server, env, key=other_key)
    other = httpx.Client(base_url=server.url, headers={"x-api-key": other_key})
    assert other.get(f"/api/v1/traces/{mine}").status_code == 404
    assert [t["trace_id"] for t in other.get("/api/v1/traces", params={"environment": env}).json()["items"]] == [theirs]
    assert server.client.get(f"/api/v1/traces/{theirs}").status_code == 404
    assert [t["trace_id"] for t in _list(server, environment=env)["items"]] == [mine]
    other.close()


def test_the_unfiltered_total_counts_each_trace_once(server: ServerProcess) -> None:
    made = server.cli("keys", "create", "--project", "count-" + secrets.token_hex(3))
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    theirs = httpx.Client(base_url=server.url, headers={"x-api-key": key})
    mine_before = _list(server)["total"]
    tid = bytes.fromhex(_send_trace(server, "count", key=key))
    root, child = secrets.token_bytes(8), secrets.token_bytes(8)
    other = secrets.token_bytes(16)
    for spans in ([make_span(other, child, parent=root)], [make_span(other, root)],
                  [make_span(other, root)], [make_span(tid, secrets.token_bytes(8))]):
        r = post(server, request_of(*spans), x_api_key=key)  # a split trace, a re-delivery
        assert r.status_code == 200, r.text
    _send_trace(server, "count", key=key)
    assert theirs.get("/api/v1/traces").json()["total"] == 3
    assert theirs.get("/api/v1/traces", params={"environment": "count"}).json()["total"] == 2
    assert _list(server)["total"] == mine_before
    theirs.close()


def _unindexed(server: ServerProcess) -> int:
    return int(httpx.get(server.url + "/readyz").json()["search_unindexed_rows"])


def _wait_until_indexed(server: ServerProcess) -> None:
    deadline = time.monotonic() + 20
    while _unindexed(server) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _unindexed(server) == 0


def test_search_index_keeps_up_with_a_steady_load(server: ServerProcess) -> None:
    """20 requests a second leave the writer idle most of the time, but never 50 ms at once: the
    index used to wait for such a gap, or for the writer to be idle that long, and fell behind."""
    _wait_until_indexed(server)
    start = time.monotonic()
    for i in range(60):  # 400 spans a second for 3 s
        tid = secrets.token_bytes(16)
        spans = [make_span(tid, (j + 1).to_bytes(8, "big"), name=f"steady {j}") for j in range(20)]
        assert post(server, request_of(*spans)).status_code == 200
        time.sleep(max(0.0, start + (i + 1) * 0.05 - time.monotonic()))
    assert _unindexed(server) <= 300
    assert httpx.get(server.url + "/readyz").json()["search_lag_s"] < 5
    _wait_until_indexed(server)
    scraped = httpx.get(server.url + "/metrics").text
    assert "tracehub_search_unindexed_rows 0.0" in scraped and "tracehub_search_lag_seconds 0.0" in scraped


def test_search_index_catches_up_and_serves_from_the_index(server: ServerProcess) -> None:
    env = "indexed-" + secrets.token_hex(4)
    wanted = _send_trace(server, env, text="인덱스 확인용 문장 zebra-crossing abcz bcde")
    _wait_until_indexed(server)
    for query in ("zebra-cross", "확인용 문장", "ZEBRA", "bcz", "g abcz b", "장 z", "z bc"):
        assert [t["trace_id"] for t in _list(server, environment=env, search=query)["items"]] == [wanted], query
    # Not in the trace, though every trigram of "abcde" is ("abcz bcde"), and every word of the
    # others: the index's candidates are checked.
    for query in ("abcde", "zebra crossing", "확인 문장", "bcde abcz", "z  bc", "용 확"):
        assert _list(server, environment=env, search=query)["total"] == 0, query
    # Korean words of one or two syllables, from the index on both databases.
    for query in ("인덱", "덱스", "확", "문"):
        assert [t["trace_id"] for t in _list(server, environment=env, search=query)["items"]] == [wanted], query
    for query in ("스확", "용문", "뷁"):
        assert _list(server, environment=env, search=query)["total"] == 0, query
