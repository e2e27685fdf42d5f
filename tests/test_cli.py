"""The `tracehub` command line: help, migrate, keys, environment settings, unsafe-bind refusal."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from conftest import free_port, wait_healthy
from tracehub.settings import describe


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TRACEHUB_")}
    base.update(env or {})
    return subprocess.run([sys.executable, "-m", "tracehub", *args], env=base, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("args", [[], ["serve"], ["migrate"], ["keys"], ["keys", "create"]])
def test_every_command_has_help(args: list[str]) -> None:
    r = run(*args, "--help")
    assert r.returncode == 0 and "usage: tracehub" in r.stdout


def test_serve_help_names_every_setting_and_its_variable() -> None:
    out = run("serve", "--help").stdout
    flat = out.replace("\n", "").replace(" ", "")
    for _name, env, _default, _help, flag in describe():
        assert env in flat, env
        if flag:
            assert flag in out, flag


def test_migrate_then_keys_store_only_hashes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    r = run("migrate", env={"TRACEHUB_DATABASE_URL": url})
    assert r.returncode == 0 and "newest schema" in r.stdout
    r = run("keys", "create", "--project", "search-team", "--database-url", url)
    key = r.stdout.strip()
    assert r.returncode == 0 and key.startswith("th_")
    db = sqlite3.connect(tmp_path / "hub.db")
    stored = [row[0] for row in db.execute("SELECT key_hash FROM api_keys")]
    projects = {row[0] for row in db.execute("SELECT name FROM projects")}
    db.close()
    assert key not in stored and len(stored) == 2 and projects == {"default", "search-team"}


def test_non_loopback_with_only_the_dev_key_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    r = run("serve", "--host", "0.0.0.0", "--port", str(free_port()), "--otlp-grpc-port", "0",
            "--otlp-http-port", "0", env={"TRACEHUB_DATABASE_URL": url}, timeout=30)
    assert r.returncode != 0
    assert "refusing to listen on 0.0.0.0" in r.stderr and "tracehub keys create" in r.stderr


def test_a_decode_worker_priority_out_of_range_is_refused(tmp_path: Path) -> None:
    r = run("serve", env={"TRACEHUB_DATABASE_URL": f"sqlite:///{tmp_path / 'hub.db'}",
                          "TRACEHUB_DECODE_WORKER_NICE": "-5"}, timeout=30)
    assert r.returncode != 0 and "TRACEHUB_DECODE_WORKER_NICE=-5 is not within 0-19" in r.stderr


def test_settings_come_from_the_environment(tmp_path: Path) -> None:
    port = free_port()
    env = {"TRACEHUB_DATABASE_URL": f"sqlite:///{tmp_path / 'env.db'}", "TRACEHUB_HTTP_PORT": str(port),
           "TRACEHUB_OTLP_GRPC_PORT": "0", "TRACEHUB_OTLP_HTTP_PORT": "0"}
    base = {k: v for k, v in os.environ.items() if not k.startswith("TRACEHUB_")}
    proc = subprocess.Popen([sys.executable, "-m", "tracehub", "serve"], env={**base, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json() == {"status": "ok"}
        assert (tmp_path / "env.db").exists()
    finally:
        proc.terminate()
        assert proc.wait(30) == 0
