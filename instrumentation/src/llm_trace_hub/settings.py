"""Settings of the client distribution, read once from the environment.

Environment variables (every one optional):

``LLM_TRACE_HUB_BASE_URL``
    Base URL of the hub, default ``http://localhost:8000``. Spans go to ``{base}/v1/traces``.
``LLM_TRACE_HUB_API_KEY``
    Project API key sent as ``x-api-key``, default ``dev-key``.
``LLM_TRACE_HUB_CAPTURE_CONTENT``
    ``true`` (default) records prompts, completions, tool arguments/results and graph states;
    ``false`` keeps only structure, timings, models and token counts.
``LLM_TRACE_HUB_MAX_CONTENT_BYTES``
    Upper bound in UTF-8 bytes of any one captured value (default 16384); longer values are cut
    on a character boundary and end with ``…[truncated]``.

Components get a :class:`ContentSettings` passed in; nothing deeper reads the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_BASE_URL = "http://localhost:8000"
DEFAULT_API_KEY = "dev-key"
DEFAULT_MAX_CONTENT_BYTES = 16384
_FALSE_WORDS = frozenset({"0", "false", "no", "off", "n", "f"})


def _parse_bool(value: str | None, default: bool) -> bool:
    if value is None or not value.strip():
        return default
    return value.strip().lower() not in _FALSE_WORDS


def _parse_positive_int(value: str | None, default: int) -> int:
    try:
        parsed = int(value) if value is not None else default
    except ValueError:
        return default
    return parsed if parsed > 0 else default


@dataclass(frozen=True, slots=True)
class ContentSettings:
    """Whether content is captured, and how big one captured value may get."""

    capture: bool = True
    max_bytes: int = DEFAULT_MAX_CONTENT_BYTES

    @classmethod
    def from_env(
        cls,
        capture: bool | None = None,
        max_bytes: int | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> ContentSettings:
        """Explicit arguments win over the environment, which wins over the defaults."""
        env = os.environ if environ is None else environ
        return cls(
            capture=(
                capture
                if capture is not None
                else _parse_bool(env.get("LLM_TRACE_HUB_CAPTURE_CONTENT"), True)
            ),
            max_bytes=(
                max_bytes
                if max_bytes is not None and max_bytes > 0
                else _parse_positive_int(
                    env.get("LLM_TRACE_HUB_MAX_CONTENT_BYTES"), DEFAULT_MAX_CONTENT_BYTES
                )
            ),
        )


@dataclass(frozen=True, slots=True)
class HubSettings:
    """Where the hub is and how to authenticate to it."""

    base_url: str = DEFAULT_BASE_URL
    api_key: str = DEFAULT_API_KEY

    @classmethod
    def from_env(
        cls,
        base_url: str | None = None,
        api_key: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> HubSettings:
        env = os.environ if environ is None else environ
        url = base_url or env.get("LLM_TRACE_HUB_BASE_URL") or DEFAULT_BASE_URL
        return cls(
            base_url=url.rstrip("/"),
            api_key=api_key or env.get("LLM_TRACE_HUB_API_KEY") or DEFAULT_API_KEY,
        )

    @property
    def traces_endpoint(self) -> str:
        return f"{self.base_url}/v1/traces"
