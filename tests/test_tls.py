"""TLS on every listener (API port, OTLP/HTTP, OTLP/gRPC) from TRACEHUB_TLS_CERT_FILE / _KEY_FILE, and
client certificates with TRACEHUB_TLS_CLIENT_CA_FILE: the OTel SDK exporters' own certificate options
send spans that read back over HTTPS; plain HTTP and gRPC to the same ports fail."""

from __future__ import annotations

import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import grpc
import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from conftest import API_KEY, ServerProcess, Servers


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _issue(cwd: Path, name: str, usage: str, san: str | None) -> None:
    """A P-256 key `name.key` and its certificate `name.pem`, signed by the test CA."""
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=cwd)
    ext = ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature",
           f"extendedKeyUsage={usage}", "subjectKeyIdentifier=hash", "authorityKeyIdentifier=keyid"]
    if san:
        ext.append(f"subjectAltName={san}")
    (cwd / f"{name}.ext").write_text("\n".join(ext) + "\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-out", f"{name}.pem", "-extfile", f"{name}.ext", cwd=cwd)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA made for this run, a server certificate for 127.0.0.1 and localhost, a client certificate."""
    cwd = tmp_path_factory.mktemp("certs")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=tracehub test CA",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             cwd=cwd)
    _issue(cwd, "server", "serverAuth", "IP:127.0.0.1,DNS:localhost")
    _issue(cwd, "client", "clientAuth", None)
    return cwd


class TlsServer(ServerProcess):
    """A server whose listeners all speak TLS; its client trusts the test CA (and presents the client
    certificate when `client_cert`)."""

    def __init__(self, database_url: str, workdir: Path, certs: Path, client_ca: bool = False) -> None:
        env = {"TRACEHUB_TLS_CERT_FILE": str(certs / "server.pem"),
               "TRACEHUB_TLS_KEY_FILE": str(certs / "server.key")}
        if client_ca:
            env["TRACEHUB_TLS_CLIENT_CA_FILE"] = str(certs / "ca.pem")
        super().__init__(database_url, workdir, env)
        self.certs = certs
        self.url = self.url.replace("http://", "https://")
        self.otlp_http = self.otlp_http.replace("http://", "https://")
        self.client.close()
        self.client = httpx.Client(base_url=self.url, headers={"x-api-key": API_KEY}, timeout=30,
                                   verify=self.context(client_cert=client_ca))

    def context(self, client_cert: bool = False) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.certs / "ca.pem"))
        if client_cert:
            context.load_cert_chain(self.certs / "client.pem", self.certs / "client.key")
        return context

    def stop(self, sig: int = signal.SIGTERM) -> int:
        # An idle TLS keep-alive connection whose client does not read holds the graceful shutdown
        # (up to its 20 s) waiting for the answer to the server's close_notify.
        self.client.close()
        return super().stop(sig)

    def start(self) -> TlsServer:
        with open(self.workdir / f"server-{self.port}.log", "ab") as log:  # the process has its own copy
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tracehub", "serve", "--port", str(self.port),
                 "--otlp-http-port", str(self.otlp_http_port), "--otlp-grpc-port", str(self.grpc_port)],
                env=self.env(), cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log_text()}")
            try:
                if self.client.get("/healthz").status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not answer /healthz over TLS: {self.log_text()}")


@pytest.fixture(scope="module")
def tls_factory(certs: Path, tmp_path_factory: pytest.TempPathFactory,
                started_servers: Servers) -> Callable[..., TlsServer]:
    def make(client_ca: bool = False) -> TlsServer:
        workdir = tmp_path_factory.mktemp("tls")
        server = TlsServer(f"sqlite:///{workdir / 'tracehub.db'}", workdir, certs, client_ca)
        started_servers.append(server)
        return server.start()

    return make


@pytest.fixture(scope="module")
def tls_server(tls_factory: Callable[..., TlsServer]) -> TlsServer:
    return tls_factory()


@pytest.fixture()
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], tuple[str, list[ReadableSpan]]]]:
    """Finished SDK spans of a new trace, to hand to an exporter: (trace id, spans).

    requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a session's `verify`, which is where
    the HTTP exporter puts its certificate_file: set, they would make it trust the system's CAs only."""
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))

    def make(question: str) -> tuple[str, list[ReadableSpan]]:
        memory.clear()
        with provider.get_tracer("tls-test").start_as_current_span(
                "chat-request", attributes={"input.value": question}) as root:
            pass
        return format(root.get_span_context().trace_id, "032x"), list(memory.get_finished_spans())

    yield make
    provider.shutdown()


def _exporters(server: TlsServer, client_cert: bool, timeout: float = 10) -> dict[str, Any]:
    headers = {"x-api-key": API_KEY}
    ca = (server.certs / "ca.pem").read_bytes()
    client: dict[str, Any] = {}
    grpc_client: dict[str, bytes] = {}
    if client_cert:
        client = {"client_certificate_file": str(server.certs / "client.pem"),
                  "client_key_file": str(server.certs / "client.key")}
        grpc_client = {"private_key": (server.certs / "client.key").read_bytes(),
                       "certificate_chain": (server.certs / "client.pem").read_bytes()}
    return {
        "grpc": lambda: GrpcExporter(endpoint=f"https://{server.otlp_grpc}", headers=headers, timeout=timeout,
                                     credentials=grpc.ssl_channel_credentials(root_certificates=ca, **grpc_client)),
        "http": lambda: HttpExporter(endpoint=server.otlp_http + "/v1/traces", headers=headers, timeout=timeout,
                                     certificate_file=str(server.certs / "ca.pem"), **client),
        "http-main-port": lambda: HttpExporter(endpoint=server.url + "/v1/traces", headers=headers, timeout=timeout,
                                               certificate_file=str(server.certs / "ca.pem"), **client),
    }


@pytest.mark.parametrize("transport", ["grpc", "http", "http-main-port"])
def test_otel_exporters_send_over_tls_and_the_trace_reads_back_over_https(
        tls_server: TlsServer, spans: Callable[[str], tuple[str, list[ReadableSpan]]], transport: str) -> None:
    trace_id, finished = spans(f"환불 over TLS via {transport}")
    exporter = _exporters(tls_server, client_cert=False)[transport]()
    try:
        assert exporter.export(finished) == SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    detail = tls_server.wait_trace(trace_id)
    assert detail["trace"]["input_text"] == f"환불 over TLS via {transport}"


def test_plain_http_and_grpc_to_the_tls_ports_fail(
        tls_server: TlsServer, spans: Callable[[str], tuple[str, list[ReadableSpan]]]) -> None:
    for url in (tls_server.url, tls_server.otlp_http):
        plain = url.replace("https://", "http://")
        with pytest.raises(httpx.TransportError):
            httpx.get(plain + "/healthz", timeout=5)
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(url + "/healthz", timeout=5)  # the system's CAs do not know the test CA
    trace_id, finished = spans("plain gRPC")
    exporter = GrpcExporter(endpoint=tls_server.otlp_grpc, insecure=True, headers={"x-api-key": API_KEY},
                            timeout=2)
    try:
        assert exporter.export(finished) == SpanExportResult.FAILURE
    finally:
        exporter.shutdown()
    assert tls_server.client.get(f"/api/v1/traces/{trace_id}").status_code == 404


def test_client_certificates_are_required_with_a_client_ca(
        tls_factory: Callable[..., TlsServer], spans: Callable[[str], tuple[str, list[ReadableSpan]]]) -> None:
    server = tls_factory(client_ca=True)
    for url in (server.url, server.otlp_http):
        with pytest.raises(httpx.TransportError):  # trusts the server, but presents no certificate
            with httpx.Client(verify=server.context()) as anonymous:
                anonymous.get(url + "/healthz", timeout=5)
    for transport in ("grpc", "http"):
        trace_id, finished = spans(f"no client certificate via {transport}")
        exporter = _exporters(server, client_cert=False, timeout=2)[transport]()
        try:
            assert exporter.export(finished) == SpanExportResult.FAILURE
        finally:
            exporter.shutdown()
    for transport in ("grpc", "http", "http-main-port"):
        trace_id, finished = spans(f"client certificate via {transport}")
        exporter = _exporters(server, client_cert=True)[transport]()
        try:
            assert exporter.export(finished) == SpanExportResult.SUCCESS
        finally:
            exporter.shutdown()
        assert server.wait_trace(trace_id)["trace"]["input_text"] == f"client certificate via {transport}"


@pytest.mark.parametrize("env, message", [
    ({"TRACEHUB_TLS_CERT_FILE": "{certs}/server.pem"}, "go together"),
    ({"TRACEHUB_TLS_CLIENT_CA_FILE": "{certs}/ca.pem"}, "needs TRACEHUB_TLS_CERT_FILE"),
    ({"TRACEHUB_TLS_CERT_FILE": "{certs}/server.pem", "TRACEHUB_TLS_KEY_FILE": "{certs}/client.key"},
     "cannot use the TLS certificate"),
    ({"TRACEHUB_TLS_CERT_FILE": "{certs}/missing.pem", "TRACEHUB_TLS_KEY_FILE": "{certs}/server.key"},
     "cannot use the TLS certificate"),
])
def test_a_wrong_tls_setting_stops_the_start_with_the_reason(certs: Path, tmp_path: Path, env: dict[str, str],
                                                             message: str) -> None:
    server = ServerProcess(f"sqlite:///{tmp_path / 'tracehub.db'}", tmp_path,
                           {k: v.format(certs=certs) for k, v in env.items()})
    try:
        r = server.cli("serve", "--port", str(server.port), "--otlp-http-port", "0",
                       "--otlp-grpc-port", str(server.grpc_port))
    finally:
        server.client.close()
    assert r.returncode != 0 and message in r.stderr, r.stderr
    assert r.stdout == ""
