"""Ingest errors, and the one place they become HTTP and gRPC status codes.

Each error says whether the client should retry: permanent errors (bad body, bad key, data the
database refuses) must not be retried, transient ones (overload, shutting down, a database that
cannot be reached) carry a retry delay.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import grpc

from tracehub.store import faults


@dataclass
class IngestError(Exception):
    message: str
    http_status: int = 400
    grpc_code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT
    retry_after_s: float | None = None

    def __str__(self) -> str:
        return self.message

    def retry_headers(self) -> dict[str, str] | None:
        """HTTP's Retry-After, which counts whole seconds."""
        return {"retry-after": str(max(1, math.ceil(self.retry_after_s)))} if self.retry_after_s else None


def invalid(message: str) -> IngestError:
    return IngestError(message)


def unauthenticated(message: str = "missing or unknown API key (send x-api-key or Authorization: Bearer)",
                    ) -> IngestError:
    return IngestError(message, 401, grpc.StatusCode.UNAUTHENTICATED)


def too_large(limit: int) -> IngestError:
    return IngestError(f"request body exceeds {limit} bytes after decompression",
                       413, grpc.StatusCode.RESOURCE_EXHAUSTED)


def unsupported_media_type(content_type: str) -> IngestError:
    return IngestError(
        f"unsupported content type {content_type!r}: use application/x-protobuf or application/json",
        415, grpc.StatusCode.INVALID_ARGUMENT)


def overloaded(retry_after_s: float = 1.0) -> IngestError:
    return IngestError("ingest queue is full, retry later", 429,
                       grpc.StatusCode.RESOURCE_EXHAUSTED, retry_after_s)


def unavailable(message: str, retry_after_s: float = 2.0) -> IngestError:
    return IngestError(message, 503, grpc.StatusCode.UNAVAILABLE, retry_after_s)


def from_store(fault: faults.Fault) -> IngestError:
    """A database failure (`tracehub.store.faults`): retryable or not, never the driver's text."""
    if isinstance(fault, faults.Unavailable):
        return unavailable(str(fault), faults.RETRY_AFTER_S)
    return invalid(str(fault))
