"""A benchmark's own `tracehub serve`: started on free ports with a fresh database (a temp SQLite
file, or a PostgreSQL database it creates and drops), stopped with SIGTERM, and read through its
REST API and /metrics."""

from __future__ import annotations

import argparse
import http.client
import os
import random
import shutil
import signal
import statistics
import string
import subprocess
import sys
import tempfile
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from procfs import children_of

sys.path.append(str(Path(__file__).resolve().parent.parent / "tests"))  # otlp_helpers, shared with the tests
from otlp_helpers import free_ports  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
MIB = 1024 * 1024


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


@dataclass
class ServerHandle:
    api_url: str
    otlp_http: tuple[str, int]
    grpc_target: str
    proc: subprocess.Popen[bytes] | None = None
    pid: int | None = None            # the python server process (differs from proc under py-spy)
    workdir: str | None = None
    log_path: str | None = None
    start_s: float | None = None
    db_desc: str = ""
    profile_kind: str | None = None
    profile_path: str | None = None
    spy: str | None = None             # py-spy binary, when it attaches for the send window only
    pg_admin: str | None = None
    pg_db: str | None = None
    store_db: str | None = None        # what measure_stored() reads: SQLite path or libpq URL


def server_metrics(api_url: str, names: tuple[str, ...]) -> dict[str, float]:
    """The named samples of the server's /metrics that it exposes ({} if it does not answer)."""
    u = urllib.parse.urlsplit(api_url)
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port or 80, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    except OSError:
        return {}
    finally:
        conn.close()
    found = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in names:
            found[name] = float(value)
    return found


def writer_counters(api_url: str) -> tuple[float, float] | None:
    """(seconds busy, transactions) of the server's writer, from its /metrics."""
    found = server_metrics(api_url, ("tracehub_writer_busy_seconds_total", "tracehub_writer_transactions_total"))
    if len(found) < 2:
        return None  # a server from before these metrics
    return found["tracehub_writer_busy_seconds_total"], found["tracehub_writer_transactions_total"]


def auto_decisions(api_url: str) -> int | None:
    """Traces the server's decision worker has decided (its /metrics), None if it does not say."""
    found = server_metrics(api_url, ("tracehub_auto_decisions_total",))
    return int(found["tracehub_auto_decisions_total"]) if found else None


def http_get_json(url: str, key: str, timeout: float = 30) -> tuple[int, Any]:
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port or 80, timeout=timeout)
    try:
        path = u.path + ("?" + u.query if u.query else "")
        conn.request("GET", path, headers={"x-api-key": key, "accept": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        try:  # orjson: the check's own parsing counts in the time until queryable; keep it small
            return resp.status, orjson.loads(data) if data else None
        except ValueError:
            return resp.status, data.decode(errors="replace")
    finally:
        conn.close()


def pg_admin_connect(dsn: str) -> Any:
    import psycopg

    return psycopg.connect(dsn, autocommit=True)


def start_server(args: argparse.Namespace) -> ServerHandle:
    workdir = tempfile.mkdtemp(prefix="tracehub_bench_")
    port, gport, hport = free_ports(3)
    env = dict(os.environ)
    env["TRACEHUB_LOG_LEVEL"] = args.server_log_level
    handle = ServerHandle(f"http://127.0.0.1:{port}", ("127.0.0.1", hport), f"127.0.0.1:{gport}",
                          workdir=workdir)
    if args.db == "sqlite":
        path = os.path.join(workdir, "tracehub.db")
        env["TRACEHUB_DATABASE_URL"] = f"sqlite:///{path}"
        handle.db_desc = f"sqlite {path}"
        handle.store_db = path
    else:
        name = "tracehub_bench_" + "".join(random.choices(string.ascii_lowercase + string.digits, k=10))
        with pg_admin_connect(args.pg_admin) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        handle.pg_admin, handle.pg_db = args.pg_admin, name
        u = urllib.parse.urlsplit(args.pg_admin)
        env["TRACEHUB_DATABASE_URL"] = (f"postgresql+psycopg://{u.username or 'postgres'}"
                                        f"@{u.hostname or '127.0.0.1'}:{u.port or 5432}/{name}")
        handle.db_desc = f"postgresql {u.hostname}:{u.port or 5432}/{name}"
        handle.store_db = urllib.parse.urlunsplit(u._replace(path="/" + name))
    serve = [str(args.python), "-m", "tracehub", "serve", "--host", "127.0.0.1", "--port", str(port),
             "--otlp-grpc-port", str(gport), "--otlp-http-port", str(hport)]
    cmd = serve
    if args.profile:
        spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(args.python).parent))
        if spy and not args.cprofile:
            handle.profile_kind = "py-spy"
            handle.profile_path = os.path.join(workdir, "pyspy.txt")
            if args.profile_window == "all":
                cmd = [spy, "record", "--format", "raw", "--threads", "--rate", str(args.profile_rate),
                       "--output", handle.profile_path] + (["--gil"] if args.profile_gil else []) + [
                       "--"] + serve
            else:
                handle.spy = spy  # attached by run() around the send phase
        else:
            handle.profile_kind = "cProfile"
            handle.profile_path = os.path.join(workdir, "cprofile.out")
            cmd = [str(args.python), "-m", "cProfile", "-o", handle.profile_path] + serve[1:]
    handle.log_path = os.path.join(workdir, "server.log")
    logf = open(handle.log_path, "wb")
    t0 = time.perf_counter()
    handle.proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=logf, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    logf.close()
    deadline = t0 + args.start_timeout
    while True:
        if handle.proc.poll() is not None:
            raise RuntimeError(f"server exited with {handle.proc.returncode}:\n{tail(handle.log_path)}")
        try:
            status, _ = http_get_json(handle.api_url + "/healthz", args.api_key, timeout=2)
            if status == 200:
                break
        except OSError:
            pass
        if time.perf_counter() > deadline:
            raise RuntimeError(f"server did not answer /healthz in {args.start_timeout}s:\n"
                               f"{tail(handle.log_path)}")
        time.sleep(0.01)
    handle.start_s = time.perf_counter() - t0
    handle.pid = handle.proc.pid
    if handle.profile_kind == "py-spy" and handle.spy is None:
        for _ in range(100):
            kids = children_of(handle.proc.pid)
            if kids:
                handle.pid = kids[0]
                break
            time.sleep(0.05)
    return handle


def tail(path: str | None, n: int = 40) -> str:
    if not path or not os.path.exists(path):
        return ""
    with open(path, "rb") as f:
        return b"".join(f.readlines()[-n:]).decode(errors="replace")


def stop_server(handle: ServerHandle, timeout: float = 60) -> float | None:
    if handle.proc is None:
        return None
    t = time.perf_counter()
    target = handle.pid or handle.proc.pid
    try:
        os.kill(target, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        handle.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        log(f"server did not stop in {timeout}s; killing it")
        os.killpg(handle.proc.pid, signal.SIGKILL)
        handle.proc.wait()
        return None
    return time.perf_counter() - t


def cleanup(handle: ServerHandle, keep: bool) -> None:
    if handle.pg_db and not keep:
        try:
            with pg_admin_connect(handle.pg_admin or "") as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{handle.pg_db}" WITH (FORCE)')
        except Exception as exc:  # noqa: BLE001 - report, never mask the results
            log(f"could not drop database {handle.pg_db}: {exc}")
    if handle.workdir and not keep:
        shutil.rmtree(handle.workdir, ignore_errors=True)



def stored_spans(api_url: str, key: str, env: str, workers: int) -> tuple[int, int, float]:
    """(traces, spans) of this run's environment through GET /api/v1/traces, summing span_count
    over every page; pages after the first are fetched by `workers` threads."""
    base = f"{api_url}/api/v1/traces?page_size=200&environment={urllib.parse.quote(env)}"
    t = time.perf_counter()
    status, first = http_get_json(base + "&page=1", key)
    if status != 200:
        raise RuntimeError(f"GET /api/v1/traces answered {status}: {first}")
    total = int(first["total"])
    spans = sum(int(it["span_count"]) for it in first["items"])
    seen = len(first["items"])
    pages = (total + 199) // 200

    def page(p: int) -> tuple[int, int]:
        st, doc = http_get_json(f"{base}&page={p}", key)
        if st != 200:
            raise RuntimeError(f"GET /api/v1/traces page {p} answered {st}: {doc}")
        return len(doc["items"]), sum(int(it["span_count"]) for it in doc["items"])

    if pages > 1:
        with ThreadPoolExecutor(max(1, workers)) as pool:
            for n, s in pool.map(page, range(2, pages + 1)):
                seen += n
                spans += s
    return seen, spans, time.perf_counter() - t


def get_times(api_url: str, paths: list[str], key: str, n: int,
              timeout: float = 30, headers: dict[str, str] | None = None) -> list[float] | None:
    """Seconds of n sequential GETs cycling over `paths` (each fetched once first, untimed) on
    one keep-alive connection, with `key` or else `headers`; None if one is not answered 200."""
    u = urllib.parse.urlsplit(api_url)
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port or 80, timeout=timeout)
    times = []
    try:
        for k in range(n + len(paths)):
            t = time.perf_counter()
            conn.request("GET", paths[k % len(paths)], headers={"x-api-key": key} if key else headers or {})
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                return None
            if k >= len(paths):
                times.append(time.perf_counter() - t)
    finally:
        conn.close()
    return times


def timed_get(url: str, key: str, n: int = 15) -> float | None:
    """Median seconds of n sequential GETs (one warm-up first) on a keep-alive connection."""
    u = urllib.parse.urlsplit(url)
    times = get_times(url, [u.path + ("?" + u.query if u.query else "")], key, n)
    return statistics.median(times) if times else None


def activate_policy(api_url: str, key: str, path: str) -> None:
    """POST /api/v1/policies with the JSON body in `path` (with "active": true, the decision engine
    then decides every trace the run sends)."""
    u = urllib.parse.urlsplit(api_url)
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port or 80, timeout=30)
    try:
        conn.request("POST", "/api/v1/policies", body=Path(path).read_bytes(),
                     headers={"x-api-key": key, "content-type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    if resp.status not in (200, 201):
        raise RuntimeError(f"POST /api/v1/policies answered {resp.status}: {data.decode(errors='replace')}")


def trace_count(api_url: str, key: str, env: str) -> int:
    status, doc = http_get_json(
        f"{api_url}/api/v1/traces?page_size=1&environment={urllib.parse.quote(env)}", key)
    if status != 200:
        raise RuntimeError(f"GET /api/v1/traces answered {status}: {doc}")
    return int(doc["total"])



# Whether a server started with this environment reads OTLP with the C reader: built and not turned off.
_READER_CHECK = ("from tracehub.collector import otlp; from tracehub.settings import Settings;"
                 " print(otlp.WIRE_READER and Settings.from_env().otlp_c_reader)")


def server_code_version(python: str | None) -> dict[str, Any]:
    """The commit the server code is at, whether tracehub/ differs from it (read-only git), and
    whether the server's interpreter `python` has the C reader of OTLP requests (None: unknown)."""
    out: dict[str, Any] = {"commit": None, "tracehub_modified": None, "c_reader": None}
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        diff = subprocess.run(["git", "diff", "--stat", "HEAD", "--", "tracehub"], cwd=REPO,
                              capture_output=True, text=True, timeout=10).stdout.strip()
        out.update(commit=head or None, tracehub_modified=bool(diff))
        if python is not None:
            # Not run in the checkout, whose tracehub/ would come before PYTHONPATH's.
            python = os.path.abspath(python) if os.sep in python else python
            found = subprocess.run([python, "-c", _READER_CHECK], cwd="/", capture_output=True, text=True,
                                   timeout=30).stdout.strip()
            out["c_reader"] = {"True": True, "False": False}.get(found)
    except (OSError, subprocess.SubprocessError):
        pass
    return out

