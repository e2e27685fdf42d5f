"""`GET /api/v1/traces/{trace_id}/spans` (a paged, light listing) and `.../spans/{span_id}` (one
span in full) through the real server on both databases: they say what the trace's detail says,
amendments applied, pages in start order with nothing lost or repeated."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import Project, ServerProcess, own_project

LIGHT = {"span_id", "parent_span_id", "parent_remote", "name", "span_type", "tool_name", "status", "status_code",
         "start_time", "end_time", "duration_ms", "time_to_first_token_ms", "model", "input_tokens", "output_tokens", "total_tokens",
         "cost_usd"}


@pytest.fixture(scope="module")
def project(server: ServerProcess) -> Iterator[Project]:
    with own_project(server, "spans-api", auto_decide=False) as p:
        yield p


def _t(ms: int) -> str:
    base = int(time.time()) - 120
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(base + ms // 1000)) + f".{ms % 1000:03d}Z"


def _ingest(p: Project, n: int) -> tuple[str, list[str]]:
    """A root and n - 1 children, one per millisecond, the last still running; an amendment renames
    the second span and gives it tokens."""
    trace_id, ids = secrets.token_hex(16), [secrets.token_hex(8) for _ in range(n)]
    spans: list[dict[str, Any]] = [{"span_id": ids[0], "name": "root", "span_type": "chain", "status": "success",
                                    "start_time": _t(0), "end_time": _t(n + 10)}]
    for i in range(1, n):
        spans.append({"span_id": ids[i], "parent_span_id": ids[0], "name": f"step-{i}", "span_type": "tool",
                      "start_time": _t(i), **({"end_time": _t(i + 1), "status": "success"} if i < n - 1
                                             else {"status": "running"}),
                      "attributes": {"big": "x" * 500}})
    r = p.client.post("/api/v1/ingest/traces", json={"trace": {"trace_id": trace_id, "name": "root"}, "spans": spans})
    assert r.status_code == 200, r.text
    r = p.client.post("/api/v1/ingest/spans", json={"events": [{
        "trace_id": trace_id, "span_id": ids[1], "event_type": "AMENDMENT", "event_time": _t(50),
        "payload": {"patch": {"name": "renamed", "input_tokens": 7, "output_tokens": 3,
                              "attributes": {"note": "<b>amended</b>"}}}}]})
    assert r.status_code == 200, r.text
    return trace_id, ids


def test_light_pages_match_the_detail(project: Project) -> None:
    trace_id, ids = _ingest(project, 23)
    detail = project.client.get(f"/api/v1/traces/{trace_id}").json()
    seen: list[dict[str, Any]] = []
    for page in (1, 2, 3):
        r = project.client.get(f"/api/v1/traces/{trace_id}/spans", params={"page": page, "page_size": 10})
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["page"], body["page_size"], body["total"]) == (page, 10, 23)
        assert len(body["items"]) == (10 if page < 3 else 3)
        seen += body["items"]
    assert [s["span_id"] for s in seen] == [s["span_id"] for s in detail["spans"]] == ids
    for light, full in zip(seen, detail["spans"]):
        assert set(light) == LIGHT
        assert light == {k: full[k] for k in LIGHT}
    assert seen[1]["name"] == "renamed" and seen[1]["total_tokens"] == 10  # the amendment applied
    assert seen[-1]["end_time"] is None and seen[-1]["status"] == "running"
    # The JSON ingest API states no OTel code (tests/test_otlp_exporters.py has spans that do).
    assert {s["status_code"] for s in seen} == {None}
    everything = project.client.get(f"/api/v1/traces/{trace_id}/spans").json()
    assert everything["page_size"] == 500 and len(everything["items"]) == 23


def test_one_span_in_full(project: Project) -> None:
    trace_id, ids = _ingest(project, 3)
    detail = project.client.get(f"/api/v1/traces/{trace_id}").json()
    for full in detail["spans"]:
        r = project.client.get(f"/api/v1/traces/{trace_id}/spans/{full['span_id'].upper()}")
        assert r.status_code == 200, r.text
        assert r.json() == full
    amended = project.client.get(f"/api/v1/traces/{trace_id}/spans/{ids[1]}").json()
    assert amended["name"] == "renamed" and amended["attributes"] == {"big": "x" * 500, "note": "<b>amended</b>"}
    assert [a["patch"]["name"] for a in amended["amendments"]] == ["renamed"]


def test_unknown_and_bad_ids(project: Project, server: ServerProcess) -> None:
    trace_id, _ = _ingest(project, 2)
    missing = secrets.token_hex(16)
    assert project.client.get(f"/api/v1/traces/{missing}/spans").status_code == 404
    assert project.client.get(f"/api/v1/traces/{trace_id}/spans/{secrets.token_hex(8)}").status_code == 404
    assert project.client.get(f"/api/v1/traces/{missing}/spans/{secrets.token_hex(8)}").status_code == 404
    for path, params in ((f"/api/v1/traces/{trace_id}/spans", {"page_size": 1001}),
                         (f"/api/v1/traces/{trace_id}/spans", {"page": 0}),
                         (f"/api/v1/traces/{trace_id}/spans", {"size": 3}),
                         (f"/api/v1/traces/{trace_id}/spans/xyz", {}),
                         ("/api/v1/traces/nope/spans", {})):
        r = project.client.get(path, params=params)
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", (path, params)
    # Another project's key does not see the trace.
    other = server.client.get(f"/api/v1/traces/{trace_id}/spans")
    assert other.status_code == 404
