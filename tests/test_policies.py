"""/api/v1/policies through the real server on both databases, and `tracehub policy ...`.

Each test works in a project of its own (a key made by `tracehub keys create`), since a project has
one active policy and other tests' servers decide with theirs.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import yaml

from conftest import ServerProcess
from tracehub.decision.policy import parse_policy
from tracehub.store import db
from tracehub.store import policies as store

# docs/SPEC.ko.md example 6, as written.
SPEC = (Path(__file__).parents[1] / "docs" / "SPEC.ko.md").read_text()
SPEC_BODY = json.loads(re.search(r"curl -X POST http://localhost:8000/api/v1/policies .*?-d '(.*?)'\n", SPEC, re.S)[1])

EXAMPLES = Path(__file__).parent.parent / "examples" / "policies"


def definition(reason: str = "PII_DETECTED", field: str = "signals.pii") -> dict[str, Any]:
    return {"rules": [{"priority": 10, "when": {"field": field, "op": "eq", "value": True},
                       "then": {"action": "BLOCK", "reason_code": reason, "severity": "high"}}]}


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    """A client whose key belongs to a fresh project."""
    made = server.cli("keys", "create", "--project", f"policies-{uuid.uuid4().hex[:12]}")
    assert made.returncode == 0, made.stderr
    with httpx.Client(base_url=server.url, headers={"x-api-key": made.stdout.strip()}, timeout=30) as c:
        yield c


def in_force_at(server: ServerProcess, client: httpx.Client, when_ns: int) -> dict[str, Any] | None:
    """What the engine will read: `store.policies.active_policy` on the server's database."""
    engine = db.create_engine(server.database_url)
    try:
        with engine.connect() as conn:
            project = conn.execute(sa.text("SELECT project_id FROM api_keys WHERE key_hash = :h"),
                                   {"h": _hash(client.headers["x-api-key"])}).scalar_one()
            return store.active_policy(conn, project, when_ns)
    finally:
        engine.dispose()


def _hash(key: str) -> str:
    from tracehub.store.keys import hash_key

    return hash_key(key)


def test_spec_body_creates_an_active_policy(server: ServerProcess, client: httpx.Client) -> None:
    r = client.post("/api/v1/policies", json=SPEC_BODY)
    assert r.status_code == 201, r.text
    made = r.json()
    assert (made["name"], made["active_version"], made["in_force_version"], made["unchanged"]) == (
        "default-safety", 1, 1, False)
    assert made["version"]["version"] == 1 and made["version"]["definition"] == SPEC_BODY["definition"]
    assert made["version"]["effective_from"] == "2026-01-01T00:00:00.000000Z"
    assert made["activation"]["in_force"] is True

    listed = client.get("/api/v1/policies").json()
    assert listed["total"] == 1
    assert listed["items"][0] | {"created_at": None, "updated_at": None} == {
        "policy_id": made["policy_id"], "name": "default-safety", "description": "Safety baseline",
        "active_version": 1, "shadow_version": None, "latest_version": 1, "in_force_version": 1,
        "created_at": None, "updated_at": None}
    for ref in (made["policy_id"], "default-safety"):
        detail = client.get(f"/api/v1/policies/{ref}").json()
        assert detail["active"]["definition"] == SPEC_BODY["definition"] and detail["shadow"] is None

    active = in_force_at(server, client, 2**62)
    assert active is not None and (active["policy_name"], active["version"]) == ("default-safety", 1)
    verdict = parse_policy(active["definition"]).evaluate({"signals": {"pii": True}})
    assert (verdict.action, verdict.reason_code) == ("ESCALATE", "PII_DETECTED")


def test_same_name_makes_versions_and_the_same_definition_is_unchanged(client: httpx.Client) -> None:
    first = client.post("/api/v1/policies", json={"name": "p", "definition": definition("A")})
    again = client.post("/api/v1/policies", json={"name": "p", "definition": definition("A")})
    second = client.post("/api/v1/policies", json={"name": "p", "definition": definition("B")})
    assert [r.status_code for r in (first, again, second)] == [201, 200, 201]
    assert again.json()["unchanged"] is True and again.json()["version"]["version"] == 1
    assert second.json()["version"]["version"] == 2 and second.json()["active_version"] is None
    versions = client.get("/api/v1/policies/p/versions").json()
    assert [v["version"] for v in versions["items"]] == [2, 1] and versions["total"] == 2
    assert versions["items"][1]["definition"]["rules"][0]["then"]["reason_code"] == "A"
    assert versions["items"][0]["definition_hash"] != versions["items"][1]["definition_hash"]
    assert client.get("/api/v1/policies/p").json()["latest_version"] == 2


def test_activation_switches_versions_and_policies(server: ServerProcess, client: httpx.Client) -> None:
    client.post("/api/v1/policies", json={"name": "a", "definition": definition("A1"), "active": True})
    client.post("/api/v1/policies", json={"name": "a", "definition": definition("A2")})
    client.post("/api/v1/policies", json={"name": "b", "definition": definition("B1")})
    assert in_force_at(server, client, 2**62)["definition"] == definition("A1")  # type: ignore[index]

    r = client.post("/api/v1/policies/a/activate", params={"version": 2})
    assert r.status_code == 200 and r.json()["active_version"] == 2 and r.json()["unchanged"] is False
    assert client.post("/api/v1/policies/a/activate?version=2").json()["unchanged"] is True
    assert in_force_at(server, client, 2**62)["version"] == 2  # type: ignore[index]

    b_id = client.get("/api/v1/policies/b").json()["policy_id"]
    assert client.post(f"/api/v1/policies/{b_id}/activate?version=1").status_code == 200
    listed = {p["name"]: p for p in client.get("/api/v1/policies").json()["items"]}
    assert (listed["a"]["active_version"], listed["b"]["active_version"]) == (None, 1)  # one per project
    assert in_force_at(server, client, 2**62)["policy_name"] == "b"  # type: ignore[index]

    for path, status in (("/api/v1/policies/nope/activate?version=1", 404),
                         ("/api/v1/policies/a/activate?version=9", 404),
                         ("/api/v1/policies/a/activate", 422),
                         ("/api/v1/policies/a/activate?version=x", 422)):
        r = client.post(path)
        assert r.status_code == status, (path, r.text)
        assert r.headers["content-type"] == "application/problem+json"


def test_invalid_definition_is_422_with_its_path_and_the_active_one_stays(server: ServerProcess,
                                                                           client: httpx.Client) -> None:
    assert client.post("/api/v1/policies", json={**SPEC_BODY, "effective_from": None}).status_code == 201
    bad = json.loads(json.dumps(SPEC_BODY))
    bad["definition"]["rules"][0]["when"]["any"].append({"field": "signals.pii", "op": "equals", "value": 1})
    bad["effective_from"] = None
    r = client.post("/api/v1/policies", json=bad)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["errors"][0]["path"] == "definition.rules[0].when.any[1].op"
    assert "definition.rules[0].when.any[1].op" in problem["detail"]

    regex = {"name": "default-safety", "active": True, "definition": {"rules": [{
        "priority": 1, "when": {"field": "response.text", "op": "regex", "value": "(unclosed"},
        "then": {"action": "BLOCK", "reason_code": "X", "severity": "low"}}]}}
    r = client.post("/api/v1/policies", json=regex)
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "definition.rules[0].when.value"

    envelope = client.post("/api/v1/policies", json={"name": "123", "definition": {"rules": []}, "extra": 1})
    assert {e["path"] for e in envelope.json()["errors"]} == {"name", "extra"}

    detail = client.get("/api/v1/policies/default-safety").json()
    assert (detail["latest_version"], detail["active_version"], detail["in_force_version"]) == (1, 1, 1)
    assert in_force_at(server, client, 2**62)["definition"] == SPEC_BODY["definition"]  # type: ignore[index]


def test_stored_version_invalid_under_the_current_schema_is_409_on_activate(server: ServerProcess,
                                                                             client: httpx.Client) -> None:
    """A version stored before the DSL tightened must not become active."""
    made = client.post("/api/v1/policies", json={"name": "old", "definition": definition("OK"),
                                                 "active": True}).json()
    engine = db.create_engine(server.database_url)
    with engine.begin() as conn:
        conn.execute(store.policy_versions.insert().values(
            project_id=conn.execute(sa.select(store.policies.c.project_id).where(
                store.policies.c.id == made["policy_id"])).scalar_one(),
            policy_id=made["policy_id"], version=2, definition={"rules": [{"priority": 1}]},
            definition_hash="0" * 64, source_format="json", created_ns=1))
    engine.dispose()
    r = client.post("/api/v1/policies/old/activate?version=2")
    assert r.status_code == 409 and r.json()["errors"][0]["path"] == "definition.rules[0].then"
    assert client.post("/api/v1/policies/old/shadow?version=2").status_code == 409
    assert client.get("/api/v1/policies/old").json()["active_version"] == 1


def test_yaml_body(client: httpx.Client) -> None:
    text = yaml.safe_dump(SPEC_BODY, allow_unicode=True, sort_keys=False).replace(
        "'2026-01-01T00:00:00Z'", "2026-01-01T00:00:00Z")  # a YAML timestamp, as people write it
    r = client.post("/api/v1/policies", content=text.encode(), headers={"content-type": "application/yaml"})
    assert r.status_code == 201, r.text
    version = r.json()["version"]
    assert version["definition"] == SPEC_BODY["definition"] and version["source_format"] == "yaml"
    assert version["source_text"] == text and version["effective_from"] == "2026-01-01T00:00:00.000000Z"
    same_as_json = client.post("/api/v1/policies", json=SPEC_BODY)
    assert same_as_json.status_code == 200 and same_as_json.json()["unchanged"] is True

    broken = client.post("/api/v1/policies", content=b"name: [unclosed", headers={"content-type": "application/yaml"})
    assert broken.status_code == 400 and "YAML" in broken.json()["detail"]
    bad_op = text.replace("op: eq", "op: equals")
    r = client.post("/api/v1/policies", content=bad_op.encode(), headers={"content-type": "application/yaml"})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "definition.rules[0].when.any[0].op"
    assert client.post("/api/v1/policies", content=b"x", headers={"content-type": "text/plain"}).status_code == 415


def test_effective_from_in_the_future_leaves_the_version_in_force(server: ServerProcess,
                                                                  client: httpx.Client) -> None:
    client.post("/api/v1/policies", json={"name": "p", "definition": definition("NOW"), "active": True})
    later = datetime.now(UTC) + timedelta(days=30)
    r = client.post("/api/v1/policies", json={"name": "p", "definition": definition("LATER"), "active": True,
                                              "effective_from": later.strftime("%Y-%m-%dT%H:%M:%SZ")})
    assert r.status_code == 201
    assert r.json()["activation"]["in_force"] is False and r.json()["active_version"] == 2
    detail = client.get("/api/v1/policies/p").json()
    assert (detail["active_version"], detail["in_force_version"]) == (2, 1)
    assert detail["in_force"]["definition"] == definition("NOW")

    now_ns = int(datetime.now(UTC).timestamp() * 1e9)
    later_ns = int(later.timestamp() * 1e9)
    assert in_force_at(server, client, now_ns)["version"] == 1  # type: ignore[index]
    assert in_force_at(server, client, later_ns)["version"] == 2  # type: ignore[index]

    # Another policy activated now replaces both, the pending one included.
    client.post("/api/v1/policies", json={"name": "q", "definition": definition("Q"), "active": True})
    assert in_force_at(server, client, later_ns + 1)["policy_name"] == "q"  # type: ignore[index]


def test_shadow_version(client: httpx.Client) -> None:
    client.post("/api/v1/policies", json={"name": "s", "definition": definition("ONE"), "active": True})
    client.post("/api/v1/policies", json={"name": "s", "definition": definition("TWO")})
    r = client.post("/api/v1/policies/s/shadow?version=2")
    assert r.status_code == 200 and (r.json()["active_version"], r.json()["shadow_version"]) == (1, 2)
    assert client.get("/api/v1/policies/s").json()["shadow"]["version"] == 2
    assert [v["shadow"] for v in client.get("/api/v1/policies/s/versions").json()["items"]] == [True, False]
    assert client.post("/api/v1/policies/s/shadow?version=3").status_code == 404
    r = client.delete("/api/v1/policies/s/shadow")
    assert r.status_code == 200 and r.json()["shadow_version"] is None


def test_schema_endpoint_serves_the_shipped_schema(client: httpx.Client) -> None:
    r = client.get("/api/v1/policies/schema")
    assert r.status_code == 200
    shipped = json.loads((Path(__file__).parent.parent / "tracehub/decision/policy.schema.json").read_text())
    assert r.json() == shipped
    doc = client.get("/api/v1/openapi.json").json()
    assert doc["components"]["schemas"]["PolicyBody"]["properties"]["definition"] == {
        "$ref": "#/components/schemas/PolicyDefinition"}
    assert doc["components"]["schemas"]["PolicyDefinition"]["properties"]["rules"]["items"] == {
        "$ref": "#/components/schemas/PolicyDsl_rule"}


def test_policies_are_scoped_to_the_project(server: ServerProcess, client: httpx.Client) -> None:
    client.post("/api/v1/policies", json={"name": "mine", "definition": definition()})
    other = server.cli("keys", "create", "--project", f"other-{uuid.uuid4().hex[:8]}").stdout.strip()
    r = httpx.get(server.url + "/api/v1/policies/mine", headers={"x-api-key": other})
    assert r.status_code == 404
    assert httpx.get(server.url + "/api/v1/policies", headers={"x-api-key": other}).json()["total"] == 0


def test_cli_apply_list_activate(server: ServerProcess, tmp_path: Path) -> None:
    project = f"cli-{uuid.uuid4().hex[:10]}"
    assert server.cli("keys", "create", "--project", project).returncode == 0
    source = tmp_path / "safety.yaml"
    source.write_text(yaml.safe_dump({"name": "cli-safety", "definition": definition("V1")}))
    made = server.cli("policy", "apply", str(source), "--project", project)
    assert made.returncode == 0, made.stderr
    assert "cli-safety version 1 created" in made.stdout
    again = server.cli("policy", "apply", str(source), "--project", project)
    assert "unchanged" in again.stdout

    json_source = tmp_path / "safety.json"
    json_source.write_text(json.dumps({"name": "cli-safety", "definition": definition("V2")}))
    made = server.cli("policy", "apply", str(json_source), "--project", project, "--activate")
    assert made.returncode == 0 and "version 2 created" in made.stdout and "active" in made.stdout

    listed = server.cli("policy", "list", "--project", project)
    assert listed.returncode == 0
    assert listed.stdout.split("\n")[1].split() == ["cli-safety", "2", "2", "-", "2"]

    assert server.cli("policy", "activate", "cli-safety", "1", "--project", project).returncode == 0
    assert server.cli("policy", "list", "--project", project).stdout.split("\n")[1].split()[1:3] == ["1", "2"]

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "cli-safety", "definition": {"rules": [{"priority": "x"}]}}))
    refused = server.cli("policy", "apply", str(bad), "--project", project)
    assert refused.returncode == 2 and "definition.rules[0].priority" in refused.stderr
    missing = server.cli("policy", "activate", "cli-safety", "7", "--project", project)
    assert missing.returncode == 1 and "no version 7" in missing.stderr


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_example_policies_parse(path: Path) -> None:
    body = yaml.safe_load(path.read_text())
    assert isinstance(body["name"], str) and body.get("description")
    policy = parse_policy(body["definition"])
    assert len(policy) >= 1


def test_examples_exist() -> None:
    assert {p.name for p in EXAMPLES.glob("*.yaml")} >= {"safety.yaml", "pii.yaml", "finance.yaml",
                                                          "cost_budget.yaml", "latency_budget.yaml"}


@pytest.mark.parametrize("ref", ["³", "9" * 30, "a%00b", "nope"])
def test_unknown_references_are_404(client: httpx.Client, ref: str) -> None:
    for path in (f"/api/v1/policies/{ref}", f"/api/v1/policies/{ref}/versions"):
        r = client.get(path)
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json", (path, r.text)


def test_seed_policy_is_the_spec_and_the_safety_example() -> None:
    from tracehub.decision.policy import load_source
    from tracehub.seed import DEFAULT_POLICY

    assert DEFAULT_POLICY == SPEC_BODY
    example = load_source((EXAMPLES / "safety.yaml").read_text(), "yaml")
    assert example == {k: v for k, v in SPEC_BODY.items() if k != "active"}
