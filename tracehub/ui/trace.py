"""One trace (`/traces/{trace_id}`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

if TYPE_CHECKING:
    from tracehub.ui.app import Ui


class Pages:
    def __init__(self, ui: Ui) -> None:
        self.ui = ui

    def routes(self) -> list[Route]:
        return [Route("/traces/{trace_id}", self.index, methods=["GET"])]

    async def index(self, request: Request) -> Response:
        viewer = await self.ui.viewer(request)
        return self.ui.page(request, viewer, "trace.html", {})
