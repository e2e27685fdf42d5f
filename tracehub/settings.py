"""Settings: declared once, each with a default, an environment variable and a help string.

The CLI builds one frozen `Settings` from flags and `TRACEHUB_*` variables and passes it down; no
component reads the environment itself.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from dataclasses import dataclass, field, fields
from typing import Any


def _setting(default: Any, help: str, flag: str | None = None) -> Any:
    return field(default=default, metadata={"help": help, "flag": flag})


@dataclass(frozen=True)
class Settings:
    host: str = _setting("127.0.0.1", "Address every listener binds to.", "--host")
    http_port: int = _setting(8000, "REST API, web UI and OTLP/HTTP port.", "--port")
    otlp_grpc_port: int = _setting(4317, "OTLP/gRPC port (0 disables it).", "--otlp-grpc-port")
    otlp_http_port: int = _setting(4318, "Dedicated OTLP/HTTP port (0 disables it).", "--otlp-http-port")
    database_url: str = _setting(
        "sqlite:///./tracehub.db",
        "SQLAlchemy URL: sqlite:///PATH (default) or postgresql+psycopg://USER@HOST/DB.",
        "--database-url",
    )
    max_request_bytes: int = _setting(
        16 * 1024 * 1024, "Largest accepted request body after decompression, in bytes."
    )
    queue_max_spans: int = _setting(
        20_000, "Spans waiting for the writer before ingest answers 429 / RESOURCE_EXHAUSTED."
    )
    max_inflight_bytes: int = _setting(
        128 * 1024 * 1024,
        "Memory of the requests being read, decoded or written at once, counted as 7 bytes per"
        " decompressed body byte (body, decoded records, encoded rows); beyond it ingest answers"
        " 429 / RESOURCE_EXHAUSTED. Bounds memory under overload.",
    )
    max_concurrent_requests: int = _setting(
        256, "Concurrent requests per listener (idle connections do not count); beyond it HTTP answers"
        " 503 with Retry-After (OTLP's Status on OTLP paths, problem+json elsewhere) and gRPC"
        " RESOURCE_EXHAUSTED."
    )
    header_timeout: int = _setting(
        10, "Seconds an HTTP client has to send a request's headers, counted from its connection or from"
        " the request's first byte; slower connections are closed (slowloris). Idle keep-alive"
        " connections are closed after 5 s."
    )
    writer_batch_spans: int = _setting(
        5_000, "Most spans the writer groups into one transaction."
    )
    decode_workers: int = _setting(
        -1,
        "Processes that decode OTLP traces beside the writer; 0 decodes in the server process."
        " -1 (default): one per core but one, and one fewer (but at least one) when PostgreSQL runs on this machine"
        " (it needs a core), at most 4.",
    )
    decode_worker_nice: int = _setting(
        10, "Lower CPU priority (nice increment, 0-19) of the decode workers: on a full CPU the writer,"
        " a local database's backend and API reads go first, while requests wait for the writer anyway."
        " 0 keeps the server's priority."
    )
    otlp_c_reader: bool = _setting(
        True, "Read OTLP protobuf trace requests with the C reader the install built (where a C compiler"
        " was); false: protobuf reads them, to compare the two or to rule the reader out."
    )
    allow_default_key_on_public: bool = _setting(
        False, "Accept the default dev-key on a non-loopback --host, and start there while it is the only"
        " key (a throwaway setup)."
    )
    missing_parent_grace_s: int = _setting(
        30, "Seconds a trace waits for a parent span that its spans name and that has not arrived, once"
        " every stored span ended; then the parent is shown as not received and the trace is complete."
        " Spans whose OTLP flags mark the parent remote (W3C traceparent) never wait."
    )
    decisions: bool = _setting(
        True, "Automatic decisions: a trace that completed and has been quiet for DECISION_SETTLE_S is"
        " decided by its project's active policy (projects with auto_decide). false: only"
        " POST /api/v1/decide decides."
    )
    decision_settle_s: float = _setting(
        2.0, "Seconds a completed trace must be quiet (no span or event written to it) before it is"
        " decided automatically: exporters send a trace's spans in several batches."
    )
    retention_interval_s: float = _setting(
        600.0, "Seconds between the server's retention passes, which delete the traces of projects with a"
        " retention (tracehub projects set-retention, PATCH /api/v1/project) once their last activity is"
        " older; the first pass runs a minute after start. 0: the server never prunes (tracehub prune still does)."
    )
    ui_session_hours: float = _setting(
        12.0, "Hours a web UI sign-in lasts; revoking its API key or signing out ends it sooner."
    )
    tls_cert_file: str | None = _setting(
        None, "PEM certificate (chain, server's first) every listener serves TLS with: the API port,"
        " OTLP/HTTP and OTLP/gRPC. Needs TLS_KEY_FILE; unset: plain HTTP and gRPC."
    )
    tls_key_file: str | None = _setting(None, "PEM private key of TLS_CERT_FILE (unencrypted).")
    tls_client_ca_file: str | None = _setting(
        None, "PEM CA certificates for mutual TLS: every listener then requires a client certificate"
        " signed by one of them (needs TLS_CERT_FILE)."
    )
    cors_allowed_origins: str | None = _setting(
        None, "Comma-separated origins (https://app.example.com) whose pages may send OTLP/HTTP to"
        " /v1/traces and /v1/logs (browser exporters); * allows any. Unset: no CORS answers."
    )
    log_level: str = _setting("info", "Log level: debug, info, warning, error.")
    prices_file: str | None = _setting(
        None, "JSON or YAML model price table (USD per 1M input / output tokens) whose models win over"
        ' genai-prices\' catalogue: {"models": {"my-model": {"input": 1.0, "output": 2.0}}}.'
    )
    judge: str = _setting(
        "heuristic", "Judge of decisions: heuristic (the policy's verdict, in process) or llm (an"
        " OpenAI-compatible chat completions endpoint reviews the verdict; needs the LLM_JUDGE_ settings)."
    )
    llm_judge_base_url: str | None = _setting(
        None, "Base URL of the LLM judge's OpenAI-compatible API, e.g. http://127.0.0.1:11434/v1"
        " (POST {base}/chat/completions)."
    )
    llm_judge_model: str | None = _setting(None, "Model name the LLM judge asks for.")
    llm_judge_api_key: str | None = _setting(
        None, "Key the LLM judge sends as Authorization: Bearer (none: no Authorization header)."
    )
    llm_judge_timeout_s: float = _setting(
        10.0, "Seconds an LLM judge call may take in all; past it the call is recorded as a timeout and"
        " the fallback decides."
    )
    llm_judge_fallback: str = _setting(
        "heuristic", "What decides when the LLM judge fails (invalid output, timeout, HTTP or connection"
        " error): heuristic (the policy's verdict) or an action such as BLOCK or ESCALATE."
    )
    webhook_allow: str | None = _setting(
        None, "Comma-separated hosts and CIDRs (127.0.0.1, 10.0.0.0/8, hooks.internal) that webhooks may"
        " target although they are on loopback, private, link-local, multicast or reserved addresses,"
        " which are refused otherwise (checked at registration and after DNS resolution at delivery)."
    )
    webhook_timeout_s: float = _setting(10.0, "Seconds a webhook delivery may take in all before it counts"
                                        " as failed and is retried.")
    webhook_max_attempts: int = _setting(
        8, "Delivery attempts of a webhook notification before it is given up (status failed)."
    )
    webhook_retry_initial_s: float = _setting(
        30.0, "Seconds before a failed webhook delivery's first retry; each further retry waits twice as"
        " long (plus up to this much random jitter), at most WEBHOOK_RETRY_MAX_S."
    )
    webhook_retry_max_s: float = _setting(21_600.0, "Longest wait between two webhook delivery attempts.")

    def __post_init__(self) -> None:
        if not 0 <= self.decode_worker_nice <= 19:  # a negative one needs privileges workers lack
            raise SystemExit(f"{env_name('decode_worker_nice')}={self.decode_worker_nice} is not within 0-19")
        if self.judge not in ("heuristic", "llm"):
            raise SystemExit(f"{env_name('judge')}={self.judge!r} is not heuristic or llm")
        if self.judge == "llm" and not (self.llm_judge_base_url and self.llm_judge_model):
            raise SystemExit(f"{env_name('judge')}=llm needs {env_name('llm_judge_base_url')} and"
                             f" {env_name('llm_judge_model')}")
        if not self.retention_interval_s >= 0:  # also refuses nan
            raise SystemExit(f"{env_name('retention_interval_s')}={self.retention_interval_s} is below 0")
        if not 0 < self.llm_judge_timeout_s <= 600:  # also refuses nan
            raise SystemExit(f"{env_name('llm_judge_timeout_s')}={self.llm_judge_timeout_s} is not within"
                             " (0, 600] seconds")
        if not 0 < self.webhook_timeout_s <= 600:
            raise SystemExit(f"{env_name('webhook_timeout_s')}={self.webhook_timeout_s} is not within (0, 600]")
        if self.webhook_max_attempts < 1:
            raise SystemExit(f"{env_name('webhook_max_attempts')} must be at least 1")
        if not 0 < self.webhook_retry_initial_s <= self.webhook_retry_max_s:
            raise SystemExit(f"{env_name('webhook_retry_initial_s')} must be above 0 and at most"
                             f" {env_name('webhook_retry_max_s')}")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise SystemExit(f"{env_name('tls_cert_file')} and {env_name('tls_key_file')} go together")
        if self.tls_client_ca_file and not self.tls_cert_file:
            raise SystemExit(f"{env_name('tls_client_ca_file')} needs {env_name('tls_cert_file')}")
        for entry in self.webhook_allow_list:
            if "/" in entry:
                try:
                    ipaddress.ip_network(entry, strict=False)
                except ValueError:
                    raise SystemExit(f"{env_name('webhook_allow')}: {entry!r} is not a CIDR") from None

    @property
    def binds_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def webhook_allow_list(self) -> tuple[str, ...]:
        return tuple(e.strip().lower() for e in (self.webhook_allow or "").split(",") if e.strip())

    @property
    def cors_origins(self) -> tuple[str, ...]:
        return tuple(e.strip() for e in (self.cors_allowed_origins or "").split(",") if e.strip())

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Environment (`TRACEHUB_<NAME>`) over defaults, explicit overrides over both."""
        environ = dict(os.environ if environ is None else environ)
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(env_name(f.name))
            if raw is not None:
                values[f.name] = _coerce(f.type, raw, f.name)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def env_name(name: str) -> str:
    return "TRACEHUB_" + name.upper()


_TRUE = frozenset(("true", "1", "yes", "on"))
_FALSE = frozenset(("false", "0", "no", "off"))


def parse_bool(raw: str, variable: str) -> bool:
    """A boolean setting's value; anything else stops the start (a typo must not read as false)."""
    word = raw.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise SystemExit(f"{variable}={raw!r} is not a boolean: use true/false, 1/0, yes/no or on/off"
                     " (any case)")


def _coerce(type_name: Any, raw: str, name: str) -> Any:
    kind = type_name if isinstance(type_name, str) else type_name.__name__
    if kind == "int":
        try:
            return int(raw)
        except ValueError:
            raise SystemExit(f"{env_name(name)}={raw!r} is not an integer") from None
    if kind == "float":
        try:
            return float(raw)
        except ValueError:
            raise SystemExit(f"{env_name(name)}={raw!r} is not a number") from None
    if kind == "bool":
        return parse_bool(raw, env_name(name))
    if kind.endswith("| None") and not raw.strip():
        return None  # an empty optional setting means "not set"
    return raw


def describe() -> list[tuple[str, str, Any, str, str | None]]:
    """(field, env var, default, help, flag) for every setting; the CLI and the docs use it."""
    return [(f.name, env_name(f.name), f.default, f.metadata["help"], f.metadata["flag"])
            for f in fields(Settings)]
