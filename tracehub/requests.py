"""What every HTTP endpoint that takes a body or a key reads from its request: the API key
(`presented_key`, or HTTP Basic's pair where an endpoint takes it: `basic_credentials`), the
declared body size (`declared_length`) and the body itself, bounded and decompressed (`read_body`).

Shared by the OTLP/HTTP receiver and the JSON API, each of which turns the `IngestError`s raised
here into its own answer. It knows no receiver and no route.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from typing import Any, Protocol

from starlette.requests import Request

from tracehub.collector.errors import IngestError, invalid, too_large


class Held(Protocol):
    """Memory held for a request while its body is read (`admission.Reservation`)."""

    def resize(self, body_bytes: int) -> None: ...


def presented_key(headers: Any) -> str | None:
    """The API key from `x-api-key` or `Authorization: Bearer` (OTLP exporters can send either)."""
    key = headers.get("x-api-key")
    if key:
        return str(key)
    auth = headers.get("authorization") or ""
    if auth[:7].lower() == "bearer ":
        return str(auth[7:].strip())
    return None


def basic_credentials(headers: Any) -> tuple[str, str] | None:
    """HTTP Basic's (user, password) from `Authorization: Basic`; None without one, or when it does
    not decode to `user:password`."""
    auth = headers.get("authorization") or ""
    if auth[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(auth[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon else None


def declared_length(request: Request) -> int:
    """The body size the client declares (Content-Length), 0 if it declares none."""
    declared = request.headers.get("content-length", "")
    return int(declared) if declared.isdigit() else 0


async def read_body(request: Request, limit: int, reservation: Held | None = None) -> bytes:
    """The request body, decompressed, never holding more than `limit` bytes of it; what it holds is
    reserved in `reservation` (the admission's budget) as it arrives."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        inflater: Any = zlib.decompressobj(wbits=31)
    elif encoding == "deflate":
        inflater = zlib.decompressobj()
    elif encoding in ("identity", ""):
        inflater = None
    else:
        raise IngestError(f"unsupported content-encoding {encoding!r}: use gzip or none", 415)
    if declared_length(request) > limit:
        raise too_large(limit)
    out = bytearray()
    raw = 0
    async for chunk in request.stream():
        raw += len(chunk)
        if raw > limit:
            raise too_large(limit)
        if inflater is None:
            out += chunk
        else:
            try:
                # max_length bounds the output of a small body that inflates hugely.
                out += inflater.decompress(chunk, limit + 1 - len(out))
            except zlib.error as exc:
                raise invalid(f"cannot decompress body: {exc}") from None
            if inflater.unconsumed_tail:
                raise too_large(limit)
        if len(out) > limit:
            raise too_large(limit)
        if reservation is not None:
            reservation.resize(len(out))
    if inflater is not None and not inflater.eof and out:
        raise invalid("compressed body is truncated")
    return bytes(out)
