"""JSON answers encoded with orjson: a 200-trace page took ~40 ms in the standard library's encoder."""

from __future__ import annotations

from typing import Any

import orjson
from starlette import responses


class JSONResponse(responses.JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
