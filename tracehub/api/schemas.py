"""JSON Schemas (2020-12) of the JSON API's request bodies: the one source for validation and for
the OpenAPI document. Validation errors carry the path of the bad field (`spans[1].start_time`).
"""

from __future__ import annotations

from typing import Any

import orjson
from jsonschema import Draft202012Validator, ValidationError

from tracehub.records import SPAN_TYPES

STATUSES = ["running", "success", "error"]
MAX_DEPTH = 64  # levels of objects and arrays in a request body, the body itself being the first

_HEX = "[0-9a-fA-F]"
_UUID = f"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}"


def _id(what: str, hex_len: int) -> dict[str, Any]:
    # A UUID is stored as its 32 hex characters, so a span id may also be given in that form.
    lengths = f"{_HEX}{{{hex_len}}}" if hex_len == 32 else f"{_HEX}{{{hex_len}}}|{_HEX}{{32}}"
    title = f"{hex_len} hex characters or a UUID" if hex_len == 32 else "16 or 32 hex characters or a UUID"
    return {"type": "string", "pattern": f"^(?![0-]+$)({lengths}|{_UUID})$",
            "title": f"{title}, not all zero",
            "description": f"{what}: {title} (OTLP's are {hex_len} hex characters), not all zero; "
                           "stored as lowercase hex, a UUID without its dashes."}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "type": [schema["type"], "null"]}


# The stored range of times (signed 64-bit nanoseconds) as years 1970-2261, with February 29 only
# in leap years, so that every time this pattern admits is one the server takes.
_LEAP_YEAR = ("(19(7[26]|8[048]|9[26])|20([02468][048]|[13579][26])|21(0[48]|[2468][048]|[13579][26])"
              "|22(0[48]|[24][048]|[135][26]|60))")
_YEAR = "(19[7-9][0-9]|2[01][0-9]{2}|22[0-5][0-9]|226[01])"
_DATE = (f"({_YEAR}-((0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])|(0[13-9]|1[0-2])-(29|30)|(0[13578]|1[02])-31)"
         f"|{_LEAP_YEAR}-02-29)")
_CLOCK = "([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?"
_ZONE = "(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?"
TIME: dict[str, Any] = {
    "type": "string", "pattern": f"^{_DATE}T{_CLOCK}{_ZONE}$",
    "title": "an RFC 3339 time from 1970 to 2261",
    "description": "RFC 3339 time (upper-case T and Z); without a zone it is UTC. Times are stored as "
                   "nanoseconds since the epoch in a signed 64-bit integer: from 1970-01-01T00:00:00Z "
                   "on (a 1970 time whose offset puts it earlier is refused); the pattern's years end "
                   "with 2261, the range at 2262-04-11T23:47:16Z.",
    "examples": ["2026-02-07T10:00:00Z"]}
TRACE_ID = _id("Trace id", 32)
_SPAN_ID = _id("Span id", 16)
_TEXT = {"type": ["string", "null"], "maxLength": 1_000_000}
_NAME = {"type": "string", "minLength": 1, "maxLength": 1000}
_KEY = {"type": "string", "minLength": 1, "maxLength": 200,
        "description": "Retries with the same key and body are no-ops that answer the first result; "
                       "the same key with another body is 409."}
_TOKENS = {"type": ["integer", "null"], "minimum": 0, "maximum": 2**53}
_OBJECT = {"type": "object",
           "description": f"Any JSON object; a request body nests objects and arrays at most {MAX_DEPTH} "
                          "levels deep, and its numbers are finite."}

_SPAN_TYPE = {"type": "string", "minLength": 1, "maxLength": 16, "examples": list(SPAN_TYPES)}
_COST = {"type": ["number", "null"], "minimum": 0}

TRACE: dict[str, Any] = {
    "type": "object",
    "required": ["trace_id"],
    "properties": {
        "trace_id": TRACE_ID, "name": _NAME, "status": {"enum": STATUSES},
        "start_time": TIME, "end_time": TIME, "model": _NAME, "environment": _NAME,
        "user_id": _NAME, "session_id": _NAME, "input_text": _TEXT, "output_text": _TEXT,
        "attributes": _OBJECT, "user_review_passed": {"type": ["boolean", "null"]},
    },
}

SPAN: dict[str, Any] = {
    "type": "object",
    "required": ["span_id", "name"],
    "properties": {
        "span_id": _SPAN_ID, "trace_id": {**TRACE_ID, "description": "The trace's trace_id, or left out."},
        "parent_span_id": _nullable(_SPAN_ID),
        "name": _NAME, "span_type": _SPAN_TYPE,
        "status": {"enum": STATUSES}, "start_time": TIME, "end_time": TIME, "model": _NAME,
        "input_text": _TEXT, "output_text": _TEXT, "input_tokens": _TOKENS,
        "output_tokens": _TOKENS, "cost_usd": _COST,
        "attributes": _OBJECT, "idempotency_key": _KEY,
    },
}


def _payload(event_type: str, required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    """The payload fields an event type reads, typed; other fields are kept as sent."""
    return {"if": {"properties": {"event_type": {"const": event_type}}},
            "then": {"required": ["payload"] if required else [],
                     "properties": {"payload": {"required": required, "properties": properties}}}}


SPAN_EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["trace_id", "span_id", "event_type"],
    "properties": {
        "trace_id": TRACE_ID, "span_id": _SPAN_ID,
        "event_type": {"enum": ["LOG", "AMENDMENT", "START", "END", "ERROR"]},
        "event_time": TIME, "payload": _OBJECT, "idempotency_key": _KEY,
    },
    "allOf": [
        _payload("AMENDMENT", ["patch"], {"patch": {**_OBJECT, "properties": {
            "name": _NAME, "span_type": _SPAN_TYPE, "status": {"enum": STATUSES},
            "status_message": _TEXT, "model": _NAME, "input_text": _TEXT, "output_text": _TEXT,
            "input_tokens": _TOKENS, "output_tokens": _TOKENS, "total_tokens": _TOKENS,
            "cost_usd": _COST, "attributes": _OBJECT}}}),
        _payload("START", [], {"name": _NAME, "span_type": _SPAN_TYPE, "parent_span_id": _nullable(_SPAN_ID),
                               "attributes": _OBJECT, "input_text": _TEXT, "model": _NAME}),
        _payload("END", [], {"output_text": _TEXT}),
        _payload("ERROR", [], {"message": _TEXT, "output_text": _TEXT}),
    ],
}

LANGGRAPH_NODE: dict[str, Any] = {
    "type": "object",
    "required": ["node_id"],
    "properties": {
        "node_id": _NAME, "node_name": _NAME, "node_type": _NAME,
        "parent_node_id": _nullable(_NAME), "status": {"enum": STATUSES},
        "start_time": TIME, "end_time": TIME, "input_state": {}, "output_state": {},
        "error": _TEXT, "model": _NAME, "input_tokens": _TOKENS, "output_tokens": _TOKENS,
        "attributes": _OBJECT, "idempotency_key": _KEY,
    },
}

EVAL: dict[str, Any] = {
    "type": "object",
    "required": ["trace_id", "eval_name"],
    "properties": {
        "trace_id": TRACE_ID, "span_id": _nullable(_SPAN_ID), "eval_name": _NAME,
        "eval_model": _nullable(_NAME),
        "score": {"type": ["number", "null"], "description": "A finite number: NaN and infinities are refused."},
        "passed": {"type": ["boolean", "null"]},
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
                                 "description": "Store spans whose parent is not known yet; without "
                                                "it such a span is refused (422)."},
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
        "trace_id": TRACE_ID, "run_id": _NAME, "graph_name": _NAME, "status": {"enum": STATUSES},
        "start_time": TIME, "end_time": TIME, "model": _NAME, "environment": _NAME,
        "user_id": _NAME, "session_id": _NAME, "input_text": _TEXT, "output_text": _TEXT,
        "attributes": _OBJECT,
        "nodes": {"type": "array", "maxItems": MAX_ITEMS, "items": LANGGRAPH_NODE},
    },
}

DECIDE: dict[str, Any] = {
    "type": "object",
    "required": ["trace_id"],
    "properties": {
        "trace_id": {**TRACE_ID, "description": "The trace to decide on; it need not be stored (then the "
                                                "payloads alone are decided on). " + TRACE_ID["description"]},
        "request_payload": {**_nullable(_OBJECT), "description": "What the application was asked, as "
                            "policies read it under request.*; its `text` (a string), else the trace's input "
                            "text, is request.text, which the signal detectors read."},
        "response_payload": {**_nullable(_OBJECT), "description": "What it answered, under response.*; its "
                             "`text`, else the trace's output text, is response.text."},
        "idempotency_key": _KEY,
    },
}

BODIES = {"IngestTraces": INGEST_TRACES, "IngestSpans": INGEST_SPANS, "LangGraphRun": LANGGRAPH_RUN,
          "Decide": DECIDE, "Eval": EVAL}
VALIDATORS = {name: Draft202012Validator(schema) for name, schema in BODIES.items()}


def json_path(parts: Any) -> str:
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "body"


def validation_errors(name: str, body: Any) -> list[dict[str, Any]]:
    """Every schema violation and the first value past the limits a schema cannot state (nesting,
    text that is not Unicode, numbers that are not finite) as {path, message, parts}, by path."""
    errors = [_error(list(e.absolute_path), _message(e)) for e in VALIDATORS[name].iter_errors(body)]
    errors.extend(limit_errors(body))
    return sorted(errors, key=lambda e: e["path"])


def _error(parts: list[Any], message: str) -> dict[str, Any]:
    return {"path": json_path(parts), "message": message, "parts": parts}


def _message(error: ValidationError) -> str:
    # A pattern's text tells a client less than what it stands for.
    title = error.schema.get("title") if isinstance(error.schema, dict) else None
    if error.validator == "pattern" and title:
        return f"expected {title}, got {error.instance!r}"
    return str(error.message)


def limit_errors(body: Any) -> list[dict[str, Any]]:
    """Values no stored document may hold, each item's first one: nesting deeper than MAX_DEPTH
    (reads re-encode documents, and encoders stop at a depth), lone surrogates (they have no UTF-8
    form, and the database takes UTF-8), NaN and infinities (not JSON).

    One walk over containers; strings are looked at only when orjson, which refuses lone surrogates,
    cannot encode the body.
    """
    try:
        orjson.dumps(body)
        text_checked = True
    except TypeError:  # lone surrogates, integers beyond 64 bits, nesting past orjson's 255 levels
        text_checked = False
    errors: list[dict[str, Any]] = []
    failed: set[tuple[Any, ...]] = set()  # items already reported: one error each
    stack: list[tuple[Any, tuple[Any, ...]]] = [(body, ())] if isinstance(body, (dict, list)) else []
    while stack:
        node, parts = stack.pop()
        if len(parts) >= MAX_DEPTH:
            _report(errors, failed, parts, f"nested deeper than {MAX_DEPTH} levels of objects and arrays")
            continue
        entries = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in entries:
            if not (text_checked or _unicode(key) and _unicode(value)):
                _report(errors, failed, (*parts, key), "text is not valid Unicode (a lone surrogate)")
            elif isinstance(value, (dict, list)):
                stack.append((value, (*parts, key)))
            elif isinstance(value, float) and value - value != 0.0:
                _report(errors, failed, (*parts, key), "must be a finite number, not NaN or an infinity")
    return errors


def _unicode(value: Any) -> bool:
    if not isinstance(value, str) or value.isascii():
        return True
    try:
        value.encode()
        return True
    except UnicodeEncodeError:
        return False


def _report(errors: list[dict[str, Any]], failed: set[tuple[Any, ...]], parts: tuple[Any, ...],
            message: str) -> None:
    item = parts[:2] if len(parts) >= 2 and isinstance(parts[1], int) else ()
    if item not in failed:
        failed.add(item)
        errors.append(_error(list(parts), message))
