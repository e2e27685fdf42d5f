"""The OpenAPI document is valid 3.1 and covers every route; Schemathesis, with all its checks
(schema-valid and invalid bodies and query parameters), finds no server error, no undocumented
status and no disagreement between the document and the server."""

from __future__ import annotations

from typing import Any

import httpx
import schemathesis
from openapi_spec_validator import validate
from schemathesis.config import SchemathesisConfig
from starlette.routing import Mount, Route

from conftest import ServerProcess
from tracehub.api.app import create_app
from tracehub.api.openapi import document
from tracehub.hub import Hub
from tracehub.settings import Settings


def test_document_is_valid_openapi_31(server: ServerProcess) -> None:
    r = httpx.get(server.url + "/api/v1/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"] == "3.1.0"
    validate(doc)


def test_every_route_is_documented(tmp_path: Any) -> None:
    hub = Hub(Settings(database_url=f"sqlite:///{tmp_path / 'x.db'}"))
    doc = document()
    routes = create_app(hub).routes
    ui = routes[-1]  # the web UI's pages, which are no API
    assert isinstance(ui, Mount) and ui.path == "" and not any(
        r.path.startswith("/api/") for r in ui.routes if isinstance(r, Route))
    for route in routes[:-1]:
        assert isinstance(route, Route)
        assert route.path in doc["paths"], route.path
        for method in route.methods or ():
            if method != "HEAD":
                assert method.lower() in doc["paths"][route.path], (route.path, method)
    hub.engine.dispose()


# -- Schemathesis: the public API fuzzer, every check, against the real server -----------------------

# Statuses that refuse a request the document calls invalid: Schemathesis's, and 413 for a body past
# the documented size limit (refused before it is read).
REFUSED = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]

# The document the server serves (test_document_is_valid_openapi_31 reads it there); built here, as
# the pytest integration collects a test per operation before any server runs. OTLP's bodies are
# defined by OpenTelemetry's protobuf messages, which the document only names (test_otlp_protocol).
schema = schemathesis.openapi.from_dict(document(), config=SchemathesisConfig.from_dict({
    "seed": 18,
    "checks": {"enabled": True, "negative_data_rejection": {"expected-statuses": REFUSED}},
    "generation": {"mode": "all", "max-examples": 15},
    # Ingest answers a batch item by item: its invalid items are refused in a 207 that stores the rest.
    "operations": [{"include-path-regex": "^/api/(v1/ingest/|public/(scores|ingestion))",
                    "checks": {"negative_data_rejection": {"expected-statuses": [*REFUSED, "207"]}}},
                   # A webhook URL must resolve to an allowed address, which no schema can state.
                   {"include-name": "POST /api/v1/webhooks",
                    "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "401", "422"]}}},
                   # An idempotency key shared with another body (any route's) is 409, which no
                   # schema can state.
                   {"include-name": "POST /api/v1/decide",
                    "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "401", "409"]}}}],
})).exclude(tag="otlp")


@schema.parametrize()
def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(case: Any, server: ServerProcess) -> None:
    if case.meta is not None and case.meta.generation.mode.is_positive and case.path == "/api/v1/ingest/traces":
        # Rules the document states only in words: the spans carry their trace's id, and a parent
        # must be stored or sent along unless allow_missing_parent.
        case.body["allow_missing_parent"] = True
        for span in case.body.get("spans") or []:
            if isinstance(span, dict) and "trace_id" in span:
                span["trace_id"] = case.body["trace"]["trace_id"]
    case.call_and_validate(base_url=server.url, headers={"x-api-key": server.api_key})
