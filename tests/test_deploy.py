"""The Dockerfile and docker-compose.yml, without a Docker engine: their structure, that they install and
start the hub as the README does, that their ports and TRACEHUB_* names are the settings', and that
the image's health check, run as written, tells a serving hub from a stopped one."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import sqlalchemy as sa
import yaml

from conftest import ServerProcess, free_port
from tracehub.settings import Settings, describe

ROOT = Path(__file__).parents[1]
SETTINGS = {env: (name, default) for name, env, default, _help, _flag in describe()}
PORTS = {"TRACEHUB_HTTP_PORT", "TRACEHUB_OTLP_GRPC_PORT", "TRACEHUB_OTLP_HTTP_PORT"}


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in _instructions():
        if instruction[0] == "FROM":
            stages.append([])
        stages[-1].append(instruction)
    return stages


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


def _readme_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    first = re.findall(r"```(?:bash)?\n(.*?)```", readme, re.S)[0].strip()
    return [c.strip() for c in first.split("&&")]


def _exec_form(args: str) -> list[str]:
    return list(json.loads(args)) if args.startswith("[") else shlex.split(args)


def _image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, args in _stages()[-1]:
        if word == "ENV":
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def test_the_image_installs_and_starts_the_hub_as_the_readme_does() -> None:
    venv, install, start = _readme_commands()
    assert venv == "python3 -m venv .venv" and install == ".venv/bin/pip install -e ." \
        and start == ".venv/bin/tracehub serve"
    build, runtime = _stages()
    assert build[0][1].startswith("python:3.11-slim") and runtime[0][1] == "python:3.11-slim"
    runs = [args for word, args in build if word == "RUN"]
    # The README's venv and install, into /opt/tracehub, not editable (the source stays in the build stage).
    readme_install = f"{venv} && {install}".replace(".venv", "/opt/tracehub").replace(" -e .", " .")
    assert any(run.replace("--no-cache-dir ", "") == readme_install for run in runs), runs
    assert ("COPY", "--from=build /opt/tracehub /opt/tracehub") in runtime
    env = _image_env()
    assert env["PATH"].startswith("/opt/tracehub/bin:")
    cmd = [args for word, args in runtime if word == "CMD"]
    assert len(cmd) == 1 and _exec_form(cmd[0]) == start.replace(".venv/bin/", "").split()


def test_the_image_runs_as_a_user_of_its_own() -> None:
    users = [args for word, args in _stages()[-1] if word == "USER"]
    assert users, "no USER: the hub would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    useradd = next(args for word, args in _stages()[-1] if word == "RUN" and "useradd" in args)
    assert f"--uid {user}" in useradd
    assert [args for word, args in _stages()[-1] if word == "WORKDIR"] == [
        re.search(r"--home-dir (\S+)", useradd).group(1)]  # type: ignore[union-attr]


def test_the_image_environment_and_ports_are_the_settings() -> None:
    env = _image_env()
    for key, value in env.items():
        if key.startswith("TRACEHUB_"):
            assert key in SETTINGS, key
            Settings.from_env({key: value})  # a value the settings take
    assert env["TRACEHUB_HOST"] == "0.0.0.0"
    exposed = {int(p) for word, args in _stages()[-1] if word == "EXPOSE" for p in args.split()}
    assert exposed == {SETTINGS[p][1] for p in PORTS}


def test_the_compose_file_runs_the_hub_on_postgresql_with_seed_and_health() -> None:
    compose = _compose()
    services = compose["services"]
    assert set(services) == {"postgres", "tracehub"}
    pg, hub = services["postgres"], services["tracehub"]
    assert pg["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    assert hub["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert hub["build"] == "."
    volume = pg["volumes"][0].split(":")
    assert volume[0] in compose["volumes"] and volume[1] == "/var/lib/postgresql/data"

    env = {k: str(v) for k, v in hub["environment"].items()}
    assert set(env) <= set(SETTINGS), set(env) - set(SETTINGS)
    settings = Settings.from_env(env)
    url = sa.make_url(settings.database_url)
    assert url.drivername == "postgresql+psycopg" and url.host == "postgres"
    assert (url.username, url.password, url.database) == (
        pg["environment"]["POSTGRES_USER"], pg["environment"]["POSTGRES_PASSWORD"], pg["environment"]["POSTGRES_DB"])
    # The container listens on its interfaces; the demo's dev-key is allowed there, and the ports are
    # published on the host's loopback only.
    assert settings.host == "0.0.0.0" and settings.allow_default_key_on_public
    published = {}
    for mapping in hub["ports"]:
        host_ip, host_port, container_port = mapping.split(":")
        assert host_ip == "127.0.0.1"
        published[int(container_port)] = int(host_port)
    ports = {settings.http_port, settings.otlp_grpc_port, settings.otlp_http_port}
    assert ports == {8000, 4317, 4318} and set(published) == ports
    assert all(published[p] == p for p in ports)

    # Seed once (it is idempotent), then the server in the shell's place so it gets the signals.
    command = hub["command"]
    assert command[:2] == ["sh", "-c"]
    seed, serve = command[2].split(" && ")
    assert seed.split()[-2:] == ["tracehub", "seed"] and serve == "exec tracehub serve"


def _healthcheck_code() -> str:
    check = next(args for word, args in _stages()[-1] if word == "HEALTHCHECK")
    assert re.search(r"--interval=\d+s", check) and "--start-period=" in check
    command = shlex.split(check.partition(" CMD ")[2])
    assert command[:2] == ["python", "-c"] and "/healthz" in command[2]
    return command[2]


def _run_check(env: dict[str, str]) -> int:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRACEHUB_")}
    return subprocess.run([sys.executable, "-c", _healthcheck_code()], env={**clean, **env},
                          capture_output=True, timeout=30).returncode


def test_the_health_check_as_written_passes_on_a_serving_hub_and_fails_without_one(
        server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory("sqlite")
    assert _run_check({"TRACEHUB_HTTP_PORT": str(server.port)}) == 0
    assert _run_check({"TRACEHUB_HTTP_PORT": str(free_port())}) != 0
    # Over TLS it speaks HTTPS: a plain server fails the check then.
    assert _run_check({"TRACEHUB_HTTP_PORT": str(server.port), "TRACEHUB_TLS_CERT_FILE": "/x.pem"}) != 0


def test_the_build_context_leaves_out_local_builds_and_databases() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for pattern in (".venv", ".git", "**/*.so", "*.db", "build"):
        assert pattern in ignored
    for needed in ("pyproject.toml", "setup.py", "README.md", "tracehub"):
        assert needed not in ignored
