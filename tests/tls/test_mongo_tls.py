"""MongoDB over TLS: the real PyMongo async driver, through the orchestrator's job store, to the
wire stand-in's TLS listener (``--tls-cert-file``/``--tls-key-file``), verified with the test
CA — given as settings (``ORCHESTRATOR_MONGO_CA_FILE``) or in the URL (``tls=true&tlsCAFile=``).
The wrong CA, no CA and a plain client are refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import quote

import anyio
import pytest

from orchestrator.cli.connect import mongo_for, open_store
from orchestrator.core import JobSpec, new_job
from orchestrator.devstack.servers import ServerProcess
from orchestrator.errors import ConfigError
from orchestrator.settings import load_settings
from orchestrator.store import MongoJobStore
from orchestrator.tls import TLSFiles, mongo_tls_options
from tests.helpers import run_cli, subprocess_env, unique
from tests.tls.certs import PKI


def _db() -> str:
    return unique("tlsdb").replace("-", "_")


async def _create_and_read(store: MongoJobStore) -> None:
    try:
        await store.ensure_indexes()
        spec = JobSpec.model_validate({"workload": "noop", "server": {"worker": "srv"},
                                       "clients": [{"worker": "c1"}]})
        job_id = unique("job")
        job, created = await store.create(new_job(job_id, spec, datetime.now(UTC)))
        assert created
        loaded = await store.get(job_id)
        assert loaded.id == job.id
        assert loaded.spec.workload == "noop"
    finally:
        await store.close()


async def test_job_store_with_the_ca_file_setting(tls_mongo: ServerProcess, pki: PKI) -> None:
    settings = load_settings(mongo_url=tls_mongo.url, mongo_db=_db(), mongo_ca_file=str(pki.ca))
    await _create_and_read(mongo_for(settings))
    async with open_store(settings) as checked:  # what every command uses
        assert (await checked.db.command("ping"))["ok"] == 1


async def test_job_store_with_tls_in_the_url(tls_mongo: ServerProcess, pki: PKI) -> None:
    url = f"{tls_mongo.url}?tls=true&tlsCAFile={quote(str(pki.ca), safe='')}"
    await _create_and_read(mongo_for(load_settings(mongo_url=url, mongo_db=_db())))


async def test_mutual_tls_with_the_client_certificate(tls_mongo_mutual: ServerProcess,
                                                     pki: PKI) -> None:
    settings = load_settings(mongo_url=tls_mongo_mutual.url, mongo_db=_db(),
                             mongo_ca_file=str(pki.ca), mongo_cert_file=str(pki.client_combined))
    await _create_and_read(mongo_for(settings))


def _list_jobs(url: str, db: str, **env: str) -> tuple[int, str]:
    """``orchestrator list --json`` against ``url`` (a separate process: see below)."""
    done = run_cli("list", "--json", env=subprocess_env(
        {"ORCHESTRATOR_MONGO_URL": url, "ORCHESTRATOR_MONGO_DB": db}, **env))
    return done.returncode, done.stdout + done.stderr


async def test_the_cli_reads_jobs_over_tls(tls_mongo: ServerProcess, pki: PKI) -> None:
    db = _db()
    settings = load_settings(mongo_url=tls_mongo.url, mongo_db=db, mongo_ca_file=str(pki.ca))
    await _create_and_read(mongo_for(settings))
    code, out = await anyio.to_thread.run_sync(lambda: _list_jobs(
        tls_mongo.url, db, ORCHESTRATOR_MONGO_CA_FILE=str(pki.ca)))
    assert code == 0, out
    assert len(json.loads(out)) == 1


# Refusals run in a separate process (the CLI, through the same store): PyMongo's async driver
# leaves the socket of a handshake that failed certificate verification unclosed
# (pool_shared._configured_protocol_interface re-raises without sock.close(); the synchronous
# driver closes it), and its ResourceWarning would surface in whichever test ran next.
# A refused handshake fails within milliseconds; one second of server selection (instead of the
# default three) still ends in the handshake's own error.
REFUSED_FAST = {"ORCHESTRATOR_CONNECT_TIMEOUT_S": "1"}


@pytest.mark.parametrize("client", ["wrong CA", "system CAs", "no TLS"])
async def test_an_untrusted_server_or_a_plain_client_is_refused(
        tls_mongo: ServerProcess, pki: PKI, client: str) -> None:
    env = {"ORCHESTRATOR_MONGO_CA_FILE": str(pki.wrong_ca)} if client == "wrong CA" else {}
    env |= REFUSED_FAST
    url = tls_mongo.url + ("?tls=true" if client == "system CAs" else "")
    code, out = await anyio.to_thread.run_sync(lambda: _list_jobs(url, _db(), **env))
    assert code == 1, out
    assert "cannot reach MongoDB" in out
    if client != "no TLS":
        assert "certificate verify failed" in out


async def test_mutual_tls_refuses_a_client_without_certificate(
        tls_mongo_mutual: ServerProcess, pki: PKI) -> None:
    code, out = await anyio.to_thread.run_sync(lambda: _list_jobs(
        tls_mongo_mutual.url, _db(), ORCHESTRATOR_MONGO_CA_FILE=str(pki.ca), **REFUSED_FAST))
    assert code == 1, out
    assert "cannot reach MongoDB" in out


def test_a_separate_key_file_is_refused_for_mongo(pki: PKI) -> None:
    files = TLSFiles(cert_file=str(pki.client_cert), key_file=str(pki.client_key))
    with pytest.raises(ConfigError, match="ORCHESTRATOR_MONGO_CERT_FILE only"):
        mongo_tls_options(files)
