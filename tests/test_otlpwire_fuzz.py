"""Mutation fuzzing of the C reader (`_otlpwire.trace_parts`) against protobuf.

Real request bodies (the exporters' in fixtures/otlp-wire, the instrumentations' captures in
fixtures/otel-captures, and built ones holding every kind of value) are mutated and fed to the
reader. A mutation either edits a field of some nested message (dropped, repeated, moved, renumbered,
given another wire type or an edge value, its text made invalid or deep), re-encoding the lengths
around it so the reader gets past the outer messages, or damages the raw bytes. For a body protobuf
parses, the reader gives protobuf's parts or None; for one protobuf rejects, None.

It runs for TRACEHUB_FUZZ_SECONDS (1 in the suite; `.ci/sanitize` gives it a minute under
AddressSanitizer and UBSan) from TRACEHUB_FUZZ_SEED (0 unless given): a seed and a case number
name a failing body again.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from fixture_otlp import capture_to_trace_request
from otlp_helpers import key_values, make_span, new_trace_id, request_of
from test_otlpwire import _otlpwire, reference

FIXTURES = Path(__file__).parent / "fixtures"
SECONDS = float(os.environ.get("TRACEHUB_FUZZ_SECONDS", "1"))
SEED = int(os.environ.get("TRACEHUB_FUZZ_SEED", "0"))

if _otlpwire is None:  # test_otlpwire says why (a failure where a compiler is at hand)
    import pytest

    pytestmark = pytest.mark.skip(reason="the C reader is not built")


# ------------------------------------------------------------------ a body as a tree of fields

VARINT, I64, LEN, I32 = 0, 1, 2, 5
Value = Union[int, bytes, "Message"]


@dataclass(frozen=True)
class Field:
    number: int
    wire: int
    value: Value  # VARINT: int; I64, I32: raw bytes; LEN: bytes, or a Message where they parse as one


@dataclass(frozen=True)
class Message:
    fields: tuple[Field, ...]

    @functools.cached_property
    def encoded(self) -> bytes:  # once: an edit makes new messages only on its path to the top
        return b"".join(_encode(f) for f in self.fields)


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out + bytes([n]))


def _encode(f: Field) -> bytes:
    tag = _varint(f.number << 3 | f.wire)
    if f.wire == VARINT:
        assert isinstance(f.value, int)
        return tag + _varint(f.value)
    payload = f.value.encoded if isinstance(f.value, Message) else f.value
    assert isinstance(payload, bytes)
    return tag + (_varint(len(payload)) if f.wire == LEN else b"") + payload


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise ValueError
        b = data[at]
        at += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, at
        shift += 7


def parse(data: bytes, depth: int = 0) -> Message:
    """The fields of `data`; raises ValueError where it is not a message. A LEN payload that parses
    is taken as a message (a string may too: it is re-encoded to the same bytes either way)."""
    fields = []
    at = 0
    while at < len(data):
        tag, at = _read_varint(data, at)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise ValueError
        if wire == VARINT:
            value, at = _read_varint(data, at)
            fields.append(Field(number, wire, value))
        elif wire in (I64, I32):
            n = 8 if wire == I64 else 4
            if at + n > len(data):
                raise ValueError
            fields.append(Field(number, wire, data[at:at + n]))
            at += n
        elif wire == LEN:
            n, at = _read_varint(data, at)
            if at + n > len(data):
                raise ValueError
            payload = data[at:at + n]
            at += n
            nested: Value = payload
            if payload and depth < 40:
                try:
                    nested = parse(payload, depth + 1)
                except ValueError:
                    pass
            fields.append(Field(number, wire, nested))
        else:
            raise ValueError
    return Message(tuple(fields))


# ------------------------------------------------------------------ seeds

def _built_requests() -> list[bytes]:
    """Requests of the tests' builders, holding what the captures may lack: every kind of value,
    events, links, a status, several resources and scopes, entity_refs."""
    tid = new_trace_id()
    values = {"text": "héllo", "empty": "", "int": -(2**63), "big": 2**63 - 1, "float": 1.5, "yes": True,
              "raw": b"\x00\xff", "list": [1, "a", [2.5, None]], "map": {"k": {"deep": [True]}}, "none": None}
    span = make_span(tid, b"\x01" * 8, b"\x02" * 8, name="chat", **values)
    span.events.add(time_unix_nano=7, name="ev").attributes.extend(key_values({"a": 1}))
    span.links.add(trace_id=tid, span_id=b"\x03" * 8, trace_state="x=1").attributes.extend(key_values({"b": "c"}))
    span.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message="boom"))
    span.flags = 0x301
    request = ExportTraceServiceRequest()
    for r in range(2):
        rs = ResourceSpans(schema_url="https://opentelemetry.io/schemas/1.26.0")
        rs.resource.attributes.extend(key_values({"service.name": f"svc{r}"}))
        for s in range(2):
            ss = ScopeSpans(schema_url="s")
            ss.scope.name, ss.scope.version = f"scope{s}", "1.0"
            ss.scope.attributes.extend(key_values({"lib": s}))
            ss.spans.extend([span, make_span(tid, bytes([r, s, 1, 1, 1, 1, 1, 1]))])
            rs.scope_spans.append(ss)
        request.resource_spans.append(rs)
    refs = ExportTraceServiceRequest()
    refs.resource_spans.add().resource.entity_refs.add(type="t", id_keys=["k"])
    deep = AnyValue(string_value="bottom")
    for _ in range(35):  # past the reader's depth
        outer = AnyValue()
        outer.array_value.values.append(deep)
        deep = outer
    nested = Span(trace_id=tid, span_id=b"\x04" * 8, start_time_unix_nano=1)
    nested.attributes.add(key="deep").value.CopyFrom(deep)
    return [request.SerializeToString(), refs.SerializeToString(), request_of(nested), request_of()]


def seeds() -> list[bytes]:
    bodies = []
    for path in sorted((FIXTURES / "otlp-wire").glob("*/*.bin")):  # a logs request among them
        body = path.read_bytes()
        bodies.append(gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body)
    for path in sorted((FIXTURES / "otel-captures").glob("*.json")):
        bodies.append(capture_to_trace_request(json.loads(path.read_text())).SerializeToString())
    return bodies + _built_requests()


# ------------------------------------------------------------------ mutations

EDGES = [0, 1, 2, 5, 0x7F, 0x80, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1]


class Mutator:
    def __init__(self, rng: random.Random, seed_trees: list[Message]) -> None:
        self.rng = rng
        self.trees = seed_trees
        # Payloads met in the seeds, to splice elsewhere.
        self.payloads: list[Value] = []
        for tree in seed_trees:
            self._collect(tree)

    def _collect(self, message: Message) -> None:
        for f in message.fields:
            if f.wire == LEN:
                if len(self.payloads) < 5000:
                    self.payloads.append(f.value)
                if isinstance(f.value, Message):
                    self._collect(f.value)

    def body(self) -> bytes:
        rng = self.rng
        tree = rng.choice(self.trees)
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            tree = self._descend(tree)
        data = tree.encoded
        if rng.random() < 0.2:
            data = self._damage(bytearray(data))
        return data

    def _descend(self, message: Message) -> Message:
        """`message` with one of its fields, or of a message nested in it, edited."""
        children = [i for i, f in enumerate(message.fields) if isinstance(f.value, Message)]
        if children and self.rng.random() < 0.75:
            i = self.rng.choice(children)
            f = message.fields[i]
            assert isinstance(f.value, Message)
            edited = Field(f.number, f.wire, self._descend(f.value))
            return Message(message.fields[:i] + (edited,) + message.fields[i + 1:])
        return Message(self._edit(list(message.fields)))

    def _edit(self, fields: list[Field]) -> tuple[Field, ...]:
        rng = self.rng
        what = rng.randrange(9)
        i = rng.randrange(len(fields)) if fields else None
        if i is None or what == 0:  # a new field
            fields.insert(rng.randrange(len(fields) + 1), self._new_field())
        elif what == 1:
            del fields[i]
        elif what == 2:  # repeated: a singular message or a oneof given twice
            fields.insert(rng.randrange(len(fields) + 1), fields[i])
        elif what == 3:
            j = rng.randrange(len(fields))
            fields[i], fields[j] = fields[j], fields[i]
        elif what == 4:  # another number
            f = fields[i]
            fields[i] = Field(rng.choice([f.number + 1, max(1, f.number - 1), rng.randint(1, 20), 2**29 - 1]),
                              f.wire, f.value)
        elif what == 5:  # another wire type, the value made to fit it
            f = fields[i]
            fields[i] = self._new_field(f.number)
        elif what == 6:  # an edge value
            f = fields[i]
            if f.wire == VARINT:
                fields[i] = Field(f.number, f.wire, rng.choice(EDGES))
            elif f.wire in (I64, I32):
                n = 8 if f.wire == I64 else 4
                fields[i] = Field(f.number, f.wire, rng.choice([b"\xff" * n, b"\x00" * n, rng.randbytes(n)]))
            else:
                fields[i] = Field(f.number, f.wire, rng.choice([b"", b"\xff\xfe", b"\xc3", "é".encode() * 3]))
        elif what == 7:  # another payload: spliced, or a deep nesting of this one
            f = fields[i]
            if rng.random() < 0.8:
                fields[i] = Field(f.number, LEN, rng.choice(self.payloads))
            else:
                # AnyValues in arrays or lists: the reader stops at 32, protobuf at ~50 (100 messages).
                # Encoded here, as bytes: a tree that deep would pass Python's recursion limit.
                inner = _encode(Field(1, LEN, f.value)) if f.wire == LEN else b""
                for _ in range(rng.choice([10, 31, 33, 51])):
                    inner = _encode(Field(1, LEN, _encode(Field(rng.choice([5, 6, 1, 2]), LEN, inner))))
                fields[i] = Field(f.number, LEN, inner)
        else:  # a LEN payload's bytes cut or grown
            f = fields[i]
            raw = f.value.encoded if isinstance(f.value, Message) else f.value
            if isinstance(raw, bytes):
                cut = rng.randrange(len(raw) + 1)
                raw = raw[:cut] if rng.random() < 0.5 else raw[:cut] + rng.randbytes(rng.randint(1, 6)) + raw[cut:]
                fields[i] = Field(f.number, LEN, raw)
        return tuple(fields)

    def _new_field(self, number: int | None = None) -> Field:
        rng = self.rng
        number = number if number is not None else rng.choice([rng.randint(1, 17), rng.randint(18, 2**29 - 1)])
        wire = rng.choice([VARINT, I64, LEN, I32, 3, 4, 6, 7])  # 3, 4: groups; 6, 7: unassigned
        if wire == VARINT:
            return Field(number, wire, rng.choice(EDGES))
        if wire in (I64, I32):
            return Field(number, wire, rng.randbytes(8 if wire == I64 else 4))
        if wire == LEN:
            return Field(number, wire, rng.choice(self.payloads) if rng.random() < 0.5 else rng.randbytes(rng.randint(0, 12)))
        return Field(number, wire, b"")

    def _damage(self, data: bytearray) -> bytes:
        rng = self.rng
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(data) + 1)
            what = rng.randrange(4)
            if what == 0 and at < len(data):
                data[at] ^= 1 << rng.randrange(8)
            elif what == 1 and at < len(data):
                data[at] = rng.choice([0x00, 0x7F, 0x80, 0xFF])
            elif what == 2:
                del data[at:at + rng.randint(1, 8)]
            else:
                data[at:at] = rng.randbytes(rng.randint(1, 8))
        return bytes(data)


# ------------------------------------------------------------------ the run

def test_mutated_bodies_read_as_protobuf_reads_them() -> None:
    bodies = seeds()
    trees = [parse(body) for body in bodies]
    assert [tree.encoded for tree in trees] == bodies  # parse and encode agree
    rng = random.Random(SEED)
    mutator = Mutator(rng, trees)
    deadline = time.monotonic() + SECONDS
    cases = read = refused = 0
    while time.monotonic() < deadline:
        body = mutator.body()
        fast = _otlpwire.trace_parts(body)
        try:
            expected = reference(body)
        except DecodeError:
            assert fast is None, f"seed {SEED}, case {cases}: read a body protobuf rejects: {body[:4096].hex()}"
            refused += 1
        else:
            if fast is not None:
                assert repr(fast) == repr(expected), f"seed {SEED}, case {cases}: {body[:4096].hex()}"
                read += 1
        cases += 1
    print(f"\nfuzz seed {SEED}: {cases} bodies in {SECONDS:g} s, {read} read by the C reader, "
          f"{refused} rejected by protobuf, {cases - read - refused} left to it")
    assert read and refused and cases > read + refused  # each outcome was reached
