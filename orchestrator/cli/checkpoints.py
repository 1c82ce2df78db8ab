"""``orchestrator checkpoints JOB``: a job's model trail from its manifest (through the Python
client); optionally
presigned URLs, or downloads checked against the manifest's sha256.

Exit codes: 0 success; 1 a server unreachable, a download that did not verify; 2 an unknown
job id, invalid settings.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from orchestrator.cli.common import EXIT_FAILURE, EXIT_OK, cli_settings
from orchestrator.cli.output import console, echo_json, json_option, warn
from orchestrator.cli.running import run
from orchestrator.client import Client
from orchestrator.client.downloads import download_verified
from orchestrator.errors import IntegrityError, StorageError
from orchestrator.watch.render import checkpoints_table

if TYPE_CHECKING:
    from orchestrator.storage.port import ObjectStore


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
        async with Client(settings) as client:
            job = await client.get(job_id)
            rows = await client.checkpoints(job_id, final_only=final_only, round_=round_)
            failures: list[str] = []
            if rows and (download_dir is not None or presign):
                objects = await client.connections.objects()
                for row in rows:
                    if presign:
                        row["url"] = await client.presign(str(row["key"]), expires_s)
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
    """Download one checkpoint (:func:`orchestrator.client.downloads.download_verified`);
    return a problem, or None when its sha256 matched (then ``row["path"]`` is the file)."""
    key = str(row["key"])
    try:
        target = await download_verified(objects, row, directory)
    except IntegrityError as exc:
        return str(exc)
    except StorageError as exc:
        return f"{key}: download failed: {exc}"
    row["path"] = str(target)
    return None
