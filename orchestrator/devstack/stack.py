"""The local development stack: Redis (AOF on), S3 (rclone) and the Mongo stand-in in one directory.

Layout of the stack directory::

    DIR/env           KEY=VALUE lines for the orchestrator and AWS clients (mode 0600: a secret);
                      its ORCHESTRATOR_REDIS_URL is the *submitter*'s (the CLI: submit, cancel,
                      status, watch)
    DIR/env.daemon    the same keys, ORCHESTRATOR_REDIS_URL the daemon's
    DIR/env.submitter, DIR/env.watcher, DIR/env.admin   likewise for those roles
    DIR/env.worker.NAME   likewise for worker NAME (``up(workers=…)``, :func:`add_workers`)
    DIR/stack.json    pids, ports and urls (no credentials) of the running servers, the Redis
                      namespace the ACL covers and the workers that have users
    DIR/redis/users.acl   the Redis ``aclfile`` (passwords as SHA-256 hashes only)
    DIR/redis/ s3/ mongo/   each server's data and log

Redis runs with ACL users per role (:mod:`orchestrator.devstack.acl`); the default user is off.
Passwords are random per start, written only to the 0600 env files. Every directory of the
stack is 0700 and every file 0600 (the servers run with umask 077).

:func:`up` is idempotent (a running stack is left alone, a half-dead one is cleaned up first) and
:func:`down` stops exactly the recorded pids, after checking each is still the process we started.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

from orchestrator.devstack import acl
from orchestrator.devstack.servers import (
    ServerProcess,
    ServerStartError,
    private_dir,
    private_file,
    start_mongo,
    start_redis,
    start_s3,
    tighten,
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
DAEMON_KEY = "ORCHESTRATOR_DAEMON_KEY"
"""The daemon replicas' shared key (run secrets derive from it; only daemons need it)."""

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
    DAEMON_KEY,
)
"""Every key written to ``DIR/env`` (and provided by the test fixture ``stack_env``)."""

SECRET_KEYS = frozenset({AWS_SECRET_ACCESS_KEY, DAEMON_KEY})
"""Keys whose values are never printed."""

ENV_FILE = "env"
STACK_FILE = "stack.json"
ACL_FILE = "users.acl"
_STACK_ENTRIES = frozenset({ENV_FILE, STACK_FILE, "redis", "s3", "mongo"})
DEFAULT_NAMESPACE = "orchestrator"
"""The Redis namespace the stack's ACL covers unless told otherwise (the settings' default)."""

DEFAULT_ROLE = acl.SUBMITTER
"""The role whose Redis URL ``DIR/env`` carries."""


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
    daemon_key: str | None = None,
) -> dict[str, str]:
    """The environment that points the orchestrator and AWS clients at a set of servers
    (``daemon_key``: a new random one unless given)."""
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
        DAEMON_KEY: daemon_key or secrets.token_urlsafe(32),
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
    namespace: str = DEFAULT_NAMESPACE
    workers: list[str] = field(default_factory=list)
    """The workers that have a Redis user (and ``DIR/env.worker.NAME``)."""

    @property
    def env_file(self) -> Path:
        """Path of the ``KEY=VALUE`` file (the submitter's Redis URL)."""
        return self.directory / ENV_FILE

    def role_env_file(self, role: str) -> Path:
        """``DIR/env.ROLE`` of a fixed role (``daemon``, ``submitter``, ``watcher``, ``admin``)."""
        return role_env_path(self.directory, role)

    def worker_env_file(self, worker: str) -> Path:
        """``DIR/env.worker.NAME``."""
        return role_env_path(self.directory, acl.worker_user(worker))

    def role_env(self, role: str) -> dict[str, str]:
        """The environment of a fixed role (every stack key; its own Redis URL)."""
        return read_env_file(self.role_env_file(role))

    def worker_env(self, worker: str) -> dict[str, str]:
        """The environment of worker ``worker`` (it must have a user: :func:`add_workers`)."""
        path = self.worker_env_file(worker)
        if not path.exists():
            raise StackError(f"worker {worker!r} has no Redis user in {self.directory}: "
                             f"run `orchestrator dev add-worker {worker}`")
        return read_env_file(path)

    @classmethod
    def start(
        cls,
        directory: Path,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        workers: Sequence[str] = (),
    ) -> DevStack:
        """Start all three servers under ``directory`` and write the env files and
        ``stack.json``. Redis gets a user per role and one per worker (``workers`` and those
        of an earlier start of this directory), all with new random passwords.

        On failure every server already started is stopped and :class:`ServerStartError` raised.
        """
        directory = directory.resolve()
        private_dir(directory)
        tighten(directory)  # data of a stack made before the modes were enforced
        workers = sorted({*workers, *_known_workers(directory)})
        users = [*acl.FIXED_ROLES, *(acl.worker_user(w) for w in workers)]
        passwords = {user: acl.new_password() for user in users}
        aclfile = private_dir(directory / "redis") / ACL_FILE
        _write_aclfile(aclfile, [acl.user_line(u, p, namespace) for u, p in passwords.items()])
        access_key, secret_key = new_credentials()
        servers: dict[str, ServerProcess] = {}
        try:
            servers["redis"] = start_redis(
                directory / "redis", appendonly=True, aclfile=aclfile,
                username=acl.ADMIN, password=passwords[acl.ADMIN],
            )
            s3 = start_s3(directory / "s3", access_key=access_key, secret_key=secret_key)
            servers["s3"] = s3
            ensure_bucket(s3.url, access_key, secret_key, BUCKET)
            servers["mongo"] = start_mongo(directory / "mongo")
        except BaseException:
            for server in servers.values():
                server.stop()
            raise
        redis_base = servers["redis"].url
        env = stack_env(
            redis_url=user_url(redis_base, DEFAULT_ROLE, passwords[DEFAULT_ROLE]),
            mongo_url=servers["mongo"].url,
            s3_url=f"s3://{BUCKET}/{S3_PREFIX}",
            s3_endpoint_url=servers["s3"].url,
            access_key=access_key,
            secret_key=secret_key,
        )
        stack = cls(directory=directory, servers=servers, env=env, namespace=namespace,
                    workers=workers)
        write_env_file(stack.env_file, without_daemon_key(env))
        for user, password in passwords.items():
            write_env_file(role_env_path(directory, user),
                           role_env(env, user, user_url(redis_base, user, password)))
        stack.save_state()
        return stack

    def save_state(self) -> None:
        """Write ``stack.json`` (0600; no credentials in it)."""
        state = {
            "servers": [_server_record(s) for s in self.servers.values()],
            "namespace": self.namespace,
            "workers": self.workers,
        }
        with private_file(self.directory / STACK_FILE) as handle:
            handle.write(json.dumps(state, indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> DevStack | None:
        """The stack recorded in ``directory``, or None if there is no ``stack.json``."""
        directory = directory.resolve()
        state_path = directory / STACK_FILE
        try:
            state = json.loads(state_path.read_text())
            servers = [_server_from_record(r) for r in state["servers"]]
            namespace = str(state.get("namespace", DEFAULT_NAMESPACE))
            workers = [str(w) for w in state.get("workers", [])]
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            raise StackError(f"{state_path} is corrupt ({exc}); remove it and retry") from exc
        env_path = directory / ENV_FILE
        env = read_env_file(env_path) if env_path.exists() else {}
        return cls(directory=directory, servers={s.name: s for s in servers}, env=env,
                   namespace=namespace, workers=workers)

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


def up(
    directory: Path, *, workers: Sequence[str] = (), namespace: str = DEFAULT_NAMESPACE
) -> UpResult:
    """Start the stack in ``directory`` unless it already runs there (stale state is cleaned);
    make sure each of ``workers`` has a Redis user (adding users to a running stack)."""
    existing = DevStack.load(directory)
    if existing is not None:
        if existing.running():
            if existing.namespace != namespace:
                raise StackError(
                    f"the stack in {existing.directory} serves Redis namespace "
                    f"{existing.namespace!r}, not {namespace!r}: use that namespace "
                    "(ORCHESTRATOR_NAMESPACE) or another --dir"
                )
            add_workers(existing.directory, workers)
            return UpResult(stack=DevStack.load(directory) or existing, started=False)
        existing.stop()
    started = DevStack.start(directory, namespace=namespace, workers=workers)
    return UpResult(stack=started, started=True)


def add_workers(directory: Path, workers: Sequence[str]) -> list[str]:
    """Give each of ``workers`` a Redis user on the running stack in ``directory`` (adding it to
    the aclfile, then ``ACL LOAD`` as the admin user) and its ``DIR/env.worker.NAME``; workers
    that have one keep it. Returns the names added."""
    stack = DevStack.load(directory)
    if stack is None or not stack.running():
        raise StackError(f"no dev stack running in {directory}: run `orchestrator dev up` first")
    names = list(dict.fromkeys(workers))
    for name in names:
        acl.worker_user(name)  # refuses an invalid name before anything changes
    new = [w for w in names if w not in stack.workers or not stack.worker_env_file(w).exists()]
    if not new:
        return []
    passwords = {acl.worker_user(w): acl.new_password() for w in new}
    aclfile = stack.directory / "redis" / ACL_FILE
    kept = [line for line in _read_aclfile(aclfile)
            if line.split()[1] not in ("default", *passwords)]
    _write_aclfile(aclfile, [*kept, *(acl.user_line(u, p, stack.namespace)
                                      for u, p in passwords.items())])
    _acl_load(stack)
    redis_base = stack.servers["redis"].url
    for user, password in passwords.items():
        write_env_file(role_env_path(stack.directory, user),
                       role_env(stack.env, user, user_url(redis_base, user, password)))
    stack.workers = sorted({*stack.workers, *new})
    stack.save_state()
    return new


def without_daemon_key(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k != DAEMON_KEY}


def role_env(env: dict[str, str], user: str, redis_url: str) -> dict[str, str]:
    """A role's environment: its own Redis URL; the daemon key for the daemon alone."""
    own = env if user == acl.DAEMON else without_daemon_key(env)
    return {**own, REDIS_URL: redis_url}


def role_env_path(directory: Path, user: str) -> Path:
    """``DIR/env.ROLE`` for a fixed role, ``DIR/env.worker.NAME`` for user ``worker-NAME``."""
    if user.startswith(acl.WORKER_PREFIX):
        return directory / f"{ENV_FILE}.worker.{user.removeprefix(acl.WORKER_PREFIX)}"
    return directory / f"{ENV_FILE}.{user}"


def user_url(base_url: str, user: str, password: str) -> str:
    """``redis://user:password@host:port/db`` from a URL without credentials."""
    parts = urlsplit(base_url)
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{parts.netloc}"
    return urlunsplit(parts._replace(netloc=netloc))


def _known_workers(directory: Path) -> list[str]:
    prefix = f"{ENV_FILE}.worker."
    return sorted(p.name.removeprefix(prefix) for p in directory.glob(f"{prefix}*"))


def _write_aclfile(path: Path, lines: Sequence[str]) -> None:
    with private_file(path) as handle:
        handle.write(acl.aclfile_text(lines))


def _read_aclfile(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.startswith("user ")]


def _acl_load(stack: DevStack) -> None:
    import redis  # noqa: PLC0415 - only needed here

    url = stack.role_env(acl.ADMIN)[REDIS_URL]
    client = redis.Redis.from_url(url, socket_timeout=5.0)
    try:
        client.acl_load()
    except redis.RedisError as exc:
        raise StackError(f"cannot load the new Redis users: {exc}") from exc
    finally:
        client.close()


def down(directory: Path, *, purge: bool = False) -> list[str]:
    """Stop the stack recorded in ``directory``; return the names of the servers stopped.

    With ``purge`` the directory is deleted too, but only if it holds nothing but stack files.
    """
    directory = directory.resolve()
    stack = DevStack.load(directory)
    stopped = stack.stop() if stack is not None else []
    if purge and directory.exists():
        foreign = sorted(p.name for p in directory.iterdir()
                         if p.name not in _STACK_ENTRIES and not p.name.startswith(f"{ENV_FILE}."))
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
    "DEFAULT_NAMESPACE",
    "DEFAULT_ROLE",
    "SECRET_KEYS",
    "STACK_ENV_KEYS",
    "DevStack",
    "ServerStartError",
    "StackError",
    "UpResult",
    "add_workers",
    "down",
    "ensure_bucket",
    "read_env_file",
    "role_env_path",
    "stack_env",
    "up",
    "user_url",
    "write_env_file",
]
