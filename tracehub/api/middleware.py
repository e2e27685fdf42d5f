"""The ASGI middleware of both HTTP listeners: the cap on concurrent requests, and the headers every
answer carries.

The cap counts requests being served, not connections: an idle keep-alive socket takes no slot.
Past it a request is answered at once, unread, the way its endpoint answers overload: OTLP paths
with 503, Retry-After and a google.rpc.Status in the request's encoding, the rest with
problem+json. The answer keeps the connection open, so uvicorn reads and discards the body the
client is still sending instead of resetting the connection under it.

Pure ASGI, not BaseHTTPMiddleware: it is on the ingest path, where it costs a counter, one wrapped
`send` and one header list a request.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tracehub.api.errors import problem
from tracehub.collector.errors import unavailable
from tracehub.collector.http import JSON, error_response

NOSNIFF = ((b"x-content-type-options", b"nosniff"),)
NO_STORE = ((b"cache-control", b"no-store"),)
OTLP_PATHS = frozenset({"/v1/traces", "/v1/logs"})
RETRY_AFTER_S = 1


class Guard:
    """Caps concurrent requests at `max_requests` and adds `headers` to every answer (a
    cache-control the endpoint set itself is kept)."""

    def __init__(self, app: ASGIApp, max_requests: int,
                 headers: tuple[tuple[bytes, bytes], ...] = NOSNIFF + NO_STORE) -> None:
        self.app = app
        self.max_requests = max_requests
        self.headers = headers
        self.keeps_cache_control = any(name == b"cache-control" for name, _ in headers)
        self.active = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                if self.keeps_cache_control and any(name.lower() == b"cache-control" for name, _ in headers):
                    headers += [h for h in self.headers if h[0] != b"cache-control"]
                else:
                    headers += self.headers
                message["headers"] = headers
            await send(message)

        if self.active >= self.max_requests:
            await self._refuse(scope, receive, send_with_headers)
            return
        self.active += 1
        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            self.active -= 1

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"the server is serving {self.max_requests} requests at once, retry later"
        if scope["path"] in OTLP_PATHS:
            content_type = dict(scope["headers"]).get(b"content-type", b"").split(b";")[0].strip().lower()
            codec = "json" if content_type == JSON.encode() else "protobuf"
            response = error_response(unavailable(message, RETRY_AFTER_S), codec)
        else:
            response = problem(503, message, headers={"retry-after": str(RETRY_AFTER_S)})
        await response(scope, receive, send)
