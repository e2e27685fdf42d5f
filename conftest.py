"""Shared test harness: real `tracehub serve` processes on loopback, on SQLite and on PostgreSQL.

`server` is session-scoped and parametrized over both databases. PostgreSQL tests use a database
created for this run on TRACEHUB_TEST_POSTGRES_URL's server (default 127.0.0.1:5432) and dropped
afterwards. Without a reachable server they are skipped with the reason shown, unless
TRACEHUB_TEST_POSTGRES=require (CI), where that is a failure.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent / "tests"))  # otlp_helpers, which bench/ shares
from otlp_helpers import free_ports  # noqa: E402

API_KEY = "dev-key"
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
PG_ADMIN_URL = os.environ.get("TRACEHUB_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    return free_ports(1)[0]


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Callable[[], str] = str) -> None:
    """Poll /healthz until the server answers; fail early if the process exits."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log()}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"server did not answer /healthz: {log()}")


class ServerProcess:
    """One real server process; its ports, an authenticated client and helpers to read back."""

    def __init__(self, database_url: str, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.database_url = database_url
        self.workdir = workdir
        self.port, self.otlp_http_port, self.grpc_port = free_ports(3)
        self.url = f"http://127.0.0.1:{self.port}"
        self.otlp_http = f"http://127.0.0.1:{self.otlp_http_port}"
        self.otlp_grpc = f"127.0.0.1:{self.grpc_port}"
        self.api_key = API_KEY
        self.host = "127.0.0.1"  # what the server binds to; clients connect to 127.0.0.1
        self.extra_env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = httpx.Client(base_url=self.url, headers={"x-api-key": API_KEY}, timeout=30)
        self.clients: list[httpx.Client] = []  # made by ui_sign_in; closed at the end of their module

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACEHUB_", "OTEL_"))}
        env.update(TRACEHUB_DATABASE_URL=self.database_url, TRACEHUB_LOG_LEVEL="warning")
        env.update(self.extra_env)
        return env

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tracehub", *args], env=self.env(),
                              cwd=self.workdir, capture_output=True, text=True, timeout=60)

    def start(self) -> ServerProcess:
        with open(self.workdir / f"server-{self.port}.log", "ab") as log:  # the process has its own copy
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tracehub", "serve", "--host", self.host,
                 "--port", str(self.port), "--otlp-http-port", str(self.otlp_http_port),
                 "--otlp-grpc-port", str(self.grpc_port)],
                env=self.env(), cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT)
        wait_healthy(self.url, self.proc, self.log_text)
        return self

    def close_clients(self) -> None:
        while self.clients:
            self.clients.pop().close()

    def log_text(self) -> str:
        return (self.workdir / f"server-{self.port}.log").read_text(errors="replace")[-4000:]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=60)
        return int(self.proc.returncode)

    def wait_trace(self, trace_id: str, min_spans: int = 1, timeout: float = 15.0,
                   client: httpx.Client | None = None) -> dict[str, Any]:
        """Poll the detail endpoint until the trace holds at least `min_spans` spans."""
        client = client or self.client
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            r = client.get(f"/api/v1/traces/{trace_id}")
            if r.status_code == 200:
                last = r.json()
                if len(last["spans"]) >= min_spans:
                    return dict(last)
            time.sleep(0.05)
        raise AssertionError(f"trace {trace_id} did not reach {min_spans} spans: {last}")


def _postgres_database() -> Iterator[str]:
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if os.environ.get("TRACEHUB_TEST_POSTGRES") == "require":
            raise
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL} ({exc}); "
                    "set TRACEHUB_TEST_POSTGRES_URL to run the PostgreSQL tests")
    name = "tracehub_test_" + uuid.uuid4().hex[:12]
    admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="session")
def database_url_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], str]]:
    """Makes a fresh database URL per call: `factory("sqlite")` or `factory("postgres")`."""
    cleanups: list[Iterator[str]] = []

    def make(backend: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path_factory.mktemp('db') / 'tracehub.db'}"
        gen = _postgres_database()
        url = next(gen)
        cleanups.append(gen)
        return url

    yield make
    for gen in cleanups:
        next(gen, None)


class Servers(list[ServerProcess]):
    """The servers a test run started; `shared` ones live for the whole run."""

    def __init__(self) -> None:
        super().__init__()
        self.shared: set[int] = set()

    def stop_from(self, first: int) -> None:
        """Stop the servers started from index `first` on, but the shared ones: each holds up to a
        dozen PostgreSQL connections, and the run's servers together would pass its
        max_connections (100 by default) if they all lived to the end."""
        for server in self[first:]:
            if id(server) in self.shared:
                continue
            if server.proc is not None and server.proc.poll() is None:
                server.stop()
            server.client.close()


@pytest.fixture(scope="session")
def started_servers() -> Iterator[Servers]:
    servers = Servers()
    yield servers
    servers.shared.clear()
    servers.stop_from(0)


@pytest.fixture(scope="module", autouse=True)
def _stop_the_modules_servers(started_servers: Servers) -> Iterator[None]:
    first = len(started_servers)
    yield
    for server in started_servers:
        server.close_clients()
    started_servers.stop_from(first)


@pytest.fixture(scope="session")
def server_factory(database_url_factory: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory,
                   started_servers: Servers) -> Callable[..., ServerProcess]:
    """Starts extra servers (own database) for tests that stop, kill or reconfigure one; each is
    stopped at the end of the test module that started it."""

    def make(backend: str = "sqlite", env: dict[str, str] | None = None,
             database_url: str | None = None) -> ServerProcess:
        url = database_url or database_url_factory(backend)
        server = ServerProcess(url, tmp_path_factory.mktemp("server"), env)
        started_servers.append(server)
        return server.start()

    return make


@pytest.fixture(scope="session", params=BACKENDS)
def server(request: pytest.FixtureRequest, server_factory: Callable[..., ServerProcess],
           started_servers: Servers) -> ServerProcess:
    """The shared server for read-back tests, once per database backend."""
    shared = server_factory(request.param)
    started_servers.shared.add(id(shared))
    return shared


@pytest.fixture(scope="module", params=BACKENDS)
def module_server(request: pytest.FixtureRequest, server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    """A server of the test module's own, once per database backend: for tests whose data others
    must not see (fixed ids, documents that ingest no longer takes)."""
    return server_factory(request.param)


@dataclass
class Project:
    """A project of its own on a server: its key, a client with that key, its id and an engine on
    the server's database."""

    key: str
    client: httpx.Client
    id: int
    engine: Any


@contextlib.contextmanager
def own_project(server: ServerProcess, prefix: str, auto_decide: bool = True) -> Iterator[Project]:
    """A new project (`tracehub keys create`) on `server`, so a test's counts are its own;
    `auto_decide=False` leaves its traces to the test's own decisions."""
    import sqlalchemy as sa

    from tracehub.store.schema import projects

    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    made = server.cli("keys", "create", "--project", name)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    client = httpx.Client(base_url=server.url, headers={"x-api-key": key}, timeout=30)
    if not auto_decide:
        r = client.patch("/api/v1/project", json={"auto_decide": False})
        assert r.status_code == 200, r.text
    engine = sa.create_engine(server.database_url)
    with engine.connect() as conn:
        pid = conn.execute(sa.select(projects.c.id).where(projects.c.name == name)).scalar_one()
    try:
        yield Project(key, client, pid, engine)
    finally:
        client.close()
        engine.dispose()



def ui_sign_in(server: ServerProcess, key: str, next_path: str = "/") -> tuple[httpx.Client, httpx.Response]:
    """The sign-in form, filled and posted as a browser does: (the client with its cookies, the answer).
    The client is closed at the end of the test module."""
    client = httpx.Client(base_url=server.url, timeout=30)
    server.clients.append(client)
    form = client.get("/login", params={"next": next_path})
    token = re.search(r'name="signin_token" value="([^"]+)"', form.text)
    assert token, form.text
    answer = client.post("/login", data={"signin_token": token.group(1), "next": next_path, "api_key": key})
    return client, answer


def ui_client(server: ServerProcess, key: str) -> httpx.Client:
    """A client signed in to the web UI with `key`."""
    client, answer = ui_sign_in(server, key)
    assert answer.status_code == 303, answer.text
    return client


def csrf_of(page: str) -> str:
    """The session's CSRF token in a rendered page."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page
    return found.group(1)

# The web UI in a real browser: Debian's Chromium driven by Playwright (no browser download).
CHROMIUM = os.environ.get("TRACEHUB_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
SCREENSHOTS = Path(__file__).parent / "build" / "screenshots"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Headless Chromium; without it the browser tests are skipped with the reason shown, unless
    TRACEHUB_TEST_BROWSER=require (CI), where that is a failure. One a module: Playwright's sync API
    marks its event loop running in this thread while it is open, and `asyncio.run` refuses to
    start under it."""
    if not Path(CHROMIUM).exists():
        reason = f"no Chromium at {CHROMIUM} (install Debian's chromium package or set TRACEHUB_TEST_CHROMIUM)"
        if os.environ.get("TRACEHUB_TEST_BROWSER") == "require":
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class BrowserSession:
    """One signed-in browser context on a server. Console errors, failed page scripts and
    Content-Security-Policy violations are collected in `errors`; `close()` fails the test on any."""

    def __init__(self, chromium: Any, server: ServerProcess, key: str, locale: str = "en-US") -> None:
        self.server = server
        self.context = chromium.new_context(base_url=server.url, locale=locale, viewport={"width": 1400, "height": 900})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on("response", self._response)
        if key:
            self.sign_in(key)

    def _console(self, message: Any) -> None:
        # A page answered 4xx on purpose (a refused sign-in) is logged as a failed load too; the
        # loads that matter are checked in `_response`.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(f"console error: {message.text}")

    def _response(self, response: Any) -> None:
        if response.status >= 400 and response.request.resource_type != "document":
            self.errors.append(f"{response.status} for {response.request.resource_type} {response.url}")

    def sign_in(self, key: str, next_path: str = "/") -> None:
        self.page.goto(f"/login?next={next_path}")
        self.page.fill("#api_key", key)
        self.page.click("form[action='/login'] button[type=submit]")
        self.page.wait_for_load_state()

    def goto(self, path: str) -> Any:
        response = self.page.goto(path)
        assert response is not None and response.ok, f"{path}: {response.status if response else 'no answer'}"
        return response

    def shot(self, name: str) -> Path:
        """A full-page screenshot under build/screenshots/ (ignored by git)."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def close(self, expect_errors: bool = False) -> None:
        self.context.close()
        if not expect_errors:
            assert not self.errors, self.errors


@contextlib.contextmanager
def browser_session(chromium: Any, server: ServerProcess, key: str, locale: str = "en-US"
                    ) -> Iterator[BrowserSession]:
    session = BrowserSession(chromium, server, key, locale)
    try:
        yield session
    except BaseException:
        session.close(expect_errors=True)
        raise
    session.close()
