"""A span's input, output and JSON documents, compressed together into `spans.body`.

A span's input and output texts are mostly its attributes' message content again
(`gen_ai.input.messages`, `input.value`...). Compressed in one zstd frame the copy costs a few
bytes: bench/ingest.py's spans (3.4 KB of texts and JSON) keep 1.2 KB, in ~17 us of a decode
worker's time a span.

Every span row has a body (migration 0020 packed the rows stored before), and a body never changes:
the search index holds what it says (tracehub/store/search.py). A row's input_text and output_text
columns are NULL and its JSON columns '' (NOT NULL columns), unless a log record or an END event
filled a text the span came without (`BatchWriter`'s `COALESCE` updates): the body's text, when it
has one, wins, as the first one did before.

SQL reads a body only on SQLite, through `th_body(body, part)`, a function `register` adds to every
connection; PostgreSQL's search reads bodies in Python.

A body: the byte lengths of the input, output (-1 for none), scope, events and links (little-endian
int32), then those, then the attributes JSON, UTF-8; in a zstd frame, or under MIN_BYTES after a 0
byte (a frame's own header would cost more than it saves).
"""

from __future__ import annotations

import struct
import threading
from typing import Any

import zstandard

MIN_BYTES = 128
_RAW = b"\x00"  # a zstd frame starts with its magic number, 0x28
LEVEL = 2  # on the benchmark's spans level 1 kept 1% more bytes, level 3 0.4% fewer in 1.5x the time
_HEADER = struct.Struct("<5i")
Json = bytes | bytearray


class _Codecs(threading.local):
    # zstandard's (de)compressors are not for concurrent use; one each a thread.
    def __init__(self) -> None:
        self.compressor = zstandard.ZstdCompressor(level=LEVEL, write_checksum=False)
        self.decompressor = zstandard.ZstdDecompressor()
        self.last: tuple[bytes, tuple[str | None, str | None, str, str, str, str]] | None = None


_codecs = _Codecs()


def _utf8(text: str | None) -> bytes:
    return b"" if text is None else text.encode("utf-8", "surrogatepass")


def pack(input_text: str | None, output_text: str | None, attributes: Json, scope: Json, events: Json,
         links: Json) -> bytes:
    """The body of a span with these texts and JSON documents."""
    i, o = _utf8(input_text), _utf8(output_text)
    header = _HEADER.pack(-1 if input_text is None else len(i), -1 if output_text is None else len(o),
                          len(scope), len(events), len(links))
    raw = b"".join((header, i, o, scope, events, links, attributes))
    if len(raw) < MIN_BYTES:
        return _RAW + raw
    return _codecs.compressor.compress(raw)


def unpack(body: bytes) -> tuple[str | None, str | None, str, str, str, str]:
    """(input, output, attributes, scope, events, links) of a body. The last one is kept per
    thread: search reads a row's parts in turn."""
    last = _codecs.last
    if last is not None and last[0] == body:
        return last[1]
    raw = memoryview(body)[1:] if body[:1] == _RAW else memoryview(_codecs.decompressor.decompress(body))
    sizes = _HEADER.unpack_from(raw)
    at = _HEADER.size
    texts: list[str | None] = []
    for size in sizes:
        texts.append(None if size < 0 else str(raw[at:at + size], "utf-8", "surrogatepass"))
        at += max(size, 0)
    i, o, scope, events, links = texts
    parts = (i, o, str(raw[at:], "utf-8"), scope or "{}", events or "[]", links or "[]")
    _codecs.last = (bytes(body), parts)
    return parts


def part(body: bytes | None, index: int) -> str | None:
    """SQLite's `th_body(body, part)`: one part of a body, NULL without one."""
    return None if body is None else unpack(body)[index]


def register(dbapi_conn: Any) -> None:
    dbapi_conn.create_function("th_body", 2, part, deterministic=True)


def open_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Span rows read whole (`body` among their columns) as their columns say: the body's parts
    in their columns, and no `body`."""
    for row in rows:
        body = row.pop("body", None)
        if body is not None:
            i, o, row["attributes"], row["scope"], row["events"], row["links"] = unpack(body)
            if i is not None:
                row["input_text"] = i
            if o is not None:
                row["output_text"] = o
    return rows
