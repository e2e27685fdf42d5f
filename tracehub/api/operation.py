"""One API operation declared once: method, path, summary, parameters, request body and answers.

A route reads its parameters through its operation (`Operation.args`) and the OpenAPI document
(`tracehub.api.openapi`) is rendered from the same operations (`Operation.openapi`), so the
document cannot name a parameter the route does not read, or read one it does not name. Each
route module keeps a table of its operations beside its handlers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from tracehub.api.answers import PROBLEM, Schema
from tracehub.api.params import Param, only_params


def json_answer(schema: Schema, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def request_body(schema: Schema, description: str | None = None, required: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"required": required, "content": {"application/json": {"schema": schema}}}
    return {**body, "description": description} if description else body


PROBLEM_ANSWER = {"description": "Error (RFC 9457 problem details)",
                  "content": {"application/problem+json": {"schema": PROBLEM}}}
AUTH_ERRORS = {"401": PROBLEM_ANSWER, "422": PROBLEM_ANSWER}
# Reads answer 503 with Retry-After while the database cannot be reached; writes also when overloaded.
READ_ERRORS = {**AUTH_ERRORS, "503": PROBLEM_ANSWER}
BODY_ERRORS = {"400": PROBLEM_ANSWER, "413": PROBLEM_ANSWER, "415": PROBLEM_ANSWER}
WRITE_ERRORS = {**BODY_ERRORS, "409": PROBLEM_ANSWER, **AUTH_ERRORS, "429": PROBLEM_ANSWER, "503": PROBLEM_ANSWER}
NOT_FOUND = {"404": PROBLEM_ANSWER}


@dataclass(frozen=True)
class Operation:
    """`params` are read path ones first, then query ones in their order; the first bad one is
    the 422. `refuse_unknown`: a query parameter not in `params` is 422 too (a misspelt one would
    otherwise be answered as if not sent); off for the routes that never read their query."""

    method: str
    path: str
    summary: str
    tag: str
    responses: dict[str, Any]
    params: tuple[Param, ...] = ()
    body: dict[str, Any] | None = None
    description: str | None = None
    refuse_unknown: bool = True
    public: bool = False  # no API key needed

    @property
    def query_names(self) -> frozenset[str]:
        return frozenset(p.name for p in self.params if p.where == "query")

    def args(self, request: Request) -> dict[str, Any]:
        """The parameters' values by name (a query parameter left out: its default or None)."""
        values = {p.name: p.read(request) for p in self.params if p.where == "path"}
        if self.refuse_unknown:
            only_params(request.query_params, self.query_names)
        values.update((p.name, p.read(request)) for p in self.params if p.where == "query")
        return values

    def openapi(self) -> dict[str, Any]:
        op: dict[str, Any] = {"summary": self.summary, "tags": [self.tag]}
        if self.description:
            op["description"] = self.description
        if self.public:
            op["security"] = []
        if self.params:
            op["parameters"] = [p.openapi() for p in self.params]
        if self.body is not None:
            op["requestBody"] = self.body
        return {**op, "responses": self.responses}


def paths(operations: list[Operation]) -> dict[str, dict[str, Any]]:
    """The OpenAPI `paths` object of these operations."""
    out: dict[str, dict[str, Any]] = {}
    for op in operations:
        out.setdefault(op.path, {})[op.method.lower()] = op.openapi()
    return out
