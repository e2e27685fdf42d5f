"""HTTP/1.1 connections in front of uvicorn's parser: request heads must arrive in time and in bounded
size, and raw UTF-8 in a request target is accepted.

uvicorn bounds neither the time a client takes to send a request head nor its size: a client that
connects and sends nothing, or one header byte now and then (slowloris), holds its socket for
ever. Its parsers (httptools' llhttp, strict; h11) answer 400 to a target with raw UTF-8 bytes,
which curl sends as typed (`?search=환불`); most servers take them, and a browser would have sent
them percent-encoded. This protocol wraps the one uvicorn would use and follows the message framing
(Content-Length or chunked bodies) only far enough to know where each request head starts and ends:
it closes a connection whose head is not complete `head_timeout_s` after the connection, or after
the head's first byte, or that grows past `HEAD_LIMIT`, and percent-encodes bytes >= 0x80 in the
request line. uvicorn's parser stays the one that reads the request.

It must never change a body byte: on framing it does not follow (an upgrade, a malformed length,
which uvicorn's parser refuses anyway) it stops looking and passes the rest on unchanged, and the
connection then gets `head_timeout_s` to finish.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, cast

import uvicorn
from uvicorn.protocols.http.auto import AutoHTTPProtocol

HEAD_LIMIT = 64 * 1024
_LINE_LIMIT = 4096
_HIGH = re.compile(rb"[\x80-\xff]")
_HEX = frozenset(b"0123456789abcdefABCDEF")

# Where the framing is: a head, a body of known length, a chunked body's parts, or not followed.
_HEAD, _BODY, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _PASS = range(7)


def _percent(match: re.Match[bytes]) -> bytes:
    return b"%%%02X" % match[0][0]


def _body_framing(head: bytes) -> tuple[int, int]:
    """(state, body length) after a complete head: the framing the head declares."""
    length: int | None = None
    chunked = upgrade = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            if length is not None or not value.isdigit():
                return _PASS, 0
            length = int(value)
        elif name == b"transfer-encoding":
            if not value.endswith(b"chunked"):
                return _PASS, 0
            chunked = True
        elif name == b"upgrade":
            upgrade = True
    if upgrade or (chunked and length is not None):
        return _PASS, 0
    if chunked:
        return _CHUNK_SIZE, 0
    return (_BODY, length) if length else (_HEAD, 0)


class GuardedHttp(asyncio.Protocol):
    """uvicorn's HTTP protocol (httptools where installed, else h11) behind the head guard."""

    head_timeout_s = 10.0

    def __init__(self, config: uvicorn.Config, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.inner: asyncio.Protocol = AutoHTTPProtocol(  # type: ignore[call-arg]
            config=config, server_state=server_state, app_state=app_state, _loop=_loop)
        self.loop = _loop or asyncio.get_event_loop()
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.state = _HEAD
        self.pending = bytearray()  # the head, chunk-size line or trailers read so far
        self.in_request_line = True
        self.remaining = 0  # bytes of the body or chunk still to come

    @classmethod
    def with_timeout(cls, head_timeout_s: float) -> type[GuardedHttp]:
        """The class to give uvicorn (it builds the protocol of each connection itself)."""
        return cast("type[GuardedHttp]", type(cls.__name__, (cls,), {"head_timeout_s": head_timeout_s}))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.inner.connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.inner.connection_lost(exc)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def data_received(self, data: bytes) -> None:
        if self.state == _BODY and len(data) < self.remaining:  # the bulk of a body: nothing to look at
            self.remaining -= len(data)
            self.inner.data_received(data)
            return
        i, end = 0, len(data)
        while i < end and self.state != _PASS:
            if self.state in (_BODY, _CHUNK_DATA, _CHUNK_END):
                j = min(end, i + self.remaining)
                self._forward(data[i:j])
                self.remaining -= j - i
                i = j
                if not self.remaining:
                    self.state = {_BODY: _HEAD, _CHUNK_DATA: _CHUNK_END, _CHUNK_END: _CHUNK_SIZE}[self.state]
                    if self.state == _CHUNK_END:
                        self.remaining = 2
            elif self.state == _HEAD:
                i = self._head(data, i)
            else:
                i = self._line(data, i)
        if i < end:
            self._forward(data[i:])

    def _head(self, data: bytes, i: int) -> int:
        if self.timer is None:
            self._arm()
        if not self.pending:
            start = i
            while i < len(data) and data[i] in b"\r\n":  # empty lines before a request line are allowed
                i += 1
            if i > start:
                self._forward(data[start:i])
            if i == len(data):
                return i
        searched = max(0, len(self.pending) - 3)
        self.pending += data[i:]
        found = self.pending.find(b"\r\n\r\n", searched)
        taken = len(data) - i if found < 0 else found + 4 - (len(self.pending) - (len(data) - i))
        piece = data[i:i + taken]
        if self.in_request_line:
            newline = piece.find(b"\n")
            line = piece if newline < 0 else piece[:newline]
            if not line.isascii():
                piece = _HIGH.sub(_percent, line) + piece[len(line):]
            self.in_request_line = newline < 0
        if found < 0:
            if len(self.pending) > HEAD_LIMIT:
                self._close()
                return len(data)
            self._forward(piece)
            return len(data)
        head = bytes(self.pending[:found + 4])
        self.pending.clear()
        self.in_request_line = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.state, self.remaining = _body_framing(head)
        if self.state == _PASS:
            self._arm()
        self._forward(piece)
        return i + taken

    def _line(self, data: bytes, i: int) -> int:
        """A chunk-size line, or the trailer section that ends a chunked body."""
        self.pending += data[i:]
        if self.state == _CHUNK_SIZE:
            found = self.pending.find(b"\n")
            done = found + 1
        elif self.pending.startswith(b"\r\n"):
            found = done = 2
        else:
            found = self.pending.find(b"\r\n\r\n")
            done = found + 4
        if found < 0:
            self._forward(data[i:])
            if len(self.pending) > _LINE_LIMIT:
                self._pass()
            return len(data)
        taken = done - (len(self.pending) - (len(data) - i))
        if self.state == _CHUNK_SIZE:
            size = bytes(self.pending[:found]).split(b";")[0].strip()
            if not size or not set(size) <= _HEX:
                self.pending.clear()
                self._pass()
                return i
            self.remaining = int(size, 16)
            self.state = _CHUNK_DATA if self.remaining else _TRAILERS
        else:
            self.state = _HEAD
        self.pending.clear()
        self._forward(data[i:i + taken])
        return i + taken

    def _forward(self, data: bytes) -> None:
        if data and self.transport is not None and not self.transport.is_closing():
            self.inner.data_received(data)

    def _pass(self) -> None:
        self.state = _PASS
        self._arm()

    def _arm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_later(self.head_timeout_s, self._close)

    def _close(self) -> None:
        self.timer = None
        if self.transport is not None:
            self.transport.close()
