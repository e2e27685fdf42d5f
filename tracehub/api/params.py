"""Query-string and id parsing shared by the API routes; bad values become problem+json 422.

Each parameter is declared once as a `Param` (`query_int("page", ...)`, `path_id("trace_id", 32)`):
the declaration gives both the reader a route calls and the parameter's entry in the OpenAPI
document, so what the server takes is what the document says.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from starlette.datastructures import QueryParams
from starlette.requests import Request

from tracehub.api.errors import ProblemError, field_error
from tracehub.api.schemas import _SPAN_ID, TIME, TRACE_ID
from tracehub.collector import otlp

MAX_PAGE_SIZE = 200
MAX_PAGE = 1_000_000
# Times are stored as signed 64-bit nanoseconds since the epoch, as OTLP's are (unsigned there).
MIN_TIME_NS, MAX_TIME_NS = 0, otlp.MAX_TIME_NS
TIME_RANGE = "1970-01-01T00:00:00Z .. 2262-04-11T23:47:16Z"

_HEX_ID = {n: re.compile(f"[0-9a-fA-F]{{{n}}}") for n in (16, 32)}
_UUID = re.compile("[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_INTEGER = re.compile("[+-]?[0-9]{1,19}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TIME = re.compile(TIME["pattern"])


def normalize_id(value: str, hex_len: int, path: str) -> str:
    """A trace / span id as stored: lowercase hex. `hex_len` hex characters (OTLP's 16 and 8 bytes)
    or a UUID, stored without its dashes, so a span id may also be the 32 hex characters a UUID is
    stored as; never all zero, which OTLP means as "no id"."""
    if _HEX_ID[hex_len].fullmatch(value) or _HEX_ID[32].fullmatch(value):
        raw = value.lower()
    elif _UUID.fullmatch(value):
        raw = value.replace("-", "").lower()
    else:
        what = f"{hex_len} hex characters or a UUID" if hex_len == 32 else "16 or 32 hex characters or a UUID"
        raise field_error(path, f"expected {what}, got {value!r}")
    if raw.count("0") == len(raw):
        raise field_error(path, "must not be all zero")
    return raw


def iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    seconds, rest = divmod(ns, 1_000_000_000)
    return f"{_utc_second(seconds)}.{rest // 1000:06d}Z"


@functools.lru_cache(maxsize=4096)  # the spans of a trace, the traces of a page share seconds
def _utc_second(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))  # a third of datetime's cost


def parse_time_ns(value: str, path: str) -> int:
    """An RFC 3339 time (without a zone: UTC) as nanoseconds, within the range they are stored in.
    The documented pattern decides the form, so the server takes exactly what the document says."""
    if not _TIME.fullmatch(value):
        raise field_error(path, f"expected {TIME['title']}, got {value!r}")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        delta = parsed - _EPOCH
        ns = (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
    except OverflowError:  # year 1 or 9999 with an offset that takes it out of datetime's range
        ns = MIN_TIME_NS - 1
    if not MIN_TIME_NS <= ns <= MAX_TIME_NS:
        raise field_error(path, f"must be within {TIME_RANGE} (UTC), got {value!r}")
    return ns


def _one(q: QueryParams, name: str) -> str | None:
    """A parameter's value; given twice it is refused rather than one of the two read."""
    values = q.getlist(name)
    if len(values) > 1:
        raise field_error(f"query.{name}", "given more than once")
    return values[0] if values else None


def int_param(q: QueryParams, name: str, default: int, lo: int, hi: int) -> int:
    raw = _one(q, name)
    if raw is None or raw == "":
        return default
    if not _INTEGER.fullmatch(raw):  # int() would also take "1_0", " 7" and other scripts' digits
        raise field_error(f"query.{name}", f"expected an integer, got {raw!r}")
    value = int(raw)
    if not lo <= value <= hi:
        raise field_error(f"query.{name}", f"must be between {lo} and {hi}")
    return value


def bool_param(q: QueryParams, name: str) -> bool | None:
    raw = _one(q, name)
    if raw is None or raw == "":
        return None
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise field_error(f"query.{name}", f"expected true or false, got {raw!r}")


def time_param(q: QueryParams, name: str) -> int | None:
    raw = _one(q, name)
    return parse_time_ns(raw, f"query.{name}") if raw else None


def str_param(q: QueryParams, name: str, choices: Sequence[str] = ()) -> str | None:
    raw = _one(q, name)
    if not raw:
        return None
    if "\x00" in raw:  # PostgreSQL refuses NUL in text, and SQLite's LIKE stops at it
        raise field_error(f"query.{name}", "must not contain NUL")
    if choices and raw not in choices:
        raise field_error(f"query.{name}", f"expected one of {', '.join(choices)}, got {raw!r}")
    return raw


def only_params(q: QueryParams, names: frozenset[str]) -> None:
    """422 for each parameter the endpoint does not take: a misspelt one (`last_hour=3`) would
    otherwise be answered as if it had not been sent."""
    unknown = sorted(set(q.keys()) - names)
    if unknown:
        takes = ", ".join(sorted(names))
        errors = [{"path": f"query.{name}", "message": f"unknown parameter (this endpoint takes {takes})"}
                  for name in unknown]
        raise ProblemError(422, f"{errors[0]['path']}: {errors[0]['message']}", errors)


def page_body(items: list[Any], page: int, page_size: int, total: int) -> dict[str, Any]:
    return {"items": items, "page": page, "page_size": page_size, "total": total}


# -- Declared parameters ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Param:
    """A query or path parameter: its OpenAPI schema and description, and `read`, which takes its
    value from a request (ProblemError 422 naming `query.<name>` / `path.<name>` when bad)."""

    name: str
    where: Literal["query", "path"]
    schema: dict[str, Any]
    description: str
    read: Callable[[Request], Any]
    required: bool = False

    def openapi(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": self.name, "in": self.where, "required": self.required or self.where == "path"}
        if self.where == "query" and not self.required:
            entry["allowEmptyValue"] = True  # taken as left out, as HTML forms send unset fields
        return {**entry, "schema": self.schema, "description": self.description}


def query_int(name: str, description: str, default: int, lo: int, hi: int) -> Param:
    return Param(name, "query", {"type": "integer", "minimum": lo, "maximum": hi, "default": default},
                 description, lambda r: int_param(r.query_params, name, default, lo, hi))


def required_int(name: str, description: str, lo: int, hi: int) -> Param:
    """Left out or empty, 422 `is required`."""
    def read(r: Request) -> int:
        if not r.query_params.get(name):
            raise field_error(f"query.{name}", "is required")
        return int_param(r.query_params, name, 0, lo, hi)

    return Param(name, "query", {"type": "integer", "minimum": lo, "maximum": hi}, description, read, required=True)


def query_bool(name: str, description: str) -> Param:
    return Param(name, "query", {"type": "boolean"}, description, lambda r: bool_param(r.query_params, name))


_TEXT = {"type": "string", "pattern": "^[^\\x00]*$", "description": "Text without NUL."}


def query_text(name: str, description: str, choices: Sequence[str] = ()) -> Param:
    schema = {"enum": list(choices)} if choices else _TEXT
    return Param(name, "query", schema, description, lambda r: str_param(r.query_params, name, choices))


def query_time(name: str, description: str) -> Param:
    return Param(name, "query", TIME, description, lambda r: time_param(r.query_params, name))


def path_id(name: str, hex_len: int) -> Param:
    """A trace, span or case id in the path, as stored (`normalize_id`)."""
    schema, description = ((TRACE_ID, "32 hex characters or a UUID.") if hex_len == 32
                           else (_SPAN_ID, "16 or 32 hex characters or a UUID."))
    return Param(name, "path", schema, description,
                 lambda r: normalize_id(r.path_params[name], hex_len, f"path.{name}"))


PAGE = query_int("page", "Page number, from 1.", 1, 1, MAX_PAGE)
PAGE_SIZE = query_int("page_size", "Items per page.", 50, 1, MAX_PAGE_SIZE)
