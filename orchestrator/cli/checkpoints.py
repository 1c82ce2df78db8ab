"""``orchestrator checkpoints JOB``: a job's model trail from its manifest; optionally
presigned URLs, or downloads checked against the manifest's sha256.

Exit codes: 0 success; 1 a server unreachable, a download that did not verify; 2 an unknown
job id, invalid settings.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import click

from orchestrator.cli.common import EXIT_FAILURE, EXIT_OK, cli_settings
from orchestrator.cli.connect import object_store_for, open_store
from orchestrator.cli.output import console, echo_json, json_option, warn
from orchestrator.cli.running import run
from orchestrator.errors import IntegrityError, StorageError
from orchestrator.storage.validation import validate_key
from orchestrator.watch.model import checkpoint_rows
from orchestrator.watch.render import checkpoints_table

if TYPE_CHECKING:
    from orchestrator.settings import Settings
    from orchestrator.storage.port import ObjectStore


def open_checkpoint_store(settings: Settings) -> ObjectStore:
    return object_store_for(settings)


@click.command()
@click.argument("job_id", metavar="JOB")
@click.option("--download", "download_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Download the checkpoints into DIR (sha256-checked against the manifest).")
@click.option("--presign", is_flag=True, help="Add presigned GET URLs (S3 only).")
@click.option("--expires", "expires_s", type=click.IntRange(1, 604_800), default=3600,
              show_default=True, help="Lifetime of presigned URLs, in seconds.")
@click.option("--final", "final_only", is_flag=True, help="Only the final checkpoint.")
@click.option("--round", "round_", type=int, help="Only the checkpoints of this round.")
@json_option
def checkpoints(  # noqa: PLR0917 - one parameter per click option
    job_id: str, download_dir: Path | None, presign: bool, expires_s: int,
    final_only: bool, round_: int | None, as_json: bool,
) -> None:
    """A job's model trail: every checkpoint in the manifest (round, participant, key, sha256).

    Unknown JOB: exit 2. A download whose sha256 does not match the manifest: exit 1.
    """
    settings = cli_settings()

    async def main() -> int:
        async with open_store(settings) as store:
            job = await store.get(job_id)
            rows = checkpoint_rows(await store.checkpoints(job_id))
        if final_only:
            rows = [r for r in rows if r["final"]]
        if round_ is not None:
            rows = [r for r in rows if r["round"] == round_]
        failures: list[str] = []
        if rows and (download_dir is not None or presign):
            async with open_checkpoint_store(settings) as objects:
                for row in rows:
                    if presign:
                        request = await objects.presign_get(str(row["key"]), expires_s)
                        row["url"] = request.url
                    if download_dir is not None:
                        problem = await _download(objects, row, download_dir)
                        if problem:
                            failures.append(problem)
        if as_json:
            echo_json({"id": job_id, "status": job.status.value, "store": settings.s3_url,
                       "checkpoints": rows})
        else:
            out = console()
            if not rows:
                out.print(f"job {job_id} ({job.status.value}): no checkpoints"
                          + (" matching the filter" if final_only or round_ is not None
                             else ""))
            else:
                out.print(checkpoints_table(rows))
                out.print(f"store: {settings.s3_url}")
                for row in rows:
                    if "url" in row:
                        click.echo(f"{row['key']}  {row['url']}")
                    if "path" in row:
                        click.echo(f"{row['key']}  -> {row['path']}  (sha256 ok)")
        for problem in failures:
            warn(problem)
        return EXIT_FAILURE if failures else EXIT_OK

    sys.exit(run(settings, main))


async def _download(objects: ObjectStore, row: dict[str, Any], directory: Path) -> str | None:
    """Download one checkpoint; return a problem, or None when its sha256 matched.

    The bytes are streamed and checked against the manifest's sha256, the source of truth,
    not against the object's own metadata: a store that lost its metadata (the local S3
    server after a restart) still downloads, and a replaced object is refused. A mismatch
    leaves no file behind.
    """
    key, expected = str(row["key"]), str(row["sha256"])
    try:
        target = anyio.Path(directory / validate_key(key))  # (before any folder is made)
        await target.parent.mkdir(parents=True, exist_ok=True)
        await objects.download_to(key, target, sha256=expected)
    except IntegrityError as exc:
        return f"{key}: does not match the manifest (sha256 {expected}): {exc}"
    except StorageError as exc:
        return f"{key}: download failed: {exc}"
    row["path"] = str(target)
    return None
