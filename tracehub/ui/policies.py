"""Policies (`/policies`, `/policies/{policy}`): the project's policies and their versions with the
active, in-force and shadow markers; a version's definition as YAML and its rules as a table; new
versions pasted as YAML or JSON (refused in place, each error with its path, nothing stored);
activate and shadow; and a backtest's transitions with sample traces.

Every operation is the policies API's (`tracehub.api.policies`: parse_request, create_version,
activate_version, shadow_version, run_backtest), so the page validates, stores and replays exactly
as `POST /api/v1/policies...` does.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import yaml
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from tracehub.api import policies as api
from tracehub.api.errors import ProblemError
from tracehub.decision import backtest
from tracehub.decision.policy import DEFAULT_OUTCOME, SourceError, load_source
from tracehub.store import policies as store
from tracehub.ui.render import N_

if TYPE_CHECKING:
    from tracehub.ui.app import Ui
    from tracehub.ui.session import Viewer

VERSIONS_LISTED = 10  # per policy on /policies
RULE_KEYS = ("id", "name", "description", "priority", "when", "then", "metadata")
CONDITION_KEYS = ("field", "op", "value", "any", "all", "not")


def _ordered(value: Any, keys: tuple[str, ...] = ()) -> Any:
    """A definition with its keys in reading order (PostgreSQL's JSONB keeps them sorted its own way)."""
    if isinstance(value, dict):
        first = [k for k in keys if k in value]
        return {k: value[k] for k in first + sorted(k for k in value if k not in first)}
    return value


def definition_yaml(definition: dict[str, Any]) -> str:
    def condition(c: Any) -> Any:
        if not isinstance(c, dict):
            return c
        c = _ordered(c, CONDITION_KEYS)
        for group in ("any", "all"):
            if isinstance(c.get(group), list):
                c[group] = [condition(x) for x in c[group]]
        if "not" in c:
            c["not"] = condition(c["not"])
        return c

    doc = _ordered(definition, ("rules", "default"))
    if isinstance(doc.get("rules"), list):
        doc["rules"] = [{**_ordered(r, RULE_KEYS), **({"when": condition(r["when"])} if "when" in r else {})}
                        if isinstance(r, dict) else r for r in doc["rules"]]
    return str(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100))


def condition_view(c: Any) -> dict[str, Any]:
    """A condition as the rules table shows it: groups with their parts, comparisons as text."""
    for group in ("any", "all"):
        if isinstance(c, dict) and isinstance(c.get(group), list):
            return {"kind": group, "parts": [condition_view(x) for x in c[group]]}
    if isinstance(c, dict) and "not" in c:
        return {"kind": "not", "parts": [condition_view(c["not"])]}
    c = c if isinstance(c, dict) else {}
    return {"kind": "cmp", "field": c.get("field"), "op": c.get("op"),
            "value": json.dumps(c["value"], ensure_ascii=False) if "value" in c else None}


def rules_view(definition: dict[str, Any]) -> list[dict[str, Any]]:
    """The rules in the order they are tried (ascending priority, ties in document order)."""
    rules = [r for r in definition.get("rules") or [] if isinstance(r, dict)]
    ordered = sorted(enumerate(rules), key=lambda ir: (ir[1].get("priority", 0), ir[0]))
    return [{"index": i, "id": r.get("id"), "name": r.get("name"), "priority": r.get("priority"),
             "when": condition_view(r.get("when")), "then": r.get("then") or {},
             "metadata": json.dumps(r["metadata"], ensure_ascii=False) if r.get("metadata") else None}
            for i, r in ordered]


def _int(raw: Any, name: str, lo: int, hi: int, default: int | None = None) -> int:
    if (raw is None or raw == "") and default is not None:
        return default
    if not isinstance(raw, str) or not (raw.isascii() and raw.isdigit()) or not lo <= int(raw) <= hi:
        raise HTTPException(400, f"{name}: expected a number from {lo} to {hi}")
    return int(raw)


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _errors(exc: ProblemError, strip_definition: bool) -> list[dict[str, str]]:
    """The API's error list; paths relative to the definition when only a definition was pasted."""
    found = exc.errors or [{"path": "", "message": exc.detail}]
    out = []
    for e in found:
        path = str(e.get("path", ""))
        if strip_definition and path.startswith("definition."):
            path = path[len("definition."):]
        out.append({"path": path, "message": str(e.get("message", ""))})
    return out


def source_format(text: str) -> str:
    return "json" if text.lstrip().startswith("{") else "yaml"


class Pages:
    def __init__(self, ui: Ui) -> None:
        self.ui = ui

    def routes(self) -> list[Route]:
        return [
            Route("/policies", self.index, methods=["GET"]),
            Route("/policies", self.create, methods=["POST"]),
            Route("/policies/{policy}", self.detail, methods=["GET"]),
            Route("/policies/{policy}/versions", self.new_version, methods=["POST"]),
            Route("/policies/{policy}/activate", self.activate, methods=["POST"]),
            Route("/policies/{policy}/shadow", self.shadow, methods=["POST"]),
            Route("/policies/{policy}/backtest", self.backtest, methods=["GET"]),
        ]

    # Reads -------------------------------------------------------------------------------------

    def _read(self, work: Any) -> Any:
        try:
            with self.ui.hub.reads.connect() as conn:
                return work(conn)
        except store.PolicyNotFound:
            raise HTTPException(404, "no such policy or version") from None

    def _write(self, work: Any) -> Any:
        try:
            return store.write(self.ui.hub.engine, work)
        except store.PolicyNotFound:
            raise HTTPException(404, "no such policy or version") from None

    async def index(self, request: Request) -> Response:
        viewer = await self.ui.viewer(request)
        return await run_in_threadpool(self._index, request, viewer, {})

    def _index(self, request: Request, viewer: Viewer, extra: dict[str, Any], status: int = 200) -> Response:
        now = time.time_ns()

        def work(conn: Any) -> list[dict[str, Any]]:
            listed = []
            for row in store.list_policies(conn, viewer.project_id, now):
                versions = store.versions(conn, viewer.project_id, row["id"])
                listed.append({**api.policy_view(row), "version_count": len(versions),
                               "versions": [self._version(v, row) for v in versions[:VERSIONS_LISTED]]})
            return listed

        context = {"policies": self._read(work), "form": {"text": "", "errors": None}, **extra}
        return self.ui.page(request, viewer, "policies.html", context, status)

    @staticmethod
    def _version(row: dict[str, Any], policy: dict[str, Any]) -> dict[str, Any]:
        return {**api.version_view(row), "active": row["version"] == policy["active_version"],
                "shadow": row["version"] == policy["shadow_version"],
                "in_force": row["version"] == policy.get("in_force_version")}

    async def detail(self, request: Request) -> Response:
        viewer = await self.ui.viewer(request)
        raw = request.query_params.get("version")
        version = _int(raw, "version", 1, api.MAX_VERSION) if raw else None
        return await run_in_threadpool(self._detail, request, viewer, request.path_params["policy"], version, {})

    def _detail(self, request: Request, viewer: Viewer, ref: str, version: int | None, extra: dict[str, Any],
                status: int = 200) -> Response:
        now = time.time_ns()

        def work(conn: Any) -> dict[str, Any]:
            found = api.policy_detail(conn, viewer.project_id, ref, now)
            return {**found, "versions": store.versions(conn, viewer.project_id, found["policy"]["id"])}

        found = self._read(work)
        policy = found["policy"]
        versions = [self._version(v, policy) for v in found["versions"]]
        shown = version or policy["active_version"] or policy["latest_version"]
        chosen = next((v for v in versions if v["version"] == shown), None)
        if chosen is None:
            raise HTTPException(404, "no such policy or version")
        shown_yaml = definition_yaml(chosen["definition"])
        context = {
            "policy": api.policy_view(policy), "versions": versions, "shown": chosen,
            "yaml": shown_yaml, "rules": rules_view(chosen["definition"]),
            "default": {**DEFAULT_OUTCOME, **(chosen["definition"].get("default") or {})},
            # A new version starts as an edit of the one shown.
            "form": {"text": shown_yaml, "description": "", "effective_from": "", "activate": False, "errors": None},
            "backtest": None, "last_hours": backtest.DEFAULT_HOURS, "max_hours": backtest.MAX_HOURS,
            "refused": None, **extra}
        return self.ui.page(request, viewer, "policy.html", context, status)

    # Writes ------------------------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        """A new policy (or a version of the one it names) from a pasted document, as
        `POST /api/v1/policies` takes it."""
        viewer = await self.ui.viewer(request)
        form = await self.ui.form(request, viewer)
        text = _text(form, "document")

        def run() -> Response:
            try:
                req = self._parse(request, text)
                made = self._write(lambda conn: api.create_version(conn, viewer.project_id, req, time.time_ns()))
            except ProblemError as exc:
                errors = _errors(exc, strip_definition=False)
                return self._index(request, viewer, {"form": {"text": text, "errors": errors}}, 422)
            return RedirectResponse(f"/policies/{made['policy']['id']}?version={made['version']['version']}", 303)

        return await run_in_threadpool(run)

    async def new_version(self, request: Request) -> Response:
        """A new version of this policy from a pasted definition (or a whole document of this policy)."""
        viewer = await self.ui.viewer(request)
        form = await self.ui.form(request, viewer)
        ref = request.path_params["policy"]
        text = _text(form, "definition")
        entered: dict[str, Any] = {"text": text, "description": _text(form, "description").strip(),
                   "effective_from": _text(form, "effective_from").strip(), "activate": form.get("activate") == "on"}

        def run() -> Response:
            policy = self._read(lambda conn: api.policy_of(conn, viewer.project_id, ref))
            whole = False
            try:
                if len(text.encode()) > api.MAX_BODY_BYTES:
                    raise ProblemError(413, f"larger than {api.MAX_BODY_BYTES} bytes")
                fmt = source_format(text)
                try:
                    doc = load_source(text, fmt)
                except SourceError as exc:
                    raise ProblemError(400, str(exc)) from None
                whole = isinstance(doc, dict) and "definition" in doc and "rules" not in doc
                body = dict(doc) if whole else {"definition": doc}
                body.setdefault("name", policy["name"])
                if body["name"] != policy["name"]:
                    raise ProblemError(422, "name", [{"path": "name", "message": self.ui.gettext(
                        request, N_("this page adds versions of its own policy; create others on the Policies page"))}])
                for name in ("description", "effective_from"):
                    if entered[name]:
                        body[name] = entered[name]
                body["active"] = entered["activate"] or bool(body.get("active"))
                req = api.parse_request(body, fmt, text if fmt == "yaml" else None)
                made = self._write(lambda conn: api.create_version(conn, viewer.project_id, req, time.time_ns()))
            except ProblemError as exc:
                extra = {"form": {**entered, "errors": _errors(exc, strip_definition=not whole)}}
                return self._detail(request, viewer, ref, None, extra, 422)
            return RedirectResponse(f"/policies/{policy['id']}?version={made['version']['version']}", 303)

        return await run_in_threadpool(run)

    def _parse(self, request: Request, text: str) -> api.PolicyRequest:
        if len(text.encode()) > api.MAX_BODY_BYTES:
            raise ProblemError(413, f"larger than {api.MAX_BODY_BYTES} bytes")
        return api.parse_source(text, source_format(text))

    async def activate(self, request: Request) -> Response:
        return await self._designate(request, "activate")

    async def shadow(self, request: Request) -> Response:
        return await self._designate(request, "shadow")

    async def _designate(self, request: Request, what: str) -> Response:
        viewer = await self.ui.viewer(request)
        form = await self.ui.form(request, viewer)
        ref = request.path_params["policy"]
        clear = what == "shadow" and form.get("clear") == "1"
        version = None if clear else _int(form.get("version"), "version", 1, api.MAX_VERSION)

        def run() -> Response:
            try:
                if what == "activate":
                    assert version is not None
                    done = self._write(lambda conn: api.activate_version(
                        conn, viewer.project_id, ref, version, time.time_ns()))
                else:
                    done = {"policy": self._write(lambda conn: api.shadow_version(
                        conn, viewer.project_id, ref, version))}
            except ProblemError as exc:
                extra = {"refused": {"message": exc.detail, "errors": _errors(exc, strip_definition=True)}}
                return self._detail(request, viewer, ref, version, extra, exc.status)
            shown = f"?version={version}" if version else ""
            return RedirectResponse(f"/policies/{done['policy']['id']}{shown}", 303)

        return await run_in_threadpool(run)

    # Backtest ----------------------------------------------------------------------------------

    async def backtest(self, request: Request) -> Response:
        """The same replay as `POST /api/v1/policies/{policy}/backtest` (nothing is written, so a
        GET: its result is a link)."""
        viewer = await self.ui.viewer(request)
        q = request.query_params
        version = _int(q.get("version"), "version", 1, api.MAX_VERSION)
        last_hours = _int(q.get("last_hours"), "last_hours", 1, backtest.MAX_HOURS, backtest.DEFAULT_HOURS)
        ref = request.path_params["policy"]
        grace_ns = int(self.ui.hub.settings.missing_parent_grace_s * 1e9)

        def run() -> Response:
            t0 = time.perf_counter()
            try:
                found = self._read(lambda conn: api.run_backtest(
                    conn, viewer.project_id, ref, version, last_hours, time.time_ns(), grace_ns))
            except ProblemError as exc:
                extra = {"refused": {"message": exc.detail, "errors": _errors(exc, strip_definition=True)},
                         "last_hours": last_hours}
                return self._detail(request, viewer, ref, version, extra, exc.status)
            found["elapsed_ms"] = (time.perf_counter() - t0) * 1000
            return self._detail(request, viewer, ref, version, {"backtest": found, "last_hours": last_hours})

        return await run_in_threadpool(run)
