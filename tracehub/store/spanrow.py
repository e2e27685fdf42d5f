"""A span's row in the spans table: encoded ahead of the writer (`span_row`, in a decode worker or
the receiving thread), so the writer thread only writes, and read back into a light record
(`span_from_row`). Its texts and JSON documents go into its body (`spanbody`); a request's resources
and scopes are encoded once (`RowEncoder`), its resources stored once by id.
"""

from __future__ import annotations

import hashlib
import operator
from typing import Any

from tracehub.records import Mapped, SpanRecord
from tracehub.store import spanbody
from tracehub.store.jsoncolumns import dumps
from tracehub.store.sql import no_nul

SPAN_COLUMNS = (
    "project_id", "trace_id", "span_id", "parent_span_id", "parent_remote", "name", "kind", "span_type",
    "status", "status_message", "status_code", "start_ns", "end_ns", "model", "input_text", "output_text",
    "input_tokens", "output_tokens", "total_tokens", "cost_usd", "user_id", "session_id", "environment",
    "graph_name", "node_name", "step", "first_token_ms", "tool_name", "resource_id", "attributes", "scope", "events",
    "links", "body",
)
SPAN_JSON = frozenset(("attributes", "scope", "events", "links"))


class RowEncoder:
    """Encodes one request's span rows. Its spans share their resource and scope objects: each is
    encoded once, the rows share the one string, and each resource goes into `resources` (its id:
    its JSON), which the writer stores once (`BatchWriter`); the rows name it by id.

    With `nul_free` (PostgreSQL, which refuses NUL in text) a NUL in a text column becomes U+FFFD;
    SQLite keeps it, and JSON keeps it escaped on both. Done here, in the decode worker, rather than
    by the writer as it stores the rows: looking cost its thread ~3 us a span."""

    def __init__(self, resources: dict[int, bytearray], nul_free: bool) -> None:
        self.resources = resources
        self.nul_free = nul_free
        # By id(): the objects outlive the encoder, so an id is never reused in these.
        self._scopes: dict[int, bytearray] = {}
        self._resource_ids: dict[int, int | None] = {}

    def resource_id(self, resource: dict[str, Any]) -> int | None:
        key = id(resource)
        if key in self._resource_ids:
            return self._resource_ids[key]
        rid = None
        if resource:
            doc = dumps(resource)
            rid = content_id(doc)
            self.resources[rid] = doc
        self._resource_ids[key] = rid
        return rid

    def scope(self, scope: dict[str, Any]) -> bytearray:
        out = self._scopes.get(id(scope))
        if out is None:
            out = self._scopes[id(scope)] = dumps(scope)
        return out


def content_id(doc: bytes | bytearray) -> int:
    """A 64-bit name of a JSON document, from its bytes."""
    return int.from_bytes(hashlib.blake2b(doc, digest_size=8).digest(), "big", signed=True)


def span_row(project_id: int, s: SpanRecord, encoder: RowEncoder) -> tuple[Any, ...]:
    """The spans-table row of `s`, all but its trace's number, which the writer adds, followed by
    the span's input and output texts (`STORED`), which the row has only in its body, and the
    trace's name the span states, which has no column (`Mapped.trace_name`)."""
    m = s.mapped
    if s.row is not None:  # a record rebuilt from its row has its JSON only there
        resource_id, attributes, scope, events, links, body = s.row[_ENCODED_AT:STORED]
        # Packed again below: the texts may have changed.
        attributes, scope, events, links = (v.encode() for v in spanbody.unpack(body)[2:])
    else:
        resource_id, attributes, scope = encoder.resource_id(s.resource), dumps(s.attributes), encoder.scope(s.scope)
        events = dumps(s.events) if s.events else _NO_ITEMS
        links = dumps(s.links) if s.links else _NO_ITEMS
    texts = m.input_text, m.output_text
    if encoder.nul_free and any(v and "\x00" in v for v in texts):
        texts = tuple(no_nul(v) for v in texts)
    body = spanbody.pack(*texts, attributes, scope, events, links)
    row = (
        project_id, s.trace_id, s.span_id, s.parent_span_id, s.parent_remote or None, s.name, s.kind,
        m.span_type, s.status, s.status_message, s.status_code, s.start_ns, s.end_ns, m.model, None, None,
        m.input_tokens, m.output_tokens, m.total_tokens, s.cost_usd, m.user_id, m.session_id,
        m.environment, m.graph_name, m.node_name, m.step, m.first_token_ms, m.tool_name, resource_id,
        _IN_BODY, _IN_BODY, _IN_BODY, _IN_BODY, body, *texts, m.trace_name,
    )
    if encoder.nul_free and any(v and "\x00" in v for v in _span_text(row)):
        row = tuple(no_nul(v) for v in row)
    return row


_ENCODED_AT = SPAN_COLUMNS.index("resource_id")
STORED = len(SPAN_COLUMNS)
# What the writer stores: a span's row and its trace's number, which only the writer knows.
SPAN_INSERT = (*SPAN_COLUMNS, "trace_seq")
_NO_ITEMS = bytearray(b"[]")  # most spans' events and links; shared, never changed
_IN_BODY = bytearray(b"")  # the JSON columns of a row with a body (`spanbody`)
# A span row's text from the client: where `RowEncoder.nul_free` looks for NUL (its input and output
# are looked at before they go into the body).
_span_text = operator.itemgetter(*(SPAN_COLUMNS.index(c) for c in (
    "name", "span_type", "status_message", "model", "user_id", "session_id", "environment", "graph_name",
    "node_name", "tool_name")))


def span_from_row(row: tuple[Any, ...]) -> SpanRecord:
    """The record of a `span_row` (made in a decode worker): every field but the JSON ones, which
    stay encoded in `row` (as bytes, not bytearrays, once they crossed from the worker: both bind
    the same way)."""
    (_pid, trace_id, span_id, parent_span_id, parent_remote, name, kind, span_type, status, status_message,
     status_code, start_ns, end_ns, model, _input, _output, input_tokens, output_tokens, total_tokens, cost_usd,
     user_id, session_id, environment, graph_name, node_name, step, first_token_ms, tool_name) = row[:_ENCODED_AT]
    input_text, output_text, trace_name = row[STORED:]
    # Positional: keywords cost a third more, on the server's event loop, for every span.
    return SpanRecord(
        trace_id, span_id, parent_span_id, name, kind, start_ns, end_ns, status, status_message,
        Mapped(span_type, model, input_text, output_text, input_tokens, output_tokens, total_tokens,
               user_id, session_id, environment, graph_name, node_name, step, trace_name, first_token_ms,
               tool_name),
        {}, {}, {}, [], [], cost_usd, None, row, bool(parent_remote), status_code)
