"""The local development stack: Redis (AOF on), S3 (rclone) and the Mongo stand-in in one directory.

Layout of the stack directory::

    DIR/env           KEY=VALUE lines for the orchestrator and AWS clients (mode 0600: a secret)
    DIR/stack.json    pids, ports and urls of the running servers (read by ``down``)
    DIR/redis/ s3/ mongo/   each server's data and log

:func:`up` is idempotent (a running stack is left alone, a half-dead one is cleaned up first) and
:func:`down` stops exactly the recorded pids, after checking each is still the process we started.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.devstack.servers import (
    ServerProcess,
    ServerStartError,
    start_mongo,
    start_redis,
    start_s3,
)
from orchestrator.errors import OrchestratorError

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

DEFAULT_DIR = Path(".orchestrator-dev")
"""Default stack directory, relative to the current directory."""

BUCKET = "orchestrator"
S3_PREFIX = "dev"
REGION = "us-east-1"

REDIS_URL = "ORCHESTRATOR_REDIS_URL"
MONGO_URL = "ORCHESTRATOR_MONGO_URL"
S3_URL = "ORCHESTRATOR_S3_URL"
S3_ENDPOINT_URL = "ORCHESTRATOR_S3_ENDPOINT_URL"
AWS_ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"
AWS_SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"
AWS_DEFAULT_REGION = "AWS_DEFAULT_REGION"
AWS_RESPONSE_CHECKSUM_VALIDATION = "AWS_RESPONSE_CHECKSUM_VALIDATION"
AWS_REQUEST_CHECKSUM_CALCULATION = "AWS_REQUEST_CHECKSUM_CALCULATION"

STACK_ENV_KEYS: tuple[str, ...] = (
    REDIS_URL,
    MONGO_URL,
    S3_URL,
    S3_ENDPOINT_URL,
    AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY,
    AWS_DEFAULT_REGION,
    AWS_RESPONSE_CHECKSUM_VALIDATION,
    AWS_REQUEST_CHECKSUM_CALCULATION,
)
"""Every key written to ``DIR/env`` (and provided by the test fixture ``stack_env``)."""

SECRET_KEYS = frozenset({AWS_SECRET_ACCESS_KEY})
"""Keys whose values are never printed."""

ENV_FILE = "env"
STACK_FILE = "stack.json"
_STACK_ENTRIES = frozenset({ENV_FILE, STACK_FILE, "redis", "s3", "mongo"})


class StackError(OrchestratorError):
    """The stack directory is unusable (corrupt state file, refusing to purge foreign files)."""


def stack_env(
    *,
    redis_url: str,
    mongo_url: str,
    s3_url: str,
    s3_endpoint_url: str,
    access_key: str,
    secret_key: str,
) -> dict[str, str]:
    """The environment that points the orchestrator and AWS clients at a set of servers."""
    return {
        REDIS_URL: redis_url,
        MONGO_URL: mongo_url,
        S3_URL: s3_url,
        S3_ENDPOINT_URL: s3_endpoint_url,
        AWS_ACCESS_KEY_ID: access_key,
        AWS_SECRET_ACCESS_KEY: secret_key,
        AWS_DEFAULT_REGION: REGION,
        AWS_RESPONSE_CHECKSUM_VALIDATION: "when_required",
        AWS_REQUEST_CHECKSUM_CALCULATION: "when_required",
    }


def new_credentials() -> tuple[str, str]:
    """A random (access key, secret key) pair for the local S3 server."""
    return "DEV" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30)


def s3_client(endpoint_url: str, access_key: str, secret_key: str) -> S3Client:
    """A boto3 client for the dev stack's S3 server (checksums only where S3 requires them,
    as rclone's server does not send the newer ones)."""
    import boto3  # noqa: PLC0415 - slow import, only needed here
    from botocore.config import Config  # noqa: PLC0415

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=REGION,
        config=Config(
            response_checksum_validation="when_required",
            request_checksum_calculation="when_required",
        ),
    )


def ensure_bucket(endpoint_url: str, access_key: str, secret_key: str, bucket: str) -> None:
    """Create ``bucket`` on the S3 server unless it already exists."""
    from botocore.exceptions import ClientError  # noqa: PLC0415

    client = s3_client(endpoint_url, access_key, secret_key)
    try:
        client.create_bucket(Bucket=bucket)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code not in ("BucketAlreadyExists", "BucketAlreadyOwnedByYou"):
            raise
    finally:
        client.close()


def write_env_file(path: Path, env: dict[str, str]) -> None:
    """Write shell-sourceable ``KEY=VALUE`` lines, readable by the owner only."""
    text = "".join(f"{key}={shlex.quote(value)}\n" for key, value in env.items())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(text)


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a file written by :func:`write_env_file`."""
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, raw = line.partition("=")
        if not sep:
            raise StackError(f"{path}: not a KEY=VALUE line: {line!r}")
        values = shlex.split(raw)
        env[key.strip()] = values[0] if values else ""
    return env


def _server_record(server: ServerProcess) -> dict[str, Any]:
    return {
        "name": server.name,
        "pid": server.pid,
        "host": server.host,
        "port": server.port,
        "url": server.url,
        "data_dir": str(server.data_dir),
        "log_path": str(server.log_path),
        "marker": server.marker,
    }


def _server_from_record(record: dict[str, Any]) -> ServerProcess:
    return ServerProcess(
        name=str(record["name"]),
        pid=int(record["pid"]),
        host=str(record["host"]),
        port=int(record["port"]),
        url=str(record["url"]),
        data_dir=Path(record["data_dir"]),
        log_path=Path(record["log_path"]),
        marker=str(record["marker"]),
    )


@dataclass
class DevStack:
    """A started (or loaded) local stack; ``env`` holds every key of :data:`STACK_ENV_KEYS`."""

    directory: Path
    servers: dict[str, ServerProcess]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def env_file(self) -> Path:
        """Path of the ``KEY=VALUE`` file."""
        return self.directory / ENV_FILE

    @classmethod
    def start(cls, directory: Path) -> DevStack:
        """Start all three servers under ``directory`` and write ``env`` and ``stack.json``.

        On failure every server already started is stopped and :class:`ServerStartError` raised.
        """
        directory = directory.resolve()
        directory.mkdir(parents=True, exist_ok=True)
        access_key, secret_key = new_credentials()
        servers: dict[str, ServerProcess] = {}
        try:
            servers["redis"] = start_redis(directory / "redis", appendonly=True)
            s3 = start_s3(directory / "s3", access_key=access_key, secret_key=secret_key)
            servers["s3"] = s3
            ensure_bucket(s3.url, access_key, secret_key, BUCKET)
            servers["mongo"] = start_mongo(directory / "mongo")
        except BaseException:
            for server in servers.values():
                server.stop()
            raise
        env = stack_env(
            redis_url=servers["redis"].url,
            mongo_url=servers["mongo"].url,
            s3_url=f"s3://{BUCKET}/{S3_PREFIX}",
            s3_endpoint_url=servers["s3"].url,
            access_key=access_key,
            secret_key=secret_key,
        )
        stack = cls(directory=directory, servers=servers, env=env)
        write_env_file(stack.env_file, env)
        state = {"servers": [_server_record(s) for s in servers.values()]}
        (directory / STACK_FILE).write_text(json.dumps(state, indent=2) + "\n")
        return stack

    @classmethod
    def load(cls, directory: Path) -> DevStack | None:
        """The stack recorded in ``directory``, or None if there is no ``stack.json``."""
        directory = directory.resolve()
        state_path = directory / STACK_FILE
        try:
            state = json.loads(state_path.read_text())
            servers = [_server_from_record(r) for r in state["servers"]]
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            raise StackError(f"{state_path} is corrupt ({exc}); remove it and retry") from exc
        env_path = directory / ENV_FILE
        env = read_env_file(env_path) if env_path.exists() else {}
        return cls(directory=directory, servers={s.name: s for s in servers}, env=env)

    def running(self) -> bool:
        """True if every recorded server is alive and still the process we started."""
        return bool(self.servers) and all(s.alive() for s in self.servers.values())

    def stop(self, timeout_s: float = 10.0) -> list[str]:
        """Stop the recorded servers that are still ours, forget the state; return their names."""
        stopped: list[str] = []
        for server in self.servers.values():
            if server.alive():
                server.stop(timeout_s)
                stopped.append(server.name)
        (self.directory / STACK_FILE).unlink(missing_ok=True)
        return stopped


@dataclass(frozen=True)
class UpResult:
    """What :func:`up` did: ``started`` is False if the stack was already running."""

    stack: DevStack
    started: bool


def up(directory: Path) -> UpResult:
    """Start the stack in ``directory`` unless it already runs there (stale state is cleaned)."""
    existing = DevStack.load(directory)
    if existing is not None:
        if existing.running():
            return UpResult(stack=existing, started=False)
        existing.stop()
    return UpResult(stack=DevStack.start(directory), started=True)


def down(directory: Path, *, purge: bool = False) -> list[str]:
    """Stop the stack recorded in ``directory``; return the names of the servers stopped.

    With ``purge`` the directory is deleted too, but only if it holds nothing but stack files.
    """
    directory = directory.resolve()
    stack = DevStack.load(directory)
    stopped = stack.stop() if stack is not None else []
    if purge and directory.exists():
        foreign = sorted(p.name for p in directory.iterdir() if p.name not in _STACK_ENTRIES)
        if foreign:
            raise StackError(
                f"not purging {directory}: it holds files the dev stack did not create: "
                + ", ".join(foreign[:5])
            )
        shutil.rmtree(directory)
    return stopped


__all__ = [
    "BUCKET",
    "DEFAULT_DIR",
    "SECRET_KEYS",
    "STACK_ENV_KEYS",
    "DevStack",
    "ServerStartError",
    "StackError",
    "UpResult",
    "down",
    "ensure_bucket",
    "read_env_file",
    "stack_env",
    "up",
    "write_env_file",
]
