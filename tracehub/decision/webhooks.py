"""Webhook delivery: the worker that sends the notification outbox, and the checks of its targets.

ESCALATE writes a case and one `notifications` row per enabled endpoint in the decision's
transaction (`tracehub.decision.cases`). `Deliveries`, started and stopped by the Hub, sends them: a
thread of its own runs an event loop with one `httpx.AsyncClient`, so a slow receiver holds neither
the server's event loop nor the writer; its database work runs in short transactions on worker
threads (`tracehub.store.cases`). Each message is signed per Standard Webhooks by the
`standardwebhooks` package (`webhook-id` = the notification's message id, the same on every retry,
`webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>`). Every attempt is recorded; 2xx
delivers, 410 disables the endpoint (and its pending notifications), anything else is retried after
tenacity's exponential backoff with jitter until WEBHOOK_MAX_ATTEMPTS, then the notification failed.

Targets: http or https only, and no address on loopback, private, link-local, multicast, reserved or
otherwise non-public networks unless WEBHOOK_ALLOW names the host or its network. The check is made
on registration and again at every delivery after resolving the name, and the request is sent to the
address that was checked (TLS still verifies the name), so DNS cannot swap in another address between
the check and the connection. Redirects are not followed.

It must never be on ingest's path: nothing here is awaited by a request.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import orjson
import sqlalchemy as sa
from standardwebhooks import Webhook
from tenacity import RetryCallState, Retrying, wait_exponential_jitter

from tracehub import metrics
from tracehub.settings import Settings, env_name
from tracehub.store import cases as store

log = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24  # what Standard Webhooks' reference implementations generate
# A secret given at registration: base64 (standard alphabet, padded) of 22 to 66 bytes.
SECRET_PATTERN = ("^whsec_([A-Za-z0-9+/]{4}){7,21}([A-Za-z0-9+/]{4}|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{2}==)$")
BATCH = 32  # notifications claimed at once
POLL_S = 1.0  # how often the outbox is looked at when nothing woke the worker
LEASE_MARGIN_S = 30.0  # a claim outlives the delivery's timeout by this much
USER_AGENT = "tracehub-webhooks"

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
T = TypeVar("T")


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


class RefusedTarget(Exception):
    """A URL webhooks must not be sent to; the message says why."""


@dataclass(frozen=True)
class Target:
    """Where to send a request: `url` names the checked address, `host` is the Host header and
    `sni` the name TLS verifies (https)."""
    url: str
    host: str
    sni: str | None

    @property
    def extensions(self) -> dict[str, Any]:
        return {"sni_hostname": self.sni} if self.sni else {}


def _kind(ip: Address) -> str | None:
    """What makes `ip` a non-public address, or None for a public one."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for kind in ("loopback", "link_local", "multicast", "unspecified", "reserved", "private"):
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    return None if ip.is_global else "non-public"


class Targets:
    """The target rules: public http(s) addresses, and what WEBHOOK_ALLOW adds."""

    def __init__(self, allow: Iterable[str]) -> None:
        hosts, networks = set(), []
        for entry in allow:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.lower())
        self.hosts: frozenset[str] = frozenset(hosts)
        self.networks: tuple[Network, ...] = tuple(networks)

    def parse(self, url: str) -> httpx.URL:
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise RefusedTarget(f"not a URL: {exc}") from None
        if parsed.scheme not in ("http", "https"):
            raise RefusedTarget("only http and https URLs are allowed")
        if not parsed.host:
            raise RefusedTarget("the URL has no host")
        if parsed.userinfo:
            raise RefusedTarget("the URL must not carry credentials; the signature authenticates")
        return parsed

    def allowed(self, host: str, ip: Address) -> bool:
        return host.lower() in self.hosts or any(ip in net for net in self.networks) or _kind(ip) is None

    def resolve(self, url: str) -> Target:
        """The address to send to, after checking every address the host resolves to (blocking:
        DNS). Raises `RefusedTarget`."""
        parsed = self.parse(url)
        host = parsed.host
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise RefusedTarget(f"{host} does not resolve: {exc}") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))
        for ip in addresses:
            if not self.allowed(host, ip):
                raise RefusedTarget(f"{host} resolves to {ip}, a {_kind(ip)} address; allow it with"
                                    f" {env_name('webhook_allow')}")
        ip = addresses[0]
        literal = host.strip("[]") == str(ip)
        return Target(url=str(parsed.copy_with(host=str(ip))), host=parsed.netloc.decode("ascii"),
                      sni=host if parsed.scheme == "https" and not literal else None)


class Deliveries:
    """The delivery worker: a thread with its own event loop; `start`, `wake`, `stop`."""

    def __init__(self, engine: sa.Engine, settings: Settings) -> None:
        self.engine = engine
        self.reads = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.targets = Targets(settings.webhook_allow_list)
        self.timeout_s = settings.webhook_timeout_s
        self.max_attempts = settings.webhook_max_attempts
        self.backoff = wait_exponential_jitter(multiplier=settings.webhook_retry_initial_s,
                                               max=settings.webhook_retry_max_s,
                                               jitter=settings.webhook_retry_initial_s)
        self.poll_s = min(POLL_S, settings.webhook_retry_initial_s)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._wake: asyncio.Event | None = None
        self._stop: asyncio.Event | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tracehub-webhooks", daemon=True)
        self._thread.start()
        self._ready.wait(5)

    def wake(self) -> None:
        """Look at the outbox now (a decision has just written notifications)."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            loop.call_soon_threadsafe(wake.set)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop at once: deliveries in flight are dropped unrecorded and sent again once their
        claim ends (receivers deduplicate by webhook-id)."""
        self._stopping.set()
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            loop.call_soon_threadsafe(stop.set)
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout)

    def retry_delay_s(self, attempt: int) -> float:
        """Seconds before the attempt after failed `attempt` (1 for the first)."""
        state = RetryCallState(Retrying(), None, (), {})
        state.attempt_number = attempt
        return float(self.backoff(state))

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake, self._stop = asyncio.Event(), asyncio.Event()
        self._ready.set()
        async with httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False, trust_env=False) as client:
            while not self._stopping.is_set():  # set before the loop knew: stop() found no loop
                self._wake.clear()
                claimed: list[dict[str, Any]] = await self._db(self._claim, [])
                if claimed:
                    await self._send(client, claimed)
                    continue  # more may be due
                try:
                    await asyncio.wait_for(self._wake.wait(), self.poll_s)
                except TimeoutError:
                    pass

    async def _send(self, client: httpx.AsyncClient, claimed: list[dict[str, Any]]) -> None:
        """Deliver `claimed` concurrently; stopping drops what is still in flight."""
        assert self._stop is not None
        sending: asyncio.Future[Any] = asyncio.gather(*(self._deliver(client, n) for n in claimed))
        stopped: asyncio.Future[Any] = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait([sending, stopped], return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not sending.done():
            sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)

    async def _db(self, work: Callable[[], T], failed: T) -> T:
        """`work` on a worker thread; a database that cannot answer now is tried again later (a
        claim then ends with its lease, an unrecorded attempt is sent again)."""
        try:
            return await asyncio.to_thread(work)
        except Exception:  # the worker must outlive any database fault
            log.warning("webhook outbox: the database failed; trying again", exc_info=True)
            return failed

    def _claim(self) -> list[dict[str, Any]]:
        now = time.time_ns()
        # A read first: an idle outbox costs no write transaction, which on SQLite would take
        # the database's one write lock from the writer every second.
        with self.reads.connect() as conn:
            due = store.next_due_ns(conn)
        if due is None or due > now:
            return []
        lease = now + int((self.timeout_s + LEASE_MARGIN_S) * 1e9)
        with self.engine.begin() as conn:
            return store.claim_due(conn, now, lease, BATCH)

    async def _deliver(self, client: httpx.AsyncClient, n: dict[str, Any]) -> None:
        if not n["enabled"]:
            def disable() -> None:
                with self.engine.begin() as conn:
                    store.disable_notification(conn, n["id"], "the endpoint is disabled or deleted")
            await self._db(disable, None)
            return
        attempt = n["attempts"] + 1
        started_ns = time.time_ns()
        started = time.perf_counter()
        status_code: int | None = None
        error: str | None = None
        reason = "http"
        try:
            target = await asyncio.to_thread(self.targets.resolve, n["url"])
            body = orjson.dumps(n["payload"])
            sent_at = datetime.now(UTC)
            headers = {"content-type": "application/json", "user-agent": USER_AGENT, "host": target.host,
                       "webhook-id": n["message_id"], "webhook-timestamp": str(int(sent_at.timestamp())),
                       "webhook-signature": Webhook(n["secret"]).sign(n["message_id"], sent_at, body)}
            # Streamed and not read: a receiver's answer body is not needed, however large.
            async with client.stream("POST", target.url, content=body, headers=headers,
                                     extensions=target.extensions) as response:
                status_code = response.status_code
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}"
        except RefusedTarget as exc:
            error, reason = f"refused: {exc}", "refused"
        except httpx.HTTPError as exc:
            error, reason = f"{type(exc).__name__}: {exc}".rstrip(": "), "error"
        except Exception as exc:  # a defect must cost one attempt, not the worker
            log.exception("webhook %s: delivery failed", n["message_id"])
            error, reason = f"{type(exc).__name__}: {exc}".rstrip(": "), "error"
        latency_ms = round((time.perf_counter() - started) * 1000, 3)
        next_ns = 0
        if error is None:
            outcome = "delivered"
            metrics.WEBHOOK_DELIVERIES.inc()
        else:
            if status_code == 410:
                outcome, reason = "gone", "gone"
                error = f"HTTP 410 Gone from {n['url']}: endpoint disabled"
            elif attempt >= self.max_attempts:
                outcome = "failed"
            else:
                outcome = "retry"
                next_ns = time.time_ns() + int(self.retry_delay_s(attempt) * 1e9)
            metrics.WEBHOOK_FAILURES.labels(reason).inc()
            log.info("webhook %s to endpoint %s, attempt %d: %s", n["message_id"], n["endpoint_id"],
                     attempt, error)
        record = store.Attempt(notification_id=n["id"], project_id=n["project_id"], endpoint_id=n["endpoint_id"],
                               attempt=attempt, started_ns=started_ns, latency_ms=latency_ms,
                               status_code=status_code, error=error, outcome=outcome, next_attempt_ns=next_ns)

        def write() -> None:
            with self.engine.begin() as conn:
                store.record_attempt(conn, record, time.time_ns())
        await self._db(write, None)
