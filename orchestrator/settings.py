"""Settings, read once at the edge (the CLI) from ``ORCHESTRATOR_*`` environment variables.

Library code never reads ``os.environ``: it receives a ``Settings`` (or plain values).
"""

from __future__ import annotations

import os
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from orchestrator.core.auth import MIN_KEY_BYTES
from orchestrator.core.spec import MAX_SPEC_BYTES
from orchestrator.envcheck import warn_unknown_variables
from orchestrator.errors import ConfigError
from orchestrator.health.address import parse_address
from orchestrator.tls import TLSFiles, check_tls_files, mongo_tls_options, redis_tls_options

#: ``ORCHESTRATOR_MONGO_URL`` for the in-memory job store (``orchestrator daemon`` only).
MEMORY_STORE = "memory://"

class Settings(BaseSettings):
    """Every knob, with its default; the README table is generated from this class."""

    model_config = SettingsConfigDict(env_prefix="ORCHESTRATOR_", extra="ignore", frozen=True)

    redis_url: Annotated[str, Field(description=(
        "Redis (or Valkey) URL; `redis+cluster://HOST:PORT` (`rediss+cluster://` with TLS) "
        "for a Redis Cluster, reached through any of its nodes"))] = (
        "redis://127.0.0.1:6379/0"
    )
    redis_ca_file: Annotated[str | None, Field(description=(
        "PEM CA bundle that verifies the Redis server (with a `rediss://` URL; default: the "
        "system's trust store)"))] = None
    redis_cert_file: Annotated[str | None, Field(description=(
        "client certificate (PEM) for mutual TLS with Redis"))] = None
    redis_key_file: Annotated[str | None, Field(description=(
        "the client certificate's private key (PEM) for Redis"))] = None
    mongo_url: Annotated[str, Field(description=(
        "MongoDB URL; `memory://` keeps jobs in the daemon's own memory (one daemon, nothing "
        "survives it, no other process can read them: for benchmarks and trials)"))] = (
        "mongodb://127.0.0.1:27017/")
    mongo_db: Annotated[str, Field(description="MongoDB database name")] = "orchestrator"
    mongo_ca_file: Annotated[str | None, Field(description=(
        "PEM CA bundle that verifies MongoDB; turns TLS on (like `tls=true&tlsCAFile=` in the "
        "URL)"))] = None
    mongo_cert_file: Annotated[str | None, Field(description=(
        "client certificate and key in one PEM file, for mutual TLS with MongoDB; turns TLS "
        "on"))] = None
    s3_url: Annotated[
        str, Field(description="checkpoint store: s3://bucket/prefix, file:///dir or memory://name")
    ] = "file:///tmp/orchestrator-checkpoints"
    s3_endpoint_url: Annotated[str | None, Field(description="S3 endpoint (MinIO, rclone)")] = None
    s3_ca_file: Annotated[str | None, Field(description=(
        "PEM CA bundle that verifies an `https://` S3 endpoint (default: the system's, or "
        "`AWS_CA_BUNDLE`)"))] = None
    s3_cert_file: Annotated[str | None, Field(description=(
        "client certificate (PEM) for mutual TLS with S3"))] = None
    s3_key_file: Annotated[str | None, Field(description=(
        "the client certificate's private key (PEM) for S3"))] = None
    namespace: Annotated[
        str, Field(description="prefix of every Redis key", pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    ] = "orchestrator"
    event_shards: Annotated[int, Field(ge=1, le=1024, description="event stream shards")] = 4
    batch_size: Annotated[int, Field(ge=1, le=10_000, description="events per read")] = 200
    block_ms: Annotated[int, Field(ge=1, le=60_000, description="XREADGROUP block time")] = 1000
    max_deliveries: Annotated[
        int, Field(ge=1, le=1000, description="deliveries before dead-letter")
    ] = 5
    reclaim_idle_ms: Annotated[int, Field(ge=100, description="XAUTOCLAIM min idle")] = 30_000
    reaper_interval_s: Annotated[float, Field(gt=0, description="deadline scan period")] = 0.5
    worker_ttl_s: Annotated[float, Field(gt=0, description="worker registration TTL")] = 10.0
    storage_retry_s: Annotated[float, Field(ge=0, le=86_400, description=(
        "how long a worker retries an unreachable object store (uploads, downloads, "
        "put_blob/get_blob) before the participant fails with storage_unavailable"))] = 60.0
    connect_timeout_s: Annotated[float, Field(gt=0, le=600, description=(
        "how long a command (`orchestrator submit`, `status`, `watch`, …) and the Python "
        "client wait for Redis or MongoDB on first use before calling it unreachable"))] = 3.0
    stream_maxlen: Annotated[int, Field(ge=1000, description="approx. stream cap")] = 1_000_000
    max_submission_bytes: Annotated[
        int, Field(ge=1024, description="largest accepted submission entry")
    ] = MAX_SPEC_BYTES
    data_root: Annotated[str | None, Field(description=(
        "worker only (`--data-root`): the directory participants' `data_path` is relative to; "
        "absolute paths and paths leaving it are refused"))] = None
    consumer_name: Annotated[
        str | None, Field(description="stable consumer name of this replica (default host-pid)")
    ] = None
    metrics_addr: Annotated[str | None, Field(description=(
        "`HOST:PORT`, `:PORT` or `PORT` (then 127.0.0.1) where `orchestrator daemon` and "
        "`orchestrator worker` serve `/metrics`, `/healthz` and `/readyz` (`--metrics-addr`); "
        "off when unset or empty"))] = None
    log_level: Annotated[
        Literal["debug", "info", "warning", "error"], Field(description="log level")
    ] = "info"
    log_format: Annotated[
        Literal["auto", "json", "console"],
        Field(description="auto = JSON unless stderr is a terminal"),
    ] = "auto"
    redis_password: Annotated[
        SecretStr | None, Field(description="Redis password (never logged)")
    ] = None
    daemon_key: Annotated[SecretStr | None, Field(description=(
        "daemon only: the key every daemon replica shares (at least 16 bytes; never logged); "
        "participant run secrets and mailbox keys derive from it. `orchestrator daemon` "
        "refuses to start without it or `ORCHESTRATOR_DAEMON_KEY_FILE`"))] = None
    daemon_key_file: Annotated[str | None, Field(description=(
        "daemon only: a file holding the daemon key (surrounding whitespace ignored), "
        "instead of `ORCHESTRATOR_DAEMON_KEY`"))] = None

    def daemon_key_bytes(self) -> bytes | None:
        """The daemon key (from ``daemon_key`` or ``daemon_key_file``), or None when neither
        is set. Never log or print it. Raises ``ConfigError`` for an unreadable file, both
        set, or a key shorter than 16 bytes."""
        if self.daemon_key is not None and self.daemon_key_file is not None:
            raise ConfigError("set ORCHESTRATOR_DAEMON_KEY or ORCHESTRATOR_DAEMON_KEY_FILE, "
                              "not both")
        if self.daemon_key is not None:
            key = self.daemon_key.get_secret_value().strip().encode()
            where = "ORCHESTRATOR_DAEMON_KEY"
        elif self.daemon_key_file is not None:
            where = f"ORCHESTRATOR_DAEMON_KEY_FILE {self.daemon_key_file}"
            try:
                with open(self.daemon_key_file, "rb") as handle:
                    key = handle.read(4096).strip()
            except OSError as exc:
                raise ConfigError(f"cannot read {where}: {exc.strerror or exc}") from exc
        else:
            return None
        if len(key) < MIN_KEY_BYTES:
            raise ConfigError(f"the daemon key ({where}) is {len(key)} bytes; it must be at "
                              f"least {MIN_KEY_BYTES}")
        return key

    @property
    def redis_tls(self) -> TLSFiles:
        """The PEM files of the Redis connection (used with a ``rediss://`` URL)."""
        return TLSFiles(self.redis_ca_file, self.redis_cert_file, self.redis_key_file)

    @property
    def mongo_tls(self) -> TLSFiles:
        """The PEM files of the MongoDB connection (any one turns TLS on)."""
        return TLSFiles(self.mongo_ca_file, self.mongo_cert_file)

    @property
    def s3_tls(self) -> TLSFiles:
        """The PEM files of an ``https://`` S3 endpoint."""
        return TLSFiles(self.s3_ca_file, self.s3_cert_file, self.s3_key_file)

    @model_validator(mode="after")
    def _tls_usable(self) -> Settings:
        """Unreadable TLS files, a key without its certificate, or TLS files with a plain
        ``redis://`` URL fail at startup, naming the variable, not at the first handshake."""
        try:
            for files, prefix in ((self.redis_tls, "REDIS"), (self.mongo_tls, "MONGO"),
                                  (self.s3_tls, "S3")):
                check_tls_files(files, prefix)
            redis_tls_options(self.redis_url, self.redis_tls)
            mongo_tls_options(self.mongo_tls)
        except ConfigError as exc:
            raise ValueError(str(exc)) from exc
        return self

    @property
    def redis_password_plain(self) -> str | None:
        """The Redis password in clear, for the client only (never log or print it)."""
        return self.redis_password.get_secret_value() if self.redis_password else None

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://", "redis+cluster://",
                                 "rediss+cluster://")):
            msg = ("must start with redis://, rediss://, unix://, redis+cluster:// or "
                   f"rediss+cluster:// (got {value!r})")
            raise ValueError(msg)
        return value

    @field_validator("metrics_addr")
    @classmethod
    def _metrics_addr(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None  # unset or empty: off (an image's default can be switched off)
        parse_address(value)  # raises ValueError naming the problem
        return value

    @field_validator("mongo_url")
    @classmethod
    def _mongo_scheme(cls, value: str) -> str:
        if not value.startswith(("mongodb://", "mongodb+srv://")) and value != MEMORY_STORE:
            msg = (f"must start with mongodb:// or mongodb+srv://, or be {MEMORY_STORE} "
                   f"(got {value!r})")
            raise ValueError(msg)
        return value

    @field_validator("s3_url")
    @classmethod
    def _store_scheme(cls, value: str) -> str:
        if not value.startswith(("s3://", "file://", "memory://")):
            msg = f"must start with s3://, file:// or memory:// (got {value!r})"
            raise ValueError(msg)
        return value


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, turning validation errors into ``ConfigError``;
    a misspelt ``ORCHESTRATOR_*`` variable gets a warning on stderr (``orchestrator.envcheck``)."""
    warn_unknown_variables(os.environ, Settings.model_fields)
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"ORCHESTRATOR_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            if err["loc"] else str(err["msg"]).removeprefix("Value error, ")
            for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from exc


def env_table() -> str:
    """The README's configuration table, generated from the model (kept in sync by a test)."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "—" if default is None else f"`{default}`"
        if isinstance(default, SecretStr):
            shown = "—"
        rows.append(f"| `ORCHESTRATOR_{name.upper()}` | {shown} | {field.description or ''} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(env_table())
