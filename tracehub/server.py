"""`tracehub serve`: the REST/OTLP-HTTP port, the dedicated OTLP/HTTP port and OTLP/gRPC in one loop,
each with TLS (and client certificates) when the settings name a certificate.

Shutdown on SIGTERM/SIGINT stops the listeners first (in-flight requests finish and are answered
after their commit), then drains the writer: nothing acknowledged is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import signal
import ssl
import sys
from dataclasses import dataclass
from typing import Any, Iterator

import grpc
import uvicorn

from tracehub.api.app import create_app, create_otlp_app
from tracehub.api.connection import GuardedHttp
from tracehub.collector import otlp
from tracehub.collector.grpc import create_server
from tracehub.hub import Hub
from tracehub.settings import Settings
from tracehub.store import keys

log = logging.getLogger("tracehub")
# mallopt(3) parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


class _Server(uvicorn.Server):
    # Several servers share one loop; signals are handled once, in `serve()`.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def refuse_unsafe_bind(hub: Hub) -> None:
    settings = hub.settings
    if settings.binds_loopback or settings.allow_default_key_on_public:
        return
    if keys.only_default_key(hub.engine):
        raise SystemExit(
            f"refusing to listen on {settings.host}: the only API key is the well-known "
            f"'{keys.DEFAULT_KEY}'. Create a real key first with `tracehub keys create --project NAME`"
            " (or set TRACEHUB_ALLOW_DEFAULT_KEY_ON_PUBLIC=true for a throwaway setup)."
        )


@dataclass(frozen=True)
class Tls:
    """The certificate, key and client CA of the settings, read once (and checked) at start."""

    cert_file: str
    key_file: str
    client_ca_file: str | None
    cert: bytes
    key: bytes
    client_ca: bytes | None

    @classmethod
    def load(cls, settings: Settings) -> Tls | None:
        if not settings.tls_cert_file or not settings.tls_key_file:
            return None
        try:
            # What the HTTP listeners will do with the files, so a bad one stops the start here.
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
            if settings.tls_client_ca_file:
                context.load_verify_locations(settings.tls_client_ca_file)
            with open(settings.tls_cert_file, "rb") as cert, open(settings.tls_key_file, "rb") as key:
                cert_pem, key_pem = cert.read(), key.read()
            ca_pem = None
            if settings.tls_client_ca_file:
                with open(settings.tls_client_ca_file, "rb") as ca:
                    ca_pem = ca.read()
        except (OSError, ssl.SSLError) as exc:
            raise SystemExit(f"cannot use the TLS certificate, key or client CA: {exc}") from None
        return cls(settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file,
                   cert_pem, key_pem, ca_pem)

    def grpc_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials([(self.key, self.cert)], root_certificates=self.client_ca,
                                           require_client_auth=self.client_ca is not None)


def _uvicorn(app: Any, settings: Settings, port: int, tls: Tls | None) -> _Server:
    # No limit_concurrency: uvicorn counts open connections against it, so idle sockets took the
    # listener down; the app's `Guard` caps requests being served. No WebSocket: none is served.
    tls_options: dict[str, Any] = {}
    if tls is not None:
        tls_options = {"ssl_certfile": tls.cert_file, "ssl_keyfile": tls.key_file}
        if tls.client_ca_file:
            tls_options.update(ssl_ca_certs=tls.client_ca_file, ssl_cert_reqs=ssl.CERT_REQUIRED)
    return _Server(uvicorn.Config(
        app, host=settings.host, port=port, lifespan="off", access_log=False,
        log_level=settings.log_level, timeout_graceful_shutdown=20, timeout_keep_alive=5,
        http=GuardedHttp.with_timeout(settings.header_timeout), ws="none",
        backlog=1024, server_header=False, **tls_options,
    ))


def _tune_gc() -> None:
    """Ingest allocates millions of short-lived, acyclic objects while queued batches stay alive;
    with CPython's default thresholds the cyclic collector rescans them all the time (~25% of
    decode time in the benchmark). Freeze what start-up built and collect young objects less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _tune_malloc() -> None:
    """glibc raises its mmap threshold each time a large block (a request body) is freed, after which
    bodies come from the heap and fragment it, and every thread that allocates gets its own arena.
    Under overload that kept ~100 MiB of freed memory in the process. A fixed threshold and two
    arenas keep peak RSS near what is really live."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 128 * 1024)
        libc.mallopt(_M_ARENA_MAX, 2)
    except (OSError, AttributeError):
        pass  # not glibc: its allocator has its own policy


async def run(settings: Settings) -> None:
    _tune_malloc()
    tls = Tls.load(settings)
    hub = Hub(settings)
    hub.prepare()
    _tune_gc()
    try:
        refuse_unsafe_bind(hub)
        http_servers = [_uvicorn(create_app(hub), settings, settings.http_port, tls)]
        if settings.otlp_http_port:
            http_servers.append(_uvicorn(create_otlp_app(hub), settings, settings.otlp_http_port, tls))
        grpc_server = None
        if settings.otlp_grpc_port:
            grpc_server = create_server(hub.intake, settings.max_concurrent_requests)
            address = f"{settings.host}:{settings.otlp_grpc_port}"
            if tls is None:
                grpc_server.add_insecure_port(address)
            else:
                grpc_server.add_secure_port(address, tls.grpc_credentials())
            await grpc_server.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        tasks = [asyncio.create_task(s.serve()) for s in http_servers]
        log.info("tracehub on %s (%s): API and OTLP/HTTP :%d, OTLP/HTTP :%s, OTLP/gRPC :%s, database %s;"
                 " OTLP protobuf read by %s", settings.host,
                 "plain" if tls is None else "TLS" if tls.client_ca is None else "TLS, client certificates",
                 settings.http_port, settings.otlp_http_port or "off",
                 settings.otlp_grpc_port or "off", hub.engine.url.render_as_string(hide_password=True),
                 "the C reader" if otlp.wire_reader_in_use() else "protobuf")
        if settings.otlp_c_reader and otlp.WIRE_READER_PROBLEM:
            log.warning("the C reader of OTLP requests is not used: %s; protobuf decodes every request,"
                        " with about twice the CPU", otlp.WIRE_READER_PROBLEM)
        done, _ = await asyncio.wait([asyncio.create_task(stop.wait()), *tasks],
                                     return_when=asyncio.FIRST_COMPLETED)
        for server in http_servers:
            server.should_exit = True
        if grpc_server is not None:
            await grpc_server.stop(grace=20)
        await asyncio.gather(*tasks, return_exceptions=True)
        if any(t in done and not s.started for t, s in zip(tasks, http_servers)):
            raise SystemExit("could not start the HTTP listener (is the port in use?)")
    finally:
        await hub.decisions.aclose()  # the API's judge ran on this loop
        hub.close()


def serve(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(run(settings))
