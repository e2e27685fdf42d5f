"""`tracehub seed` fills a fresh project with demo data a first-time user can look at."""

from __future__ import annotations

from typing import Callable

import pytest

from conftest import ServerProcess


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_seed_loads_demo_data_once(server_factory: Callable[..., ServerProcess], backend: str) -> None:
    server = server_factory(backend)
    first = server.cli("seed")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("seeded ")
    again = server.cli("seed")
    assert again.returncode == 0 and "already present" in again.stdout

    listed = server.client.get("/api/v1/traces", params={"page_size": 200}).json()
    assert listed["total"] == 26
    traces = listed["items"]
    assert {t["status"] for t in traces} == {"success", "error", "running"}
    assert any(t["has_open_spans"] for t in traces)
    assert server.client.get("/api/v1/traces", params={"search": "환불"}).json()["total"] >= 5
    run = server.client.get("/api/v1/traces", params={"name": "agent_router"}).json()["items"]
    detail = server.client.get(f"/api/v1/traces/{run[0]['trace_id']}").json()
    nodes = [s for s in detail["spans"] if s["span_type"] == "node"]
    assert [n["langgraph"]["node_name"] for n in nodes] == ["intent_router", "policy_lookup", "answer"]
    evaluated = server.client.get("/api/v1/traces", params={"eval_name": "faithfulness"}).json()
    assert evaluated["total"] == 12
    assert server.client.get("/api/v1/traces", params={"passed": "false"}).json()["total"] >= 1
    stats = server.client.get("/api/v1/traces/stats/overview", params={"last_hours": 24}).json()
    assert stats["trace_count"] >= 20
    policy = server.client.get("/api/v1/policies/default-safety").json()
    assert (policy["active_version"], policy["in_force_version"], policy["latest_version"]) == (1, 1, 1)
    assert policy["active"]["definition"]["rules"][0]["then"]["reason_code"] == "PII_DETECTED"
    assert server.cli("seed", "--api-key", "wrong").returncode != 0
