"""Fixtures of the CLI tests: an isolated environment (own Redis namespace and Mongo database)
for ``orchestrator`` subprocesses, and a store filled with jobs in known states."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import pytest_asyncio
from helpers import subprocess_env, unique

from orchestrator.bus.keys import Keys
from orchestrator.storage import open_object_store
from orchestrator.store import MongoJobStore, connect_mongo
from tests.cli.fill import JobBuilder


@dataclass
class CliWorld:
    """The environment of one test module and what was put into it."""

    env: dict[str, str]
    keys: Keys
    db: str
    jobs: dict[str, JobBuilder] = field(default_factory=dict)


@pytest.fixture(scope="module")
def cli_world(stack_env: dict[str, str]) -> CliWorld:
    namespace, db = unique("cli"), unique("clidb").replace("-", "_")
    env = subprocess_env(
        stack_env,
        ORCHESTRATOR_NAMESPACE=namespace,
        ORCHESTRATOR_MONGO_DB=db,
        ORCHESTRATOR_EVENT_SHARDS="2",
        COLUMNS="200",
    )
    return CliWorld(env=env, keys=Keys(namespace, event_shards=2), db=db)


@pytest_asyncio.fixture(loop_scope="session")
async def store(cli_world: CliWorld) -> AsyncIterator[MongoJobStore]:
    """A client of the module's own database (``redis`` is a per-test client of the session's
    server, tests/conftest.py)."""
    client = connect_mongo(cli_world.env["ORCHESTRATOR_MONGO_URL"], cli_world.db)
    yield client
    await client.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def filled(cli_world: CliWorld) -> CliWorld:
    """Jobs ``done`` (4 rounds, 3 clients, checkpoints in S3), ``running`` (round 2 of 5) and
    ``queued``, each with a unique id."""
    env = cli_world.env
    store = connect_mongo(env["ORCHESTRATOR_MONGO_URL"], cli_world.db)
    try:
        await store.ensure_indexes()
        done = JobBuilder(store, unique("done"), clients=3, rounds=4)
        await done.run_all()
        running = JobBuilder(store, unique("running"), clients=2, rounds=5)
        await running.create()
        await running.start()
        await running.round(1)
        await running.round(2)
        queued = JobBuilder(store, unique("queued"))
        await queued.create()
    finally:
        await store.close()
    objects = open_object_store(env["ORCHESTRATOR_S3_URL"],
                                endpoint_url=env["ORCHESTRATOR_S3_ENDPOINT_URL"],
                                access_key_id=env["AWS_ACCESS_KEY_ID"],
                                secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    async with objects:
        for key, data in done.objects.items():
            await objects.create(key, data, overwrite=True)
    cli_world.jobs.update(done=done, running=running, queued=queued)
    return cli_world
