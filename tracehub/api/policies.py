"""`/api/v1/policies`: create policies and versions (JSON or YAML), list them, activate, shadow.

A body is validated twice: its envelope (name, description, effective_from, active) here, its
`definition` by the DSL (`tracehub.decision.policy`), whose error paths come back under
`definition.` (`definition.rules[0].when.any[1].op`). A definition the DSL refuses is never
stored, so it can never become active. Storage rules (versions, activation in force, shadow) are
`tracehub.store.policies`'s; writes run there in short transactions off the event loop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import Route

from tracehub.api import answers
from tracehub.api.auth import project_of
from tracehub.api.errors import ProblemError
from tracehub.api.operation import BODY_ERRORS, NOT_FOUND, PROBLEM_ANSWER, READ_ERRORS, Operation, json_answer
from tracehub.api.params import PAGE, PAGE_SIZE, Param, iso, page_body, parse_time_ns, query_int, required_int
from tracehub.api.responses import JSONResponse
from tracehub.api.schemas import TIME, json_path, limit_errors
from tracehub.collector.errors import IngestError
from tracehub.decision import backtest
from tracehub.decision.engine import NO_POLICY
from tracehub.decision.policy import PolicyDefinition, PolicyError, SourceError, explain_error, load_source
from tracehub.decision.policy import parse_policy
from tracehub.decision.policy import schema as policy_schema
from tracehub.hub import Hub
from tracehub.requests import read_body
from tracehub.store import policies as store
from tracehub.store.completion import completion

MAX_BODY_BYTES = 1024 * 1024
MAX_VERSION = 2**31 - 1
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")

POLICY_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["name", "definition"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^(?![0-9]+$)[^\\x00/]+$",
                 "title": "a name without NUL or '/', not only digits",
                 "description": "The policy's name, unique in the project. A body with an existing name "
                                "adds a version to that policy. Not only digits: a policy is addressed "
                                "by its numeric id or its name."},
        "description": {"type": ["string", "null"], "maxLength": 2000, "pattern": "^[^\\x00]*$"},
        "effective_from": {**TIME, "type": ["string", "null"],
                           "description": "When this version takes effect once activated; the version "
                                          "in force stays in force until then. " + TIME["description"]},
        "active": {"type": "boolean", "default": False,
                   "description": "Activate the new version at once (from effective_from, if later)."},
        "definition": {"$ref": "#/components/schemas/PolicyDefinition"},
    },
}
_ENVELOPE = Draft202012Validator({**POLICY_BODY, "properties": {**POLICY_BODY["properties"], "definition": {}}})


@dataclass(frozen=True)
class PolicyRequest:
    """A validated POST body (or `tracehub policy apply` file)."""

    name: str
    definition: dict[str, Any]
    description: str | None
    effective_from_ns: int | None
    active: bool
    source_format: str
    source_text: str | None


def parse_request(body: Any, source_format: str = "json", source_text: str | None = None) -> PolicyRequest:
    """The body as a request, or ProblemError 422 with every bad path (the DSL's under `definition.`)."""
    errors = [{"path": json_path(parts), "message": message}
              for e in _ENVELOPE.iter_errors(body) for parts, message in explain_error(e)]
    errors += [{"path": e["path"], "message": e["message"]} for e in limit_errors(body)]
    if not errors:
        try:
            parse_policy(body["definition"])
        except PolicyError as exc:
            errors = [{"path": _under_definition(e["path"]), "message": e["message"]} for e in exc.errors]
    if errors:
        errors.sort(key=lambda e: e["path"])
        raise ProblemError(422, f"{errors[0]['path']}: {errors[0]['message']}", errors)
    effective = body.get("effective_from")
    return PolicyRequest(
        name=body["name"], definition=body["definition"], description=body.get("description"),
        effective_from_ns=parse_time_ns(effective, "effective_from") if effective else None,
        active=bool(body.get("active", False)), source_format=source_format, source_text=source_text)


def _under_definition(path: str) -> str:
    return "definition" if path == "definition" else f"definition.{path}"


def policy_view(row: dict[str, Any]) -> dict[str, Any]:
    return {"policy_id": row["id"], "name": row["name"], "description": row["description"],
            "active_version": row["active_version"], "shadow_version": row["shadow_version"],
            "latest_version": row.get("latest_version"), "in_force_version": row.get("in_force_version"),
            "created_at": iso(row["created_ns"]), "updated_at": iso(row["updated_ns"])}


def version_view(row: dict[str, Any]) -> dict[str, Any]:
    return {"policy_id": row["policy_id"], "version": row["version"], "definition": row["definition"],
            "definition_hash": row["definition_hash"], "description": row["description"],
            "source_format": row["source_format"], "source_text": row["source_text"],
            "effective_from": iso(row["effective_from_ns"]), "created_at": iso(row["created_ns"])}


def activation_view(activation: dict[str, Any] | None, now_ns: int) -> dict[str, Any] | None:
    if activation is None:
        return None
    return {"version": activation["version"], "activated_at": iso(activation["created_ns"]),
            "effective_at": iso(activation["effective_ns"]), "in_force": activation["effective_ns"] <= now_ns}


def _checked(definition: Any, status: int = 409) -> PolicyDefinition:
    """A stored definition must still parse under the current DSL to be activated or shadowed."""
    try:
        return parse_policy(definition)
    except PolicyError as exc:
        errors = [{"path": _under_definition(e["path"]), "message": e["message"]} for e in exc.errors]
        raise ProblemError(status, "this version does not validate under the current policy schema: "
                                   f"{errors[0]['path']}: {errors[0]['message']}", errors) from None


def _not_found(exc: store.PolicyNotFound) -> ProblemError:
    return ProblemError(404, str(exc))


def policy_of(conn: Any, project_id: int, ref: str) -> dict[str, Any]:
    """A policy by numeric id or name; store.PolicyNotFound otherwise."""
    found = store.find_policy(conn, project_id, ref)
    if found is None:
        raise store.PolicyNotFound(f"no policy {ref!r} (give its numeric id or its name)")
    return found


# What the routes (and the web UI's policy pages) do, each in the caller's connection: reads in a
# read connection, writes inside `store.write`. ProblemError or store.PolicyNotFound when refused.

def create_version(conn: Any, project_id: int, req: PolicyRequest, now: int) -> dict[str, Any]:
    """Store the request's definition as a version (activated if asked): {"policy" (summary),
    "version", "unchanged", "activation"}."""
    made = store.create_version(
        conn, project_id, req.name, req.definition, description=req.description,
        source_format=req.source_format, source_text=req.source_text,
        effective_from_ns=req.effective_from_ns, now_ns=now)
    made["activation"] = None
    if req.active:
        done = store.activate(conn, project_id, made["policy"]["id"], made["version"]["version"], now)
        made["policy"], made["activation"] = done["policy"], done["activation"]
        made["unchanged"] = made["unchanged"] and done["unchanged"]
    made["policy"] = store.summary(conn, project_id, made["policy"]["id"], now)
    return made


def policy_detail(conn: Any, project_id: int, ref: str, now: int) -> dict[str, Any]:
    """{"policy" (summary), "active", "shadow", "in_force"}: the version rows those name, or None."""
    policy = policy_of(conn, project_id, ref)
    listed = store.summary(conn, project_id, policy["id"], now)
    pick = {name: store.get_version(conn, project_id, policy["id"], listed[column])
            if listed[column] is not None else None
            for name, column in (("active", "active_version"), ("shadow", "shadow_version"),
                                 ("in_force", "in_force_version"))}
    return {"policy": listed, **pick}


def policy_versions(conn: Any, project_id: int, ref: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The policy row and its versions, newest first."""
    policy = policy_of(conn, project_id, ref)
    return policy, store.versions(conn, project_id, policy["id"])


def activate_version(conn: Any, project_id: int, ref: str, version: int, now: int) -> dict[str, Any]:
    """Activate a version that still validates (409 otherwise): store.activate's answer, with
    the policy's summary."""
    policy = policy_of(conn, project_id, ref)
    _checked(store.get_version(conn, project_id, policy["id"], version)["definition"])
    done = store.activate(conn, project_id, policy["id"], version, now)
    return {**done, "policy": store.summary(conn, project_id, policy["id"], now)}


def shadow_version(conn: Any, project_id: int, ref: str, version: int | None) -> dict[str, Any]:
    """Mark a version that still validates as the shadow one, or clear it (None): the summary."""
    policy = policy_of(conn, project_id, ref)
    if version is not None:
        _checked(store.get_version(conn, project_id, policy["id"], version)["definition"])
    store.set_shadow(conn, project_id, policy["id"], version)
    return store.summary(conn, project_id, policy["id"], time.time_ns())


def run_backtest(conn: Any, project_id: int, ref: str, version: int, last_hours: int, now: int,
                 grace_ns: int) -> dict[str, Any]:
    """Replay `version` over the last hours' traces against the version in force (the backtest
    answer but its elapsed_ms)."""
    start = now - last_hours * 3600 * 1_000_000_000
    policy = policy_of(conn, project_id, ref)
    candidate = _checked(store.get_version(conn, project_id, policy["id"], version)["definition"])
    in_force = store.active_policy(conn, project_id, now)
    baseline = _checked(in_force["definition"]) if in_force is not None else NO_POLICY
    outcome = backtest.run(conn, project_id, candidate, baseline, start, now, completion(now, grace_ns))
    return {"policy": policy["name"], "policy_id": policy["id"], "version": version,
            "baseline": {"policy": in_force["policy_name"], "version": in_force["version"]}
            if in_force is not None else None,
            "window": {"start": iso(start), "end": iso(now)}, **outcome.view()}


# -- Operations ---------------------------------------------------------------------------------------

POLICY_REF = Param("policy", "path", {"type": "string", "minLength": 1, "pattern": "^[^/]+$"},
                   "The policy's numeric id or its name.", lambda r: r.path_params["policy"])
VERSION = required_int("version", "Version number.", 1, MAX_VERSION)
_INVALID = {**PROBLEM_ANSWER, "description": "The version does not validate under the current policy schema "
                                             "(errors name the paths); nothing changed."}
_SOURCE = {"schema": {"$ref": "#/components/schemas/PolicyBody"}}
SCHEMA = Operation(
    "GET", "/api/v1/policies/schema", "The policy DSL's JSON Schema (2020-12), as shipped", "policies",
    {"200": json_answer({"type": "object", "additionalProperties": True,
                         "description": "The schema the PolicyDefinition component shows."}, "The JSON Schema."),
     **READ_ERRORS})
CREATE = Operation(
    "POST", "/api/v1/policies", "Create a policy, or a new immutable version of the policy with this name",
    "policies",
    {"201": json_answer(answers.version_answer(answers.nullable(answers.ACTIVATION)), "A new version (and policy)."),
     "200": json_answer(answers.version_answer(answers.nullable(answers.ACTIVATION)), "Unchanged: the newest version."),
     **BODY_ERRORS, **READ_ERRORS},
    body={"required": True, "content": {"application/json": _SOURCE, "application/yaml": _SOURCE}},
    description=f"JSON or YAML (the same document), at most {MAX_BODY_BYTES // 1024} KiB. A definition the DSL "
                "refuses is 422 with its paths under `definition.` and is not stored. The same definition and "
                "effective time as the newest version answer that version, unchanged (200).")
INDEX = Operation(
    "GET", "/api/v1/policies", "List policies with their active, shadow, latest and in-force versions", "policies",
    {"200": json_answer(answers.page(answers.POLICY), "A page."), **READ_ERRORS}, params=(PAGE, PAGE_SIZE))
DETAIL = Operation(
    "GET", "/api/v1/policies/{policy}", "A policy with its active, shadow and in-force versions", "policies",
    {"200": json_answer(answers.POLICY_DETAIL, "The policy."), **NOT_FOUND, **READ_ERRORS}, params=(POLICY_REF,))
VERSIONS = Operation(
    "GET", "/api/v1/policies/{policy}/versions", "A policy's versions, newest first", "policies",
    {"200": json_answer(answers.page(answers.LISTED_VERSION), "A page."), **NOT_FOUND, **READ_ERRORS},
    params=(POLICY_REF, PAGE, PAGE_SIZE))
ACTIVATE = Operation(
    "POST", "/api/v1/policies/{policy}/activate",
    "Make a version the project's active policy (from its effective_from, if later)", "policies",
    {"200": json_answer(answers.version_answer(answers.ACTIVATION), "Activated (or already)."), **NOT_FOUND,
     "409": _INVALID, **READ_ERRORS},
    params=(POLICY_REF, VERSION),
    description="One policy is active in a project: this replaces the other. Until the version's effective time "
                "the version in force stays in force.")
SHADOW = Operation(
    "POST", "/api/v1/policies/{policy}/shadow", "Make a version the policy's shadow (decides alongside, only recorded)",
    "policies", {"200": json_answer(answers.POLICY, "The policy."), **NOT_FOUND, "409": _INVALID, **READ_ERRORS},
    params=(POLICY_REF, VERSION))
UNSHADOW = Operation(
    "DELETE", "/api/v1/policies/{policy}/shadow", "Clear the policy's shadow version", "policies",
    {"200": json_answer(answers.POLICY, "The policy."), **NOT_FOUND, **READ_ERRORS}, params=(POLICY_REF,))
BACKTEST = Operation(
    "POST", "/api/v1/policies/{policy}/backtest",
    "Replay a version over the stored traces against the version in force; nothing is written", "policies",
    {"200": json_answer(answers.BACKTEST, "What would change."), **NOT_FOUND, "409": _INVALID, **READ_ERRORS},
    params=(POLICY_REF, VERSION,
            query_int("last_hours", "Hours back from now.", backtest.DEFAULT_HOURS, 1, backtest.MAX_HOURS)),
    description="Each trace that started in the last `last_hours` gets the context an automatic decision builds; "
                "the candidate version and the version in force now (none: ALLOW_ANSWER) both decide on it, "
                "without a judge. The answer counts the transitions between their actions, with up to 5 sample "
                "trace ids each.")
OPERATIONS = (CREATE, INDEX, SCHEMA, DETAIL, VERSIONS, ACTIVATE, SHADOW, UNSHADOW, BACKTEST)


class PolicyRoutes:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def routes(self) -> list[Route]:
        return [
            Route(SCHEMA.path, self.schema, methods=[SCHEMA.method]),
            # One route a path, so that a 405's Allow names every method.
            Route(INDEX.path, self.collection, methods=[INDEX.method, CREATE.method]),
            Route(DETAIL.path, self.detail, methods=[DETAIL.method]),
            Route(VERSIONS.path, self.versions, methods=[VERSIONS.method]),
            Route(ACTIVATE.path, self.activate, methods=[ACTIVATE.method]),
            Route(SHADOW.path, self.shadow, methods=[SHADOW.method, UNSHADOW.method]),
            Route(BACKTEST.path, self.backtest, methods=[BACKTEST.method]),
        ]

    async def _read(self, work: Any) -> Any:
        def run() -> Any:
            with self.hub.reads.connect() as conn:
                return work(conn)
        try:
            return await run_in_threadpool(run)
        except store.PolicyNotFound as exc:
            raise _not_found(exc) from None

    async def _write(self, work: Any) -> Any:
        try:
            return await run_in_threadpool(store.write, self.hub.engine, work)
        except store.PolicyNotFound as exc:
            raise _not_found(exc) from None

    async def collection(self, request: Request) -> JSONResponse:
        return await (self.create(request) if request.method == "POST" else self.index(request))

    async def schema(self, request: Request) -> JSONResponse:
        await project_of(request, self.hub)
        SCHEMA.args(request)
        return JSONResponse(policy_schema())

    async def create(self, request: Request) -> JSONResponse:
        project_id = await project_of(request, self.hub)
        CREATE.args(request)
        req = await _request_body(request)
        now = time.time_ns()

        made = await self._write(lambda conn: create_version(conn, project_id, req, now))
        body = {**policy_view(made["policy"]), "version": version_view(made["version"]),
                "unchanged": made["unchanged"], "activation": activation_view(made["activation"], now)}
        return JSONResponse(body, 200 if made["unchanged"] else 201)

    async def index(self, request: Request) -> JSONResponse:
        project_id = await project_of(request, self.hub)
        a = INDEX.args(request)
        page, page_size = a["page"], a["page_size"]
        rows = await self._read(lambda conn: store.list_policies(conn, project_id, time.time_ns()))
        items = [policy_view(r) for r in rows[(page - 1) * page_size: page * page_size]]
        return JSONResponse(page_body(items, page, page_size, len(rows)))

    async def detail(self, request: Request) -> JSONResponse:
        project_id = await project_of(request, self.hub)
        ref, now = DETAIL.args(request)["policy"], time.time_ns()

        found = await self._read(lambda conn: policy_detail(conn, project_id, ref, now))
        return JSONResponse({**policy_view(found["policy"]),
                             **{k: version_view(v) if v else None for k, v in found.items() if k != "policy"}})

    async def versions(self, request: Request) -> JSONResponse:
        project_id = await project_of(request, self.hub)
        a = VERSIONS.args(request)
        ref, page, page_size = a["policy"], a["page"], a["page_size"]

        policy, rows = await self._read(lambda conn: policy_versions(conn, project_id, ref))
        items = [{**version_view(r), "active": r["version"] == policy["active_version"],
                  "shadow": r["version"] == policy["shadow_version"]}
                 for r in rows[(page - 1) * page_size: page * page_size]]
        return JSONResponse(page_body(items, page, page_size, len(rows)))

    async def activate(self, request: Request) -> JSONResponse:
        project_id = await project_of(request, self.hub)
        a = ACTIVATE.args(request)
        ref, version, now = a["policy"], a["version"], time.time_ns()

        done = await self._write(lambda conn: activate_version(conn, project_id, ref, version, now))
        return JSONResponse({**policy_view(done["policy"]), "version": version_view(done["version"]),
                             "unchanged": done["unchanged"], "activation": activation_view(done["activation"], now)})

    async def shadow(self, request: Request) -> JSONResponse:
        project_id = await project_of(request, self.hub)
        a = (UNSHADOW if request.method == UNSHADOW.method else SHADOW).args(request)
        ref, version = a["policy"], a.get("version")

        return JSONResponse(policy_view(await self._write(lambda conn: shadow_version(conn, project_id, ref, version))))

    async def backtest(self, request: Request) -> JSONResponse:
        project_id = await project_of(request, self.hub)
        a = BACKTEST.args(request)
        ref, version, last_hours = a["policy"], a["version"], a["last_hours"]
        now, t0 = time.time_ns(), time.perf_counter()
        grace_ns = int(self.hub.settings.missing_parent_grace_s * 1e9)
        found = await self._read(lambda conn: run_backtest(conn, project_id, ref, version, last_hours, now, grace_ns))
        return JSONResponse({**found, "elapsed_ms": round((time.perf_counter() - t0) * 1000, 3)})


async def _request_body(request: Request) -> PolicyRequest:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype in ("application/json", ""):
        source_format = "json"
    elif ctype in YAML_TYPES:
        source_format = "yaml"
    else:
        raise ProblemError(415, f"unsupported content type {ctype!r}: send application/json or application/yaml")
    try:
        raw = await read_body(request, MAX_BODY_BYTES)
    except IngestError as err:
        raise ProblemError(err.http_status, err.message, headers=err.retry_headers()) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ProblemError(400, "body is not UTF-8") from None
    return parse_source(text, source_format)


def parse_source(text: str, source_format: str) -> PolicyRequest:
    """A body's text (json or yaml) as a request: ProblemError 400 when it is no JSON / YAML
    document, 422 with every bad path when it is not a valid request."""
    try:
        body = load_source(text, source_format)
    except SourceError as exc:
        raise ProblemError(400, f"body: {exc}") from None
    return parse_request(body, source_format, text if source_format == "yaml" else None)
