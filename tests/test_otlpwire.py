"""The C reader of OTLP trace requests (`_otlpwire.trace_parts`) against protobuf.

For every body protobuf parses, the reader either gives exactly the parts `otlp._trace_parts` reads
from the parsed message, or None (the body then goes to protobuf). For a body protobuf rejects, it
gives None, so protobuf's error stands.
"""

from __future__ import annotations

import gzip
import importlib.util
import math
import shutil
import struct
import subprocess
import sysconfig
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tracehub.collector import otlp
from tracehub.collector.errors import IngestError

try:
    from tracehub.collector import _otlpwire
except ImportError:
    _otlpwire = None

WIRE = Path(__file__).parent / "fixtures" / "otlp-wire"

if _otlpwire is None:
    compiler = sysconfig.get_config_var("CC") or "cc"
    if shutil.which(compiler.split()[0]):
        pytest.fail(f"tracehub.collector._otlpwire is not built, though {compiler} is here:"
                    " run `.venv/bin/pip install -e .` again", pytrace=False)
    pytestmark = pytest.mark.skip(reason="no C compiler at install: the C reader is not built")


def reference(body: bytes) -> otlp.TraceParts:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return otlp._trace_parts(request)


def assert_same(body: bytes) -> None:
    fast = _otlpwire.trace_parts(body)
    assert fast is not None
    # repr: NaN attribute values compare unequal to themselves.
    assert repr(fast) == repr(reference(body))


def test_the_built_reader_is_not_older_than_its_source() -> None:
    source = Path(otlp.__file__).with_name("_otlpwire.c")
    assert Path(_otlpwire.__file__).stat().st_mtime >= source.stat().st_mtime, \
        "run `.venv/bin/pip install -e .` to rebuild _otlpwire"
    assert _otlpwire.PARTS_VERSION == otlp.PARTS_VERSION and otlp.WIRE_READER and not otlp.WIRE_READER_PROBLEM


def test_bodies_exporters_sent() -> None:
    bodies = sorted(WIRE.glob("*/*_v1_traces.bin"))
    assert bodies
    for path in bodies:
        body = path.read_bytes()
        assert_same(gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body)


# ------------------------------------------------------------------ random requests

_text = st.text(max_size=12)
_int64 = st.integers(-(2**63), 2**63 - 1)
_uint64 = st.integers(0, 2**64 - 1)
_int32 = st.integers(-(2**31), 2**31 - 1)


def _any_values() -> st.SearchStrategy[AnyValue]:
    scalars = st.one_of(
        st.just(AnyValue()),
        _text.map(lambda v: AnyValue(string_value=v)),
        st.booleans().map(lambda v: AnyValue(bool_value=v)),
        _int64.map(lambda v: AnyValue(int_value=v)),
        st.floats().map(lambda v: AnyValue(double_value=v)),
        st.binary(max_size=8).map(lambda v: AnyValue(bytes_value=v)),
        st.integers(0, 9).map(lambda v: AnyValue(string_value_strindex=v)),  # profiles' (left to protobuf)
    )

    def nested(children: st.SearchStrategy[AnyValue]) -> st.SearchStrategy[AnyValue]:
        def array(values: list[AnyValue]) -> AnyValue:
            v = AnyValue()
            v.array_value.values.extend(values)
            return v

        def kvlist(pairs: list[tuple[str, AnyValue]]) -> AnyValue:
            v = AnyValue()
            v.kvlist_value.values.extend(KeyValue(key=k, value=x) for k, x in pairs)
            return v

        return st.one_of(st.lists(children, max_size=3).map(array),
                         st.lists(st.tuples(_text, children), max_size=3).map(kvlist))

    return st.recursive(scalars, nested, max_leaves=6)


_values = _any_values()
# Keys repeat, so later duplicates must win as they do in protobuf's order.
_key_values = st.lists(st.tuples(st.sampled_from(["a", "gen_ai.system", "í", ""]) | _text,
                                 _values | st.none()), max_size=5)


def _attributes(target: Any, pairs: list[tuple[str, AnyValue | None]]) -> None:
    for key, value in pairs:
        kv = target.add(key=key)
        if value is not None:
            kv.value.CopyFrom(value)


@st.composite
def _spans(draw: st.DrawFn) -> Span:
    span = Span(
        trace_id=draw(st.binary(max_size=17)), span_id=draw(st.binary(max_size=9)),
        parent_span_id=draw(st.binary(max_size=9)), trace_state=draw(_text), name=draw(_text),
        kind=draw(st.sampled_from([0, 1, 2, 3, 4, 5]) | _int32),
        start_time_unix_nano=draw(_uint64), end_time_unix_nano=draw(_uint64 | st.just(0)),
        dropped_attributes_count=draw(st.integers(0, 3)), flags=draw(st.integers(0, 2**32 - 1)),
    )
    _attributes(span.attributes, draw(_key_values))
    for _ in range(draw(st.integers(0, 2))):
        event = span.events.add(time_unix_nano=draw(_uint64), name=draw(_text))
        _attributes(event.attributes, draw(_key_values))
    for _ in range(draw(st.integers(0, 2))):
        link = span.links.add(trace_id=draw(st.binary(max_size=16)), span_id=draw(st.binary(max_size=8)),
                              trace_state=draw(_text))
        _attributes(link.attributes, draw(_key_values))
    if draw(st.booleans()):
        span.status.code = draw(st.sampled_from([0, 1, 2]) | _int32)
        span.status.message = draw(_text)
    return span


@st.composite
def _requests(draw: st.DrawFn) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(0, 2))):
        rs = request.resource_spans.add(schema_url=draw(_text))
        if draw(st.booleans()):
            _attributes(rs.resource.attributes, draw(_key_values))
            if draw(st.integers(0, 4)) == 0:  # left to protobuf
                rs.resource.entity_refs.add(type=draw(_text), id_keys=[draw(_text)])
        for _ in range(draw(st.integers(0, 2))):
            ss = rs.scope_spans.add()
            if draw(st.booleans()):
                ss.scope.name, ss.scope.version = draw(_text), draw(_text)
                _attributes(ss.scope.attributes, draw(_key_values))
            ss.spans.extend(draw(st.lists(_spans(), max_size=3)))
    return request


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_requests())
def test_random_requests_read_as_protobuf_reads_them(request: ExportTraceServiceRequest) -> None:
    body = request.SerializeToString()
    fast = _otlpwire.trace_parts(body)
    assert repr(fast) == repr(reference(body)) or (fast is None and _left_to_protobuf(request))


def _left_to_protobuf(request: ExportTraceServiceRequest) -> bool:
    """Whether a request holds what the reader leaves to protobuf: string_value_strindex, entity_refs."""
    return b"string_value_strindex" in str(request).encode() or any(
        rs.resource.entity_refs for rs in request.resource_spans)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_requests(), st.data())
def test_damaged_bodies_are_left_to_protobuf(request: ExportTraceServiceRequest, data: st.DataObject) -> None:
    body = bytearray(request.SerializeToString())
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(body)))
        edit = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if edit == "flip" and at < len(body):
            body[at] ^= data.draw(st.integers(1, 255))
        elif edit == "cut":
            del body[at:at + data.draw(st.integers(1, 4))]
        else:
            body[at:at] = data.draw(st.binary(min_size=1, max_size=4))
    fast = _otlpwire.trace_parts(bytes(body))
    try:
        expected = reference(bytes(body))
    except DecodeError:
        assert fast is None
        return
    if fast is not None:
        assert repr(fast) == repr(expected)


# ------------------------------------------------------------------ what it leaves to protobuf

def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out + bytes([n]))


def _one_span(span: Span | bytes) -> bytes:
    """A request of one span (one resource, one scope)."""
    return _field(1, _field(2, _field(2, span if isinstance(span, bytes) else span.SerializeToString())))


_SPAN = Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="s", start_time_unix_nano=1).SerializeToString()


def _span_body(extra: bytes) -> bytes:
    """A request of one span, with `extra` fields after the span's own."""
    return _one_span(_SPAN + extra)


_BAD = b"\xff\xfe"


@pytest.mark.parametrize("body", [
    pytest.param(_span_body(_field(9, _field(1, b"k") + _field(2, _field(1, _BAD)))), id="attribute value"),
    pytest.param(_span_body(_field(9, _field(1, _BAD))), id="attribute key"),
    pytest.param(_span_body(_field(5, _BAD)), id="span name"),
    pytest.param(_span_body(_field(3, _BAD)), id="span trace_state"),
    pytest.param(_span_body(_field(15, _field(2, _BAD))), id="status message"),
    pytest.param(_span_body(_field(11, _field(2, _BAD))), id="event name"),
    pytest.param(_span_body(_field(13, _field(3, _BAD))), id="link trace_state"),
    pytest.param(_field(1, _field(2, _field(1, _field(1, _BAD)) + _field(2, _SPAN))), id="scope name"),
    pytest.param(_field(1, _field(2, _field(1, _field(2, _BAD)) + _field(2, _SPAN))), id="scope version"),
    pytest.param(_field(1, _field(2, _field(2, _SPAN) + _field(3, _BAD))), id="scope schema_url"),
    pytest.param(_field(1, _field(2, _field(2, _SPAN)) + _field(3, _BAD)), id="resource schema_url"),
    pytest.param(_field(1, _field(1, _field(3, _field(2, _BAD))) + _field(2, _field(2, _SPAN))),
                 id="resource entity_refs"),
])
def test_text_that_is_not_utf8_is_rejected_by_protobuf(body: bytes) -> None:
    assert _otlpwire.trace_parts(body) is None
    with pytest.raises(IngestError):
        otlp.decode_traces(body)


def test_a_string_index_is_read_by_protobuf() -> None:
    body = _span_body(_field(9, _field(1, b"k") + _field(2, _varint(8 << 3) + b"\x05")))
    assert _otlpwire.trace_parts(body) is None
    (span,) = otlp.decode_traces(body).spans
    assert span.attributes == {"k": 5}


def test_a_status_given_twice_is_merged_by_protobuf() -> None:
    body = _span_body(_field(15, bytes([3 << 3, 2])) + _field(15, _field(2, b"late")))
    assert _otlpwire.trace_parts(body) is None
    (span,) = otlp.decode_traces(body).spans
    assert (span.status, span.status_message) == ("error", "late")


def test_a_value_with_two_members_of_its_oneof_takes_the_last() -> None:
    value = _field(1, b"first") + bytes([3 << 3, 7])
    body = _span_body(_field(9, _field(1, b"k") + _field(2, value)))
    assert _otlpwire.trace_parts(body) is None
    (span,) = otlp.decode_traces(body).spans
    assert span.attributes == {"k": 7}


def _nested_span(depth: int) -> Span:
    value = AnyValue(string_value="bottom")
    for _ in range(depth):
        outer = AnyValue()
        outer.array_value.values.append(value)
        value = outer
    span = Span.FromString(_SPAN)
    span.attributes.add(key="deep").value.CopyFrom(value)
    return span


def test_nesting_deeper_than_the_reader_goes_is_left_to_protobuf() -> None:
    assert_same(_one_span(_nested_span(30)))
    body = _one_span(_nested_span(40))
    assert _otlpwire.trace_parts(body) is None
    (record,) = otlp.decode_traces(body).spans
    found = record.attributes["deep"]
    for _ in range(40):
        (found,) = found
    assert found == "bottom"
    # Deeper than protobuf goes: refused, not read by the C reader instead.
    too_deep = _field(1, b"bottom")
    for _ in range(60):
        too_deep = _field(5, _field(1, too_deep))  # an AnyValue holding an array of it
    body = _span_body(_field(9, _field(1, b"k") + _field(2, too_deep)))
    assert _otlpwire.trace_parts(body) is None
    with pytest.raises(IngestError):
        otlp.decode_traces(body)


def test_scalars_at_their_limits() -> None:
    span = Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="s", kind=-1,
                start_time_unix_nano=2**63 - 1, end_time_unix_nano=2**64 - 1)
    for key, value in [("min", AnyValue(int_value=-(2**63))), ("max", AnyValue(int_value=2**63 - 1)),
                       ("nan", AnyValue(double_value=math.nan)), ("neg0", AnyValue(double_value=-0.0)),
                       ("bytes", AnyValue(bytes_value=b"\x00\xff")), ("empty", AnyValue(string_value=""))]:
        span.attributes.add(key=key).value.CopyFrom(value)
    body = _one_span(span)
    assert_same(body)
    (part,) = _otlpwire.trace_parts(body)[2]
    assert part[6:9] == (-1, 2**63 - 1, 2**64 - 1)  # kind, start, end as sent
    attrs = part[11]
    assert (attrs["min"], attrs["max"], attrs["bytes"], attrs["empty"]) == (-(2**63), 2**63 - 1, "AP8=", "")
    assert math.isnan(attrs["nan"]) and math.copysign(1, attrs["neg0"]) == -1
    decoded = otlp.decode_traces(body)  # an end past what the store holds
    assert not decoded.spans and decoded.rejected == 1


def test_unknown_fields_are_skipped() -> None:
    unknown = (_varint(99 << 3 | 0) + b"\x05" + _varint(98 << 3 | 1) + struct.pack("<d", 1.5)
               + _field(97, b"xyz") + _varint(96 << 3 | 5) + b"\x00\x00\x00\x00")
    body = _span_body(unknown)
    assert_same(body)
    (record,) = otlp.decode_traces(body).spans
    assert record.name == "s"


# ------------------------------------------------------------------ its tables

def _reader_with_fields(tmp_path: Path, added: dict[str, str]) -> Any:
    """The reader built from its source with a field spec added at the head of some tables."""
    source = Path(otlp.__file__).with_name("_otlpwire.c").read_text()
    for table, spec in added.items():
        head = f"static const Spec {table}[] = {{\n"
        assert head in source, table
        source = source.replace(head, head + f"    {spec},\n")
    c_file = tmp_path / "_otlpwire.c"
    c_file.write_text(source)
    built = tmp_path / ("_otlpwire" + sysconfig.get_config_var("EXT_SUFFIX"))
    compiler = (sysconfig.get_config_var("CC") or "cc").split()
    made = subprocess.run([*compiler, "-shared", "-fPIC", "-O0", "-I", sysconfig.get_paths()["include"],
                           str(c_file), "-o", str(built)], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    spec = importlib.util.spec_from_file_location("_otlpwire", built)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)  # not in sys.modules: the tests' reader stays the built one
    spec.loader.exec_module(module)
    return module


def test_a_number_field_added_to_any_table_is_read_in_bounds(tmp_path: Path) -> None:
    """Every message has room for numbers, and a table naming a slot past the room refuses the
    body instead of writing past it."""
    reader = _reader_with_fields(tmp_path, {
        "LINK_FIELDS": "{1000, VARINT, NUMBER, 0}", "SCOPE_FIELDS": "{1000, VARINT, NUMBER, 0}",
        "RESOURCE_FIELDS": "{1000, VARINT, NUMBER, 0}", "EVENT_FIELDS": "{1000, VARINT, NUMBER, 99}",
    })
    extra = _varint(1000 << 3) + _varint(2**64 - 1)  # unknown to protobuf: skipped
    link = _field(13, _field(1, b"\x03" * 16) + _field(2, b"\x04" * 8) + extra)
    body = _field(1, _field(1, extra) + _field(2, _field(1, extra) + _field(2, _SPAN + link)))
    assert repr(reader.trace_parts(body)) == repr(reference(body)) != repr(reference(_one_span(_SPAN)))
    with_event = _span_body(_field(11, _field(2, b"e")))
    assert reader.trace_parts(with_event) is None
    assert_same(with_event)  # the installed reader, for the same body
