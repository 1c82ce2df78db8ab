"""``orchestrator storage init``: make the checkpoint store ready, once, before the first job.

A deployment runs it as a one-shot step (``deploy/compose.yaml``'s ``storage-init``, a Job in
Kubernetes) with the application's own credentials: for an ``s3://`` URL it creates the
bucket when it is missing (an existing one is left alone, so the step is idempotent), then
proves that these credentials can write, read back (sha256 checked), list and delete under
the configured prefix, with a small probe object it removes again. It exits 0 when all of that
worked, 1 with the failing operation named otherwise, 2 for bad settings. Without it the first
fedavg job fails at once with ``bucket ... does not exist``.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

import click

from orchestrator.cli.common import BadInput, Failure, cli_settings
from orchestrator.cli.connect import object_store_for
from orchestrator.cli.output import echo_json, json_option
from orchestrator.cli.running import run
from orchestrator.errors import StorageError, error_gist
from orchestrator.settings import Settings

PROBE_PREFIX = "orchestrator-storage-check"


@click.group()
def storage() -> None:
    """Prepare and check the checkpoint store (ORCHESTRATOR_S3_URL)."""


@storage.command()
@click.option("--create-bucket/--no-create-bucket", default=True, show_default=True,
              help="Create a missing s3:// bucket (else a missing bucket is an error).")
@json_option
def init(create_bucket: bool, as_json: bool) -> None:
    """Create the bucket if missing and check that these credentials can use it."""
    settings = cli_settings()
    if settings.s3_url.startswith("memory://"):
        raise BadInput("ORCHESTRATOR_S3_URL is memory://: it lives inside each process; "
                       "there is nothing to prepare")
    report = run(settings, lambda: check_store(settings, create_bucket=create_bucket))
    if as_json:
        echo_json(report)
    else:
        bucket = "created" if report["created"] else "present"
        click.echo(f"{report['url']}: ready (bucket {bucket}; write, read, list and delete "
                   f"checked in {report['seconds']:.2f}s)")


async def check_store(settings: Settings, *, create_bucket: bool) -> dict[str, Any]:
    """Open the store (creating its bucket when allowed), then write, read, list and delete
    one probe object. Raises :class:`Failure` naming the step that failed."""
    from orchestrator.storage import open_object_store  # noqa: PLC0415 - fast --help

    started = time.monotonic()
    created = False
    if settings.s3_url.startswith("s3://") and create_bucket:
        created = not await bucket_exists(settings)
        store = open_object_store(settings.s3_url, endpoint_url=settings.s3_endpoint_url,
                                  create_bucket=True, tls=settings.s3_tls)
    else:
        store = object_store_for(settings)
    key = f"{PROBE_PREFIX}/{secrets.token_hex(8)}"
    data = secrets.token_bytes(64)
    step = "write"
    try:
        async with store:
            await store.create(key, data, {"purpose": "orchestrator storage init"})
            step = "read"
            back = await store.get_data(key, sha256=hashlib.sha256(data).hexdigest())
            if back != data:
                raise Failure(f"{store.url}: the probe object read back differs")
            step = "list"
            if key not in await store.list_keys(PROBE_PREFIX):
                raise Failure(f"{store.url}: the probe object is not listed")
            step = "delete"
            await store.delete(key)
    except StorageError as exc:
        raise Failure(f"{settings.s3_url}: cannot {step} a probe object ({key}): "
                      f"{error_gist(exc)}") from exc
    return {"url": settings.s3_url, "created": created, "checked": ["write", "read", "list",
                                                                     "delete"],
            "seconds": round(time.monotonic() - started, 3)}


async def bucket_exists(settings: Settings) -> bool:
    """Whether the bucket of an ``s3://`` URL exists (HeadBucket; only to say "created")."""
    from orchestrator.storage import open_object_store  # noqa: PLC0415

    store = open_object_store(settings.s3_url, endpoint_url=settings.s3_endpoint_url,
                              tls=settings.s3_tls)
    try:
        async with store:
            await store.list_keys(PROBE_PREFIX)
    except StorageError as exc:
        if "NoSuchBucket" in str(exc) or "does not exist" in str(exc):
            return False
        raise
    return True
