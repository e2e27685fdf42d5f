"""`tracehub backup` while ingest goes on, `tracehub restore` into a new path, a server on the restored
database; the refusals (a database in use, an existing one without --replace); PostgreSQL's pointers
to pg_dump and pg_restore."""

from __future__ import annotations

import secrets
import threading
from pathlib import Path
from typing import Callable

import httpx
import pytest

from conftest import ServerProcess
from otlp_helpers import make_span, new_trace_id, request_of

SPANS_A_TRACE = 3


def _send_trace(client: httpx.Client, server: ServerProcess) -> str:
    """One trace of three spans in one request; its id once the server has acknowledged it."""
    trace_id = new_trace_id()
    root = secrets.token_bytes(8)
    spans = [make_span(trace_id, root, name="chat-request", input__value="환불 규정")]
    spans += [make_span(trace_id, secrets.token_bytes(8), root, name=f"step-{i}") for i in range(SPANS_A_TRACE - 1)]
    r = client.post(server.otlp_http + "/v1/traces", content=request_of(*spans),
                    headers={"content-type": "application/x-protobuf", "x-api-key": server.api_key})
    assert r.status_code == 200, r.text
    return trace_id.hex()


def _all_traces(client: httpx.Client) -> list[dict[str, object]]:
    items: list[dict[str, object]] = []
    page = 1
    while True:
        r = client.get("/api/v1/traces", params={"page": page, "page_size": 200})
        assert r.status_code == 200, r.text
        body = r.json()
        items += body["items"]
        if len(items) >= body["total"] or not body["items"]:
            return items
        page += 1


def test_backup_while_ingesting_restores_into_a_server_that_reads_every_acknowledged_trace(
        server_factory: Callable[..., ServerProcess], tmp_path: Path) -> None:
    source = server_factory("sqlite")
    with httpx.Client(timeout=30) as client:
        before = [_send_trace(client, source) for _ in range(40)]

    stop = threading.Event()
    during: list[str] = []
    errors: list[BaseException] = []

    def ingest() -> None:
        try:
            with httpx.Client(timeout=30) as client:
                while not stop.is_set():
                    during.append(_send_trace(client, source))
        except BaseException as exc:  # reported by the test below
            errors.append(exc)

    sender = threading.Thread(target=ingest)
    sender.start()
    try:
        while len(during) < 5 and sender.is_alive():  # the backup starts with requests under way
            stop.wait(0.01)
        backup = tmp_path / "tracehub-backup.db"
        done = source.cli("backup", str(backup))
    finally:
        stop.set()
        sender.join(60)
    assert not errors, errors
    assert done.returncode == 0, done.stderr
    assert f"to {backup}" in done.stdout
    assert backup.is_file() and not (tmp_path / "tracehub-backup.db.partial").exists()

    # The running server's database cannot be replaced under it.
    refused = source.cli("restore", str(backup), "--replace")
    assert refused.returncode == 1 and "in use" in refused.stderr, refused.stderr
    assert source.client.get(f"/api/v1/traces/{before[0]}").status_code == 200

    # Restore into a new path, then a server on it.
    target = tmp_path / "restored" / "tracehub.db"
    target.parent.mkdir()
    url = f"sqlite:///{target}"
    offline = ServerProcess(url, tmp_path)
    try:
        restored = offline.cli("restore", str(backup))
        assert restored.returncode == 0, restored.stderr
        again = offline.cli("restore", str(backup))
        assert again.returncode == 1 and "--replace" in again.stderr
        replaced = offline.cli("restore", str(backup), "--replace")
        assert replaced.returncode == 0, replaced.stderr
    finally:
        offline.client.close()
    restored_server = server_factory(database_url=url)
    for trace_id in before:
        detail = restored_server.wait_trace(trace_id, SPANS_A_TRACE, timeout=5)
        assert detail["trace"]["input_text"] == "환불 규정"
    listed = _all_traces(restored_server.client)
    ids = {t["trace_id"] for t in listed}
    assert set(before) <= ids
    # One consistent snapshot: a trace is there with all the spans of its request, or not at all;
    # and nothing the source did not acknowledge.
    assert {t["span_count"] for t in listed} == {SPANS_A_TRACE}
    assert ids <= set(before) | set(during)

    # The restored database takes new traces.
    with httpx.Client(timeout=30) as client:
        fresh = _send_trace(client, restored_server)
    restored_server.wait_trace(fresh, SPANS_A_TRACE)


def test_restore_refuses_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    not_a_db = tmp_path / "notes.txt"
    not_a_db.write_text("not a backup")
    offline = ServerProcess(f"sqlite:///{tmp_path / 'tracehub.db'}", tmp_path)
    try:
        r = offline.cli("restore", str(not_a_db))
    finally:
        offline.client.close()
    assert r.returncode == 1 and "not an SQLite database" in r.stderr
    assert not (tmp_path / "tracehub.db").exists()


@pytest.mark.parametrize("command, tool", [("backup", "pg_dump"), ("restore", "pg_restore")])
def test_on_postgresql_backup_and_restore_explain_the_postgresql_tools(tmp_path: Path, command: str,
                                                                        tool: str) -> None:
    offline = ServerProcess("postgresql+psycopg://tracehub:secret@db.internal/tracehub", tmp_path)
    try:
        r = offline.cli(command, str(tmp_path / "dump"))
    finally:
        offline.client.close()
    assert r.returncode == 2
    assert tool in r.stderr and "docs/OPERATIONS.md" in r.stderr
    assert "secret" not in r.stderr
    assert not (tmp_path / "dump").exists()
