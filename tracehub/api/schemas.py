"""JSON Schemas (2020-12) of the JSON API's request bodies: the one source for validation and for
the OpenAPI document. Validation errors carry the path of the bad field (`spans[1].start_time`).
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

from tracehub.records import SPAN_TYPES

STATUSES = ["running", "success", "error"]

_ID = {"type": "string", "minLength": 1, "maxLength": 64,
       "description": "32/16 hex characters (OTel) or a UUID; stored as lowercase hex."}
_TIME = {"type": "string", "minLength": 1, "maxLength": 64,
         "description": "ISO 8601 time; without a zone it is UTC.", "examples": ["2026-02-07T10:00:00Z"]}
_TEXT = {"type": ["string", "null"], "maxLength": 1_000_000}
_NAME = {"type": "string", "minLength": 1, "maxLength": 1000}
_KEY = {"type": "string", "minLength": 1, "maxLength": 200,
        "description": "Retries with the same key and body are no-ops that answer the first result; "
                       "the same key with another body is 409."}
_TOKENS = {"type": ["integer", "null"], "minimum": 0, "maximum": 2**53}
_OBJECT = {"type": "object"}

TRACE: dict[str, Any] = {
    "type": "object",
    "required": ["trace_id"],
    "properties": {
        "trace_id": _ID, "name": _NAME, "status": {"enum": STATUSES},
        "start_time": _TIME, "end_time": _TIME, "model": _NAME, "environment": _NAME,
        "user_id": _NAME, "session_id": _NAME, "input_text": _TEXT, "output_text": _TEXT,
        "attributes": _OBJECT, "user_review_passed": {"type": ["boolean", "null"]},
    },
}

SPAN: dict[str, Any] = {
    "type": "object",
    "required": ["span_id", "name"],
    "properties": {
        "span_id": _ID, "trace_id": _ID, "parent_span_id": {"anyOf": [_ID, {"type": "null"}]},
        "name": _NAME, "span_type": {"type": "string", "minLength": 1, "maxLength": 16,
                                     "examples": list(SPAN_TYPES)},
        "status": {"enum": STATUSES}, "start_time": _TIME, "end_time": _TIME, "model": _NAME,
        "input_text": _TEXT, "output_text": _TEXT, "input_tokens": _TOKENS,
        "output_tokens": _TOKENS, "cost_usd": {"type": ["number", "null"], "minimum": 0},
        "attributes": _OBJECT, "idempotency_key": _KEY,
    },
}

SPAN_EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["trace_id", "span_id", "event_type"],
    "properties": {
        "trace_id": _ID, "span_id": _ID,
        "event_type": {"enum": ["LOG", "AMENDMENT", "START", "END", "ERROR"]},
        "event_time": _TIME, "payload": _OBJECT, "idempotency_key": _KEY,
    },
    "allOf": [
        {"if": {"properties": {"event_type": {"const": "AMENDMENT"}}},
         "then": {"required": ["payload"],
                  "properties": {"payload": {"required": ["patch"],
                                             "properties": {"patch": _OBJECT}}}}},
    ],
}

LANGGRAPH_NODE: dict[str, Any] = {
    "type": "object",
    "required": ["node_id"],
    "properties": {
        "node_id": _NAME, "node_name": _NAME, "node_type": _NAME,
        "parent_node_id": {"anyOf": [_NAME, {"type": "null"}]}, "status": {"enum": STATUSES},
        "start_time": _TIME, "end_time": _TIME, "input_state": {}, "output_state": {},
        "error": _TEXT, "model": _NAME, "input_tokens": _TOKENS, "output_tokens": _TOKENS,
        "attributes": _OBJECT, "idempotency_key": _KEY,
    },
}

EVAL: dict[str, Any] = {
    "type": "object",
    "required": ["trace_id", "eval_name"],
    "properties": {
        "trace_id": _ID, "span_id": {"anyOf": [_ID, {"type": "null"}]}, "eval_name": _NAME,
        "eval_model": {"anyOf": [_NAME, {"type": "null"}]},
        "score": {"type": ["number", "null"]}, "passed": {"type": ["boolean", "null"]},
        "metadata": _OBJECT, "user_review_passed": {"type": ["boolean", "null"]},
        "idempotency_key": _KEY,
    },
}

MAX_ITEMS = 1000

INGEST_TRACES: dict[str, Any] = {
    "type": "object",
    "required": ["trace"],
    "properties": {
        "trace": TRACE,
        "spans": {"type": "array", "maxItems": MAX_ITEMS, "items": SPAN},
        "allow_missing_parent": {"type": "boolean", "default": False,
                                 "description": "Store spans whose parent is not known yet."},
    },
}

INGEST_SPANS: dict[str, Any] = {
    "type": "object",
    "required": ["events"],
    "properties": {"events": {"type": "array", "minItems": 1, "maxItems": MAX_ITEMS,
                              "items": SPAN_EVENT}},
}

LANGGRAPH_RUN: dict[str, Any] = {
    "type": "object",
    "required": ["trace_id", "run_id", "graph_name"],
    "properties": {
        "trace_id": _ID, "run_id": _NAME, "graph_name": _NAME, "status": {"enum": STATUSES},
        "start_time": _TIME, "end_time": _TIME, "model": _NAME, "environment": _NAME,
        "user_id": _NAME, "session_id": _NAME, "input_text": _TEXT, "output_text": _TEXT,
        "attributes": _OBJECT,
        "nodes": {"type": "array", "maxItems": MAX_ITEMS, "items": LANGGRAPH_NODE},
    },
}

BODIES = {"IngestTraces": INGEST_TRACES, "IngestSpans": INGEST_SPANS, "LangGraphRun": LANGGRAPH_RUN,
          "Eval": EVAL}
VALIDATORS = {name: Draft202012Validator(schema) for name, schema in BODIES.items()}


def json_path(parts: Any) -> str:
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "body"


def validation_errors(name: str, body: Any) -> list[dict[str, Any]]:
    """Every schema violation as {path, message}, ordered by path."""
    errors = [{"path": json_path(e.absolute_path), "message": e.message, "parts": list(e.absolute_path)}
              for e in VALIDATORS[name].iter_errors(body)]
    return sorted(errors, key=lambda e: e["path"])
