"""JSON calls to the hub's REST API (``/api/v1/evals``, ``/api/v1/ingest/langgraph-runs``).

Spans never go through here: they travel as OTLP through the OpenTelemetry exporter. This module
only POSTs the few JSON documents that have no OTel equivalent, with retries and exponential
backoff on connection errors, 429 and 5xx (honouring ``Retry-After``). Callers put an
``idempotency_key`` in every body so a retry the server already applied is a no-op.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class HubAPIError(RuntimeError):
    """The hub refused a request, or kept failing until the retries ran out."""

    def __init__(self, message: str, status_code: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body


def _retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


class HubAPI:
    """A small retrying JSON client bound to one hub and API key."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float = 10.0,
        max_attempts: int = 5,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = httpx.Client(
            base_url=base_url,
            headers={"x-api-key": api_key, "user-agent": "llm-trace-hub-sdk"},
            timeout=timeout_s,
            transport=transport,
        )
        self._max_attempts = max(1, max_attempts)
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._sleep = sleep

    def post_json(self, path: str, body: Mapping[str, Any]) -> Any:
        """POST ``body``; return the decoded answer, raise :class:`HubAPIError` when it fails."""
        last_error: str = "no attempt made"
        last_status: int | None = None
        last_body: Any = None
        for attempt in range(1, self._max_attempts + 1):
            delay: float | None = None
            try:
                response = self._client.post(path, json=dict(body))
            except httpx.TransportError as exc:  # refused, reset, timeout: worth retrying
                last_error, last_status, last_body = f"{type(exc).__name__}: {exc}", None, None
            else:
                if response.status_code < 400:
                    return _body(response)
                last_status, last_body = response.status_code, _body(response)
                last_error = f"HTTP {response.status_code} from POST {path}"
                if response.status_code not in _RETRY_STATUS:
                    raise HubAPIError(last_error, last_status, last_body)
                delay = _retry_after_seconds(response)
            if attempt == self._max_attempts:
                break
            if delay is None:
                backoff = self._backoff_initial_s * (2 ** (attempt - 1))
                delay = min(self._backoff_max_s, backoff) * (0.5 + random.random() / 2)
            self._sleep(min(delay, self._backoff_max_s))
        raise HubAPIError(
            f"{last_error} (gave up after {self._max_attempts} attempts)", last_status, last_body
        )

    def close(self) -> None:
        self._client.close()
