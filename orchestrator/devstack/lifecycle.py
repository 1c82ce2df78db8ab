"""The dev stack's lifecycle: :class:`DevStack` (start, ``stack.json``, load, stop), :func:`up`,
:func:`add_workers` (new Redis users on a running stack) and :func:`down`; the layout of the
stack directory is described in :mod:`orchestrator.devstack.stack`."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from orchestrator.devstack import acl, dashboard
from orchestrator.devstack.envfiles import (
    BUCKET,
    DEFAULT_ROLE,
    ENV_FILE,
    REDIS_URL,
    S3_PREFIX,
    StackError,
    ensure_bucket,
    new_credentials,
    read_env_file,
    role_env,
    role_env_path,
    stack_env,
    user_url,
    without_daemon_key,
    write_env_file,
)
from orchestrator.devstack.mongo_server import start_mongo
from orchestrator.devstack.previous import check_ports_free, remembered
from orchestrator.devstack.private import private_dir, private_file, tighten
from orchestrator.devstack.process import ServerProcess, server_from_record, server_record
from orchestrator.devstack.redis_server import start_redis
from orchestrator.devstack.s3_server import start_s3

DEFAULT_DIR = Path(".orchestrator-dev")
"""Default stack directory, relative to the current directory."""

STACK_FILE = "stack.json"
ACL_FILE = "users.acl"
_STACK_ENTRIES = frozenset({ENV_FILE, STACK_FILE, "redis", "s3", "mongo", "ui"})
DEFAULT_NAMESPACE = "orchestrator"
"""The Redis namespace the stack's ACL covers unless told otherwise (the settings' default)."""


@dataclass
class DevStack:
    """A started (or loaded) local stack; ``env`` holds every key of :data:`STACK_ENV_KEYS`."""

    directory: Path
    servers: dict[str, ServerProcess]
    env: dict[str, str] = field(default_factory=dict)
    namespace: str = DEFAULT_NAMESPACE
    workers: list[str] = field(default_factory=list)
    """The workers that have a Redis user (and ``DIR/env.worker.NAME``)."""
    reused: list[str] = field(default_factory=list)
    """The servers :meth:`start` restarted on their remembered ports (not saved)."""

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
        new_ports: bool = False,
    ) -> DevStack:
        """Start all three servers under ``directory`` and write the env files and
        ``stack.json``. Redis gets a user per role and one per worker (``workers`` and those
        of an earlier start of this directory).

        An earlier start's ports, Redis passwords, S3 keys and daemon key (read back from its
        env files, :mod:`orchestrator.devstack.previous`) are reused, so that processes still
        running with those env files reconnect; what is not remembered is new and random. A
        remembered port another process holds raises :class:`PortTakenError` before anything
        starts, unless ``new_ports`` (then every server gets a new free port).

        On failure every server already started is stopped and :class:`ServerStartError` raised.
        """
        directory = directory.resolve()
        private_dir(directory)
        tighten(directory)  # data of a stack made before the modes were enforced
        workers = sorted({*workers, *known_workers(directory)})
        previous = remembered(directory, workers)
        ports = {} if new_ports else previous.ports
        if ports:
            check_ports_free(replace(previous, ports=ports), directory)
        users = [*acl.FIXED_ROLES, *(acl.worker_user(w) for w in workers)]
        passwords = {user: previous.passwords.get(user) or acl.new_password() for user in users}
        aclfile = private_dir(directory / "redis") / ACL_FILE
        _write_aclfile(aclfile, [acl.user_line(u, p, namespace) for u, p in passwords.items()])
        if previous.access_key and previous.secret_key:
            access_key, secret_key = previous.access_key, previous.secret_key
        else:
            access_key, secret_key = new_credentials()
        servers: dict[str, ServerProcess] = {}
        try:
            servers["redis"] = start_redis(
                directory / "redis", ports.get("redis"), appendonly=True, aclfile=aclfile,
                username=acl.ADMIN, password=passwords[acl.ADMIN],
            )
            s3 = start_s3(directory / "s3", ports.get("s3"), access_key=access_key,
                          secret_key=secret_key)
            servers["s3"] = s3
            ensure_bucket(s3.url, access_key, secret_key, BUCKET)
            servers["mongo"] = start_mongo(directory / "mongo", ports.get("mongo"))
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
            daemon_key=previous.daemon_key,
        )
        stack = cls(directory=directory, servers=servers, env=env, namespace=namespace,
                    workers=workers, reused=sorted(ports))
        write_env_file(stack.env_file, without_daemon_key(env))
        for user, password in passwords.items():
            write_env_file(role_env_path(directory, user),
                           role_env(env, user, user_url(redis_base, user, password)))
        stack.save_state()
        return stack

    def save_state(self) -> None:
        """Write ``stack.json`` (0600; no credentials in it)."""
        state = {
            "servers": [server_record(s) for s in self.servers.values()],
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
            servers = [server_from_record(r) for r in state["servers"]]
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
    directory: Path, *, workers: Sequence[str] = (), namespace: str = DEFAULT_NAMESPACE,
    new_ports: bool = False,
) -> UpResult:
    """Start the stack in ``directory`` unless it already runs there (stale state is cleaned),
    in place: on the ports and with the credentials of its last start (``new_ports``: on new
    ports); make sure each of ``workers`` has a Redis user (adding users to a running stack)."""
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
    started = DevStack.start(directory, namespace=namespace, workers=workers,
                             new_ports=new_ports)
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


def known_workers(directory: Path) -> list[str]:
    """The workers that have an env file in ``directory`` (from any earlier start)."""
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
    stopped = ["ui"] if dashboard.stop(directory) else []  # first: it uses the servers
    stopped += stack.stop() if stack is not None else []
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

