"""Least privilege on Redis: the dev stack's ACL users per role (orchestrator.devstack.acl).

One ACL-enabled stack (``stack.up``, the code ``orchestrator dev up`` runs) for the module, with
two workers; each test connects with a role's URL from the stack's env files and checks what it
may and may not do. The last tests run a real job through it (daemon and workers as processes
with their own credentials) and check the modes of everything the stack wrote.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest
import redis
import redis.asyncio
from helpers import subprocess_env, unique
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError
from redis.retry import Retry

from orchestrator.bus import Bus, StreamConsumer
from orchestrator.bus.keys import Keys
from orchestrator.devstack import acl, stack
from orchestrator.devstack.servers import pid_cmdline

NS = stack.DEFAULT_NAMESPACE
KEYS = Keys(NS, event_shards=4)
W1, W2 = "acl-w1", "acl-w2"


@pytest.fixture(scope="module")
def acl_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[stack.DevStack]:
    directory = tmp_path_factory.mktemp("acl") / "dev"
    result = stack.up(directory, workers=[W1, W2])
    try:
        yield result.stack
    finally:
        stack.down(directory)


def _url(acl_stack: stack.DevStack, role: str) -> str:
    if role.startswith("worker:"):
        return acl_stack.worker_env(role.removeprefix("worker:"))[stack.REDIS_URL]
    return acl_stack.role_env(role)[stack.REDIS_URL]


@pytest.fixture
def connect(acl_stack: stack.DevStack) -> Iterator[object]:
    clients: list[redis.Redis] = []

    def make(role: str) -> redis.Redis:
        client = redis.Redis.from_url(_url(acl_stack, role), socket_timeout=5)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
async def aconnect(acl_stack: stack.DevStack) -> AsyncIterator[object]:
    clients: list[redis.asyncio.Redis] = []

    def make(role: str) -> redis.asyncio.Redis:
        client = redis.asyncio.Redis.from_url(_url(acl_stack, role), socket_timeout=5)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


def _refused(call: object, *args: object) -> None:
    assert callable(call)
    with pytest.raises(NoPermissionError):
        call(*args)


# --- connecting ---------------------------------------------------------------------------------

#: A refused login is the answer under test: not retried with backoff (redis-py retries
#: connection errors, authentication failures among them, by default).
NO_RETRY = Retry(NoBackoff(), 0)


def test_an_unauthenticated_client_is_refused(acl_stack: stack.DevStack) -> None:
    port = acl_stack.servers["redis"].port
    for protocol in (2, 3):
        with redis.Redis(host="127.0.0.1", port=port, protocol=protocol, socket_timeout=5,
                         retry=NO_RETRY) as client:
            with pytest.raises((AuthenticationError, ResponseError), match=r"(?i)auth"):
                client.ping()
            with pytest.raises((AuthenticationError, ResponseError), match=r"(?i)auth"):
                client.xadd(KEYS.submissions, {"spec": "{}"})


def test_the_default_user_is_off_and_wrong_passwords_fail(
    acl_stack: stack.DevStack, connect: object
) -> None:
    port = acl_stack.servers["redis"].port
    for user in ("default", acl.DAEMON, acl.worker_user(W1)):
        client = redis.Redis(host="127.0.0.1", port=port, username=user, password="wrong",
                             retry=NO_RETRY)
        with client, pytest.raises(AuthenticationError):
            client.ping()
    assert callable(connect)
    admin = connect(acl.ADMIN)
    default = admin.acl_getuser("default")
    assert "off" in default["flags"]
    assert set(admin.acl_users()) == {"default", *acl.FIXED_ROLES, acl.worker_user(W1),
                                      acl.worker_user(W2)}


def test_every_role_connects_with_its_url(connect: object) -> None:
    assert callable(connect)
    for role in (*acl.FIXED_ROLES, f"worker:{W1}", f"worker:{W2}"):
        assert connect(role).ping()


# --- workers ------------------------------------------------------------------------------------


async def test_a_worker_reads_its_own_commands_and_publishes_events(
    aconnect: object, connect: object
) -> None:
    assert callable(aconnect) and callable(connect)
    daemon = connect(acl.DAEMON)
    worker = aconnect(f"worker:{W1}")
    consumer = StreamConsumer(worker, [KEYS.commands(W1)], KEYS.worker_group, W1, block_ms=100,
                              dead_letter=KEYS.dead_letter)
    await consumer.ensure_groups()
    daemon.xadd(KEYS.commands(W1), {"command": "{}"})
    entries = await consumer.read()
    assert [e.fields for e in entries] == [{"command": "{}"}]
    await consumer.ack(entries)
    daemon.xadd(KEYS.commands(W1), {"command": "bad"})
    (bad,) = await consumer.read()
    await consumer.dead_letter(bad, "undecodable")  # MULTI: XADD dead-letter + XACK
    assert await consumer.reclaim() == []
    assert await consumer.pending_count() == 0

    bus = Bus(worker, KEYS)
    await bus.register_worker(W1, "client", ttl_s=5, info={})  # SET … GET, XADD control
    assert daemon.get(KEYS.worker_alive(W1)) is not None
    await bus.unregister_worker(W1)
    shard = KEYS.events(0)
    await worker.xadd(shard, {"event": "{}"}, maxlen=1000, approximate=True)
    assert daemon.xrevrange(shard, count=1)[0][1] == {b"event": b"{}"}

    mailbox = KEYS.mailbox(unique("job"), "client-0")
    async with worker.pipeline(transaction=False) as pipe:
        pipe.xadd(mailbox, {"sender": "server", "body": "{}"})
        pipe.expire(mailbox, 60)
        await pipe.execute()
    assert len(await worker.xread({mailbox: "0"})) == 1


def test_a_worker_cannot_submit_read_others_commands_or_read_events(connect: object) -> None:
    assert callable(connect)
    worker = connect(f"worker:{W1}")
    _refused(worker.xadd, KEYS.submissions, {"spec": "{}"})
    _refused(worker.xadd, KEYS.updates, {"update": "{}"})
    _refused(worker.xadd, KEYS.commands(W2), {"command": "{}"})
    _refused(worker.xadd, KEYS.commands(W1), {"command": "{}"})  # no forged commands either
    _refused(worker.xreadgroup, KEYS.worker_group, W1, {KEYS.commands(W2): ">"})
    _refused(worker.xgroup_create, KEYS.commands(W2), KEYS.worker_group, "0", True)
    _refused(worker.xrange, KEYS.commands(W2))
    _refused(worker.xrange, KEYS.events(0))
    _refused(worker.xread, {KEYS.control: "0"})
    _refused(worker.set, KEYS.worker_alive(W2), "{}")
    _refused(worker.delete, KEYS.worker_alive(W2))
    _refused(worker.keys, "*")
    _refused(worker.set, "elsewhere", "x")
    _refused(worker.flushall)
    _refused(worker.config_get, "*")
    _refused(worker.publish, "channel", "x")


# --- submitters and watchers ----------------------------------------------------------------------


async def test_a_submitter_submits_and_cancels_and_follows_updates(
    aconnect: object, connect: object
) -> None:
    assert callable(aconnect) and callable(connect)
    submitter = aconnect(acl.SUBMITTER)
    bus = Bus(submitter, KEYS)
    entry = await bus.submit('{"workload": "noop"}')
    cancel = await bus.request_cancel("job-1", requested_by="test")
    daemon = connect(acl.DAEMON)
    assert daemon.xrange(KEYS.submissions, entry, entry)
    assert daemon.xrange(KEYS.control, cancel, cancel)
    daemon.xadd(KEYS.updates, {"update": "{}"})
    assert await submitter.xrevrange(KEYS.updates, count=1)


def test_a_submitter_cannot_write_events_commands_or_updates(connect: object) -> None:
    assert callable(connect)
    submitter = connect(acl.SUBMITTER)
    for stream in (KEYS.events(0), KEYS.events(3), KEYS.commands(W1), KEYS.updates,
                   KEYS.dead_letter, KEYS.mailbox("j", "p")):
        _refused(submitter.xadd, stream, {"event": "{}"})
    _refused(submitter.xgroup_create, KEYS.submissions, "daemon", "0")
    _refused(submitter.xtrim, KEYS.submissions, 0)
    _refused(submitter.xdel, KEYS.submissions, "0-1")
    _refused(submitter.delete, KEYS.submissions)
    _refused(submitter.set, KEYS.worker_alive(W1), "{}")


async def test_a_watcher_reads_updates_events_and_workers(
    aconnect: object, connect: object
) -> None:
    assert callable(aconnect) and callable(connect)
    daemon = connect(acl.DAEMON)
    daemon.xadd(KEYS.updates, {"update": '{"job_id": "j"}'})
    daemon.xadd(KEYS.events(1), {"event": "{}"})
    daemon.set(KEYS.worker_alive("acl-seen"), json.dumps({"role": "server"}), px=10_000)
    watcher = aconnect(acl.WATCHER)
    assert await watcher.xread({KEYS.updates: "0"}, count=1)
    assert await watcher.xrevrange(KEYS.events(1), count=1)
    assert await watcher.xlen(KEYS.updates) >= 1
    assert "acl-seen" in await Bus(watcher, KEYS).alive_workers()  # SCAN + MGET
    assert "acl-seen" in await Bus(watcher, KEYS).alive_workers(["acl-seen"])


def test_a_watcher_cannot_write_anything(connect: object) -> None:
    assert callable(connect)
    watcher = connect(acl.WATCHER)
    for stream in (KEYS.submissions, KEYS.control, KEYS.events(0), KEYS.updates,
                   KEYS.commands(W1), KEYS.mailbox("j", "p")):
        _refused(watcher.xadd, stream, {"x": "y"})
    _refused(watcher.set, KEYS.worker_alive(W1), "{}")
    _refused(watcher.delete, KEYS.updates)
    _refused(watcher.expire, KEYS.updates, 1)
    _refused(watcher.xgroup_create, KEYS.updates, "g", "0")
    _refused(watcher.xreadgroup, "daemon", "me", {KEYS.submissions: ">"})
    _refused(watcher.xtrim, KEYS.updates, 0)
    _refused(watcher.get, "outside-the-namespace")


def test_the_daemon_is_confined_to_its_namespace(connect: object) -> None:
    assert callable(connect)
    daemon = connect(acl.DAEMON)
    _refused(daemon.set, "other:key", "x")
    _refused(daemon.flushall)
    _refused(daemon.config_set, "appendonly", "no")
    _refused(daemon.acl_list)
    _refused(daemon.eval, "return 1", 0)
    _refused(daemon.publish, "channel", "x")


# --- adding workers to a running stack ------------------------------------------------------------


def test_add_worker_creates_a_confined_user_on_the_running_stack(
    acl_stack: stack.DevStack, connect: object
) -> None:
    assert callable(connect)
    name = unique("late")
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli.main", "dev", "add-worker", name,
         "--dir", str(acl_stack.directory)],
        capture_output=True, text=True, timeout=60, check=False, env=subprocess_env({}),
    )
    assert result.returncode == 0, result.stderr
    env_file = acl_stack.worker_env_file(name)
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    url = stack.read_env_file(env_file)[stack.REDIS_URL]
    password = redis.connection.parse_url(url)["password"]
    assert password not in result.stdout + result.stderr
    with redis.Redis.from_url(url) as late:
        late.xadd(KEYS.events(2), {"event": "{}"})
        _refused(late.xadd, KEYS.submissions, {"spec": "{}"})
        _refused(late.xrange, KEYS.commands(W1))
    # Earlier users keep working; ACL LOAD replaced nothing else.
    assert connect(f"worker:{W1}").ping()
    assert stack.add_workers(acl_stack.directory, [name, W1]) == []
    with pytest.raises(ValueError, match="invalid worker name"):
        stack.add_workers(acl_stack.directory, ["bad name"])


# --- a real job through the ACL'd stack -----------------------------------------------------------


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "orchestrator.cli.main", *argv],
                                env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


async def test_a_job_runs_end_to_end_with_each_process_on_its_own_user(
    acl_stack: stack.DevStack, tmp_path: Path
) -> None:
    extra = {"ORCHESTRATOR_BLOCK_MS": "100", "ORCHESTRATOR_LOG_FORMAT": "json",
             "ORCHESTRATOR_MONGO_DB": unique("acldb").replace("-", "_")}
    procs = [
        _spawn(["daemon"], subprocess_env(acl_stack.role_env(acl.DAEMON), **extra),
               tmp_path / "daemon.log"),
        _spawn(["worker", "--role", "server", "--name", W1],
               subprocess_env(acl_stack.worker_env(W1), **extra), tmp_path / "w1.log"),
        _spawn(["worker", "--role", "client", "--name", W2],
               subprocess_env(acl_stack.worker_env(W2), **extra), tmp_path / "w2.log"),
    ]
    job_id = unique("acljob")
    spec = {"job_id": job_id, "workload": "noop", "server": {"worker": W1},
            "clients": [{"worker": W2}], "rounds": 2,
            "timeouts": {"heartbeat_s": 5, "start_s": 20, "round_s": 20, "job_s": 60,
                         "cancel_grace_s": 2}}
    submitter = redis.asyncio.Redis.from_url(acl_stack.env[stack.REDIS_URL])
    try:
        bus = Bus(submitter, KEYS)
        with anyio.fail_after(30):
            while set(await bus.alive_workers([W1, W2])) != {W1, W2}:
                await anyio.sleep(0.1)
        await bus.submit(json.dumps(spec))
        status = None
        with anyio.fail_after(60):
            while status is None or not status.startswith("FINISHED"):
                for _, fields in await submitter.xrange(KEYS.updates):
                    update = json.loads(fields[b"update"])
                    if update.get("job_id") == job_id:
                        status = update["status"]
                await anyio.sleep(0.1)
        assert status == "FINISHED_SUCCESSFULLY"
    finally:
        await submitter.aclose()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    logs = "".join(p.read_text() for p in tmp_path.glob("*.log"))
    assert "NOPERM" not in logs and "no permissions" not in logs.lower(), logs[-3000:]


# --- files and modes ------------------------------------------------------------------------------


def test_the_stack_files_are_private_and_passwords_are_nowhere_public(
    acl_stack: stack.DevStack,
) -> None:
    time.sleep(1.2)  # the AOF and the stand-in's snapshot exist by now
    root = acl_stack.directory
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    seen = 0
    for current, dirs, files in os.walk(root):
        for name in dirs:
            path = Path(current, name)
            assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
        for name in files:
            path = Path(current, name)
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
            seen += 1
    assert seen >= 10
    for expected in ("env", "env.daemon", "env.submitter", "env.watcher", "env.admin",
                     f"env.worker.{W1}", "stack.json", "redis/users.acl", "redis/redis.log",
                     "s3/s3.log", "mongo/mongo.log"):
        assert (root / expected).is_file(), expected
    assert (root / "redis" / "appendonlydir").is_dir()

    passwords = set()
    for env_file in root.glob("env*"):
        url = stack.read_env_file(env_file)[stack.REDIS_URL]
        passwords.add(redis.connection.parse_url(url)["password"])
    workers = len(list(root.glob("env.worker.*")))
    assert workers >= 2
    assert len(passwords) == len(acl.FIXED_ROLES) + workers  # DIR/env has the submitter's
    public = (root / "stack.json").read_text() + (root / "redis" / "users.acl").read_text()
    public += (root / "redis" / "redis.log").read_text()
    for server in acl_stack.servers.values():
        public += " ".join(pid_cmdline(server.pid) or [])
    for password in passwords:
        assert password not in public
    assert "user default reset off" in (root / "redis" / "users.acl").read_text()


async def test_workers_write_job_logs_that_watchers_and_submitters_read(
    aconnect: object, connect: object
) -> None:
    assert callable(aconnect) and callable(connect)
    stream = KEYS.logs(unique("job"))
    worker = aconnect(f"worker:{W1}")
    async with worker.pipeline(transaction=False) as pipe:  # as workers.isolation.logs does
        pipe.xadd(stream, {"p": "server", "l": "hello"}, maxlen=100, approximate=True)
        pipe.expire(stream, 60)
        await pipe.execute()
    _refused(connect(f"worker:{W1}").xrange, stream)  # workers write logs, never read them
    for role in (acl.WATCHER, acl.SUBMITTER):
        reader = aconnect(role)
        assert (await reader.xrange(stream))[0][1] == {b"p": b"server", b"l": b"hello"}
        _refused(connect(role).xadd, stream, {"l": "forged"})
