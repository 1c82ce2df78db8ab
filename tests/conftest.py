"""Session fixtures: real servers started once per test session, stopped by PID at the end.

- ``redis_server``  Valkey/Redis, no persistence (``ServerProcess``; ``.url`` is ``redis://…/0``).
- ``s3_server``     rclone's S3 server (``S3ServerProcess``: ``.url``, ``.access_key``,
  ``.secret_key``); ``s3_env`` is a dict (``endpoint_url``, ``access_key``, ``secret_key``,
  ``region``, ``bucket``) and bucket ``test-bucket`` exists.
- ``mongo_server``  the Mongo wire-protocol stand-in (``orchestrator.devstack.mongowire``).
- ``stack_env``     the same keys as ``orchestrator dev up`` writes to ``DIR/env``, pointing at
  these servers; the S3 URL is ``s3://test-bucket/<unique prefix>``.
- ``namespace``     a unique Redis key namespace per test; ``tmp_env`` an environment for
  subprocesses (``os.environ`` + ``stack_env``).
- ``live_env``      a running system (``helpers.live_system``: a daemon, ``LIVE_SERVER`` and
  ``LIVE_CLIENTS`` as processes, in their own namespace and database), started on first use
  and shared by tests/cli/test_watch_live.py and tests/client/test_live.py.

Servers listen on free ports of 127.0.0.1 and keep their data and logs under pytest's session
temporary directory, so a failing run leaves the logs behind to read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers import LIVE_CLIENTS, LIVE_SERVER, TEST_BUCKET, live_system, subprocess_env, unique

from orchestrator.bus import Redis, connect_redis
from orchestrator.bus.keys import Keys
from orchestrator.devstack import stack
from orchestrator.devstack.servers import (
    S3ServerProcess,
    ServerProcess,
    start_mongo,
    start_redis,
    start_s3,
)
from tests.cluster.fixtures import redis_cluster
from tests.storage.support import BUCKET, OwnS3

if TYPE_CHECKING:
    pass

_FAULT_TABLE = pytest.StashKey["FaultTable"]()

#: ``redis_cluster`` (tests/cluster/fixtures.py) lives here so that tests/bus and tests/cluster
#: share one three-primary cluster per session instead of starting one each.
__all__ = ["redis_cluster"]


@pytest.fixture(scope="session")
def servers_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Parent directory of every session server's data and log."""
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="session")
def redis_server(servers_dir: Path) -> Iterator[ServerProcess]:
    """A Redis server for the whole session (AOF off, ``noeviction``)."""
    server = start_redis(servers_dir / "redis")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server(servers_dir: Path) -> Iterator[S3ServerProcess]:
    """An S3 server for the whole session with random credentials and ``test-bucket``."""
    access_key, secret_key = stack.new_credentials()
    server = start_s3(servers_dir / "s3", access_key=access_key, secret_key=secret_key)
    try:
        stack.ensure_bucket(server.url, access_key, secret_key, TEST_BUCKET)
    except BaseException:
        server.stop()
        raise
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_env(s3_server: S3ServerProcess) -> dict[str, str]:
    """Endpoint, credentials, region and bucket of the session S3 server."""
    return {
        "endpoint_url": s3_server.url,
        "access_key": s3_server.access_key,
        "secret_key": s3_server.secret_key,
        "region": stack.REGION,
        "bucket": TEST_BUCKET,
    }


@pytest.fixture(scope="session")
def mongo_server(servers_dir: Path) -> Iterator[ServerProcess]:
    """The Mongo wire-protocol stand-in for the whole session."""
    server = start_mongo(servers_dir / "mongo")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def stack_env(
    redis_server: ServerProcess, s3_server: S3ServerProcess, mongo_server: ServerProcess
) -> dict[str, str]:
    """The ``DIR/env`` keys of ``orchestrator dev up``, pointing at the session servers."""
    return stack.stack_env(
        redis_url=redis_server.url,
        mongo_url=mongo_server.url,
        s3_url=f"s3://{TEST_BUCKET}/{unique('session')}",
        s3_endpoint_url=s3_server.url,
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
    )


@pytest.fixture(scope="session")
def live_env(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[dict[str, str]]:
    """The environment of a live system for the session (starting one takes seconds): the
    tests that use it submit jobs of their own ids and read only those."""
    with live_system(stack_env, tmp_path_factory.mktemp("live"), "live", LIVE_SERVER,
                     LIVE_CLIENTS) as env:
        yield env


@pytest.fixture
def namespace() -> str:
    """A unique Redis key namespace for one test, e.g. ``test-1a2b3c4d``."""
    return unique("test")


@pytest.fixture
def tmp_env(stack_env: dict[str, str]) -> dict[str, str]:
    """Environment for subprocesses: ``os.environ`` (minus ``ORCHESTRATOR_*``) + ``stack_env``."""
    return subprocess_env(stack_env)


@pytest.fixture
async def redis(redis_server: ServerProcess) -> AsyncIterator[Redis]:
    """An asyncio Redis client on the session server, closed after the test."""
    client = connect_redis(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
def keys(namespace: str) -> Keys:
    """Key names under the test's own namespace, with two event shards."""
    return Keys(namespace, event_shards=2)


# --- the fault suite's table (tests/faults.py) -------------------------------------------------

def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fault-table", action="store_true",
                     help="print one line per fault scenario and the invariants it checks")


def pytest_configure(config: pytest.Config) -> None:
    from tests.faults import FaultTable  # noqa: PLC0415

    config.stash[_FAULT_TABLE] = FaultTable()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    if item.config.getoption("--fault-table"):
        item.config.stash[_FAULT_TABLE].add(item, outcome.get_result())


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter,
                            config: pytest.Config) -> None:
    table = config.stash[_FAULT_TABLE]
    if config.getoption("--fault-table") and table.rows:
        terminalreporter.section("fault suite")
        for line in table.lines():
            terminalreporter.write_line(line)


@pytest.fixture
async def own_s3(tmp_path: Path) -> AsyncIterator[OwnS3]:
    """An rclone S3 server of this test only (``OwnS3``: the test may stop and restart it)."""
    access_key, secret_key = stack.new_credentials()
    data_dir = tmp_path / "s3"
    server = start_s3(data_dir, access_key=access_key, secret_key=secret_key)
    own = OwnS3(data_dir, access_key, secret_key, server)
    try:
        stack.ensure_bucket(server.url, access_key, secret_key, BUCKET)
        yield own
    finally:
        own.server.stop()
