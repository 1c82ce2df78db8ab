"""The ACL users per role (``orchestrator.devstack.acl``) on a cluster whose every node loads
the same ``aclfile``: each role does its work across nodes, and is refused the rest."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from redis.exceptions import NoPermissionError

from orchestrator.bus import Bus, Keys, Redis, StreamConsumer, connect_redis, execute_batch
from orchestrator.core import Heartbeat
from orchestrator.devstack import acl
from orchestrator.devstack.cluster import ClusterProcess, start_cluster
from orchestrator.errors import BusError

NS = "aclcl"
KEYS = Keys(NS, event_shards=3)
W1 = "w1"
ROLES = (acl.DAEMON, acl.WATCHER, acl.ADMIN, acl.worker_user(W1))


@pytest.fixture(scope="module")
def passwords() -> dict[str, str]:
    return {user: acl.new_password() for user in ROLES}


@pytest.fixture(scope="module")
def acl_cluster(tmp_path_factory: pytest.TempPathFactory, passwords: dict[str, str]
                ) -> Iterator[ClusterProcess]:
    directory = tmp_path_factory.mktemp("acl-cluster")
    aclfile = directory / "users.acl"
    aclfile.write_text(acl.aclfile_text(acl.user_line(u, p, NS) for u, p in passwords.items()))
    cluster = start_cluster(directory, aclfile=aclfile, username=acl.ADMIN,
                            password=passwords[acl.ADMIN])
    yield cluster
    cluster.stop()


@pytest.fixture
async def clients(acl_cluster: ClusterProcess, passwords: dict[str, str]
                  ) -> AsyncIterator[dict[str, Redis]]:
    port = acl_cluster.nodes[0].port
    made = {user: connect_redis(f"redis+cluster://{user}:{pw}@127.0.0.1:{port}/0")
            for user, pw in passwords.items()}
    yield made
    for client in made.values():
        await client.aclose()


def test_every_node_has_the_users(acl_cluster: ClusterProcess) -> None:
    assert len(acl_cluster.nodes) == 3
    assert all(node.alive() for node in acl_cluster.nodes)


async def test_each_role_works_across_nodes_and_no_further(clients: dict[str, Redis]) -> None:
    worker, daemon, watcher = clients[acl.worker_user(W1)], clients[acl.DAEMON], \
        clients[acl.WATCHER]
    events = StreamConsumer(daemon, KEYS.all_event_streams(), KEYS.daemon_group, "d1",
                            block_ms=50, dead_letter=KEYS.dead_letter)
    await events.ensure_groups()
    commands = StreamConsumer(worker, [KEYS.commands(W1)], KEYS.worker_group, W1, block_ms=50)
    await commands.ensure_groups()

    # The worker registers (alive key, registry, control) and publishes on every shard.
    await Bus(worker, KEYS).register_worker(W1, "client", ttl_s=30)
    jobs = [f"job-{i}" for i in range(12)]
    assert {KEYS.shard_of(j) for j in jobs} == {0, 1, 2}
    await Bus(worker, KEYS).publish_events([
        Heartbeat(event_id=f"e{i}", job_id=j, participant="client-0", worker=W1, seq=1)
        for i, j in enumerate(jobs)])

    # The daemon reads them from the three nodes and commits commands, updates and acks.
    read = []
    while len(read) < len(jobs):
        read += await events.read()
    assert await Bus(daemon, KEYS).alive_workers() == await Bus(watcher, KEYS).alive_workers()
    assert set(await Bus(watcher, KEYS).alive_workers()) == {W1}
    batch = [("XADD", KEYS.commands(W1), "*", "command", "{}")]
    events.queue_ack(batch, read)
    await execute_batch(daemon, batch)
    assert await events.pending_count() == 0
    assert [e.fields for e in await commands.read()] == [{"command": "{}"}]

    # Refused: the worker reading events, the watcher writing, anyone's own registry abuse.
    with pytest.raises((NoPermissionError, BusError)):
        await StreamConsumer(worker, KEYS.all_event_streams(), KEYS.daemon_group, "x",
                             block_ms=10).read()
    with pytest.raises(NoPermissionError):
        await watcher.set(KEYS.worker_alive(W1), "{}")
    with pytest.raises(NoPermissionError):
        await watcher.zadd(KEYS.workers, {"intruder": 1})
    with pytest.raises(NoPermissionError):
        await worker.set(KEYS.worker_alive("w2"), "{}")
