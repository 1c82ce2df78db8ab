"""``orchestrator demo``: the whole system on this machine, in one command.

Starts the local stack (unless it already runs in DIR), a daemon, one server worker and N client
workers, submits a ``fedavg`` job on synthetic data, shows the watcher until the job finishes,
prints a summary and stops everything it started — also on Ctrl-C or SIGTERM at any point.
``--keep`` leaves the stack's servers running (daemon and workers are always stopped).

Exit 0 only if the job FINISHED_SUCCESSFULLY; 1 otherwise (including when interrupted).
"""

from __future__ import annotations

import os
import signal
import sys
import time
import uuid
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import anyio
import click

from orchestrator import demo_flower
from orchestrator.cli.common import EXIT_FAILURE, Failure, cli_settings
from orchestrator.cli.connect import (
    bus_for,
    keys_for,
    object_store_for,
    open_redis,
    open_store,
    redact,
)
from orchestrator.cli.demo_ui import Dashboard, linger, start_dashboard, stop_dashboard
from orchestrator.cli.output import warn
from orchestrator.cli.running import run_interruptible
from orchestrator.cli.watch import JobOutcome, default_mode, follow_job
from orchestrator.client import Client
from orchestrator.demo import (
    DEMO_SUBDIR,
    SERVER_WORKER,
    ChildDiedError,
    Supervisor,
    client_worker,
    demo_spec,
)
from orchestrator.devstack.acl import DAEMON
from orchestrator.devstack.stack import DEFAULT_DIR, DevStack, ServerStartError, StackError, up
from orchestrator.watch.follow import StreamTail
from orchestrator.watch.model import JobDetail, format_metric, sparkline

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from orchestrator.bus import Bus
    from orchestrator.settings import Settings

WORKER_REGISTRATION_TIMEOUT_S = 60.0


def _say(message: str) -> None:
    click.echo(message)
    sys.stdout.flush()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


async def _wait_for_workers(bus: Bus, redis: Redis, settings: Settings, names: list[str],
                            supervisor: Supervisor) -> None:
    """Until every worker registered: woken by the control stream's ``worker_registered``."""
    tail = StreamTail(redis, keys_for(settings).control, block_ms=500)
    await tail.mark()
    deadline = anyio.current_time() + WORKER_REGISTRATION_TIMEOUT_S
    while True:
        alive = await bus.alive_workers(names)
        missing = [n for n in names if n not in alive]
        if not missing:
            return
        supervisor.check()
        if anyio.current_time() > deadline:
            raise Failure(f"workers {', '.join(missing)} did not register within "
                          f"{WORKER_REGISTRATION_TIMEOUT_S:g}s; see {supervisor.run_dir}/")
        await tail.read()


async def _run_job(settings: Settings, supervisor: Supervisor, *, rounds: int, clients: int,
                   timeout_s: float, workload: str = "fedavg",
                   dashboard: Dashboard | None = None, pace_s: float = 0.0) -> JobOutcome:
    """Submit the demo job once every worker registered, watch it: how following it ended."""
    job_id = f"demo-{uuid.uuid4().hex[:12]}"
    spec = (demo_flower.flower_demo_spec(job_id, rounds=rounds, clients=clients)
            if workload == "flower"
            else demo_spec(job_id, rounds=rounds, clients=clients, min_round_s=pace_s))
    names = [SERVER_WORKER, *(client_worker(i) for i in range(clients))]
    async with open_store(settings), open_redis(settings) as redis:
        bus = bus_for(redis, settings)
        _say(f"waiting for {len(names)} workers to register …")
        await _wait_for_workers(bus, redis, settings, names, supervisor)
        if dashboard is not None:
            await dashboard.ready(supervisor)
            _say(f"dashboard: {dashboard.url}jobs/{job_id}  (all jobs: {dashboard.url})")
        await bus.submit(spec.model_dump_json(exclude_none=True))
        _say(f"submitted job {job_id}: {workload}, {rounds} rounds, {clients} clients "
             "(synthetic data)")
        async with Client(settings) as client:
            outcome = await follow_job(
                client, job_id, mode=default_mode(as_json=False), wait_for_job_s=None,
                timeout_s=timeout_s, on_frame=lambda _frame: supervisor.check(),
            )
    if outcome.message:
        warn(outcome.message)
    return outcome


@click.command()
@click.option("--rounds", type=click.IntRange(1, 1000), default=5, show_default=True)
@click.option("--clients", type=click.IntRange(1, 50), default=3, show_default=True)
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=DEFAULT_DIR, envvar="ORCHESTRATOR_DEV_DIR", show_default=True,
              help="Stack directory (data, logs, env file). Env: ORCHESTRATOR_DEV_DIR.")
@click.option("--keep", is_flag=True,
              help="Leave the stack's servers running afterwards (to look at the job).")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=1), default=900,
              show_default=True, help="Give up on the job after this many seconds.")
@click.option("--workload", type=click.Choice(["fedavg", "flower"]), default="fedavg",
              show_default=True, help="fedavg, or the example Flower App "
              "(examples/flower-app; needs pip install -e '.[flower]').")
@click.option("--ui", "with_ui", is_flag=True,
              help="Also serve the web dashboard (orchestrator ui) on 127.0.0.1 and print "
                   "its URL before the job is submitted.")
@click.option("--pace", "pace_s", type=click.FloatRange(0, 60), default=None,
              help="Each fedavg round lasts at least this many seconds, so that the charts "
                   "fill while you watch  [default: 2 with --ui, else 0]")
def demo(rounds: int, clients: int, directory: Path, keep: bool,  # noqa: PLR0917 - one parameter per click option
         timeout_s: float, workload: str, with_ui: bool, pace_s: float | None) -> None:
    """Run the whole system here: stack, daemon, 1 server + N client workers, a fedavg job
    (or, with --workload flower, the example Flower App).

    Exit 0 only if the job FINISHED_SUCCESSFULLY. Ctrl-C stops everything it started.
    """
    cli_settings()  # invalid settings: exit 2 before anything starts
    directory = directory.resolve()
    previous_term = signal.signal(signal.SIGTERM, _interrupt)
    stack: DevStack | None = None
    started_stack = False
    supervisor: Supervisor | None = None
    summary: list[str] = []
    code = EXIT_FAILURE
    began = time.monotonic()
    try:
        if workload == "flower":
            demo_flower.check_flower_demo()
        _say(f"starting the local stack (Redis, S3, MongoDB stand-in) in {directory} …")
        names = [SERVER_WORKER, *(client_worker(i) for i in range(clients))]
        result = up(directory, workers=names, namespace=cli_settings().namespace)
        stack, started_stack = result.stack, result.started
        if not started_stack:
            _say("  (a stack was already running there; using it and leaving it running)")
        # This process is the edge: settings come from here. It submits and watches, so it
        # uses DIR/env (the submitter's Redis user); the daemon and each worker get their own.
        os.environ.update(stack.env)
        settings = cli_settings()
        sup = supervisor = Supervisor(directory, dict(os.environ))
        daemon = sup.start_daemon(stack.role_env(DAEMON))
        worker_env = (demo_flower.flower_worker_env if workload == "flower"
                      else dict)
        server = sup.start_worker(SERVER_WORKER, "server",
                                  worker_env(stack.worker_env(SERVER_WORKER)))
        workers = [sup.start_worker(name, "client", worker_env(stack.worker_env(name)))
                   for name in names[1:]]
        _say(f"started daemon (pid {daemon.pid}), {SERVER_WORKER} (pid {server.pid}) and "
             f"{clients} client workers (pids {', '.join(str(w.pid) for w in workers)}); "
             f"logs in {sup.run_dir}/")
        dashboard = start_dashboard(sup, stack) if with_ui else None
        outcome = run_interruptible(settings, lambda: _run_job(
            settings, sup, rounds=rounds, clients=clients, timeout_s=timeout_s,
            workload=workload, dashboard=dashboard,
            pace_s=pace_s if pace_s is not None else 2.0 if with_ui else 0.0))
        code = outcome.exit_code
        if workload == "flower" and code == 0 and outcome.detail is not None:
            detail = outcome.detail
            problems = run_interruptible(settings, lambda: _flower_problems(
                settings, detail, rounds=rounds, clients=clients))
            for problem in problems:
                warn(f"flower demo check failed: {problem}")
            code = EXIT_FAILURE if problems else code
        if outcome.detail is not None:
            summary = summary_lines(
                outcome.detail, directory=directory, env_file=stack.env_file,
                settings=settings, elapsed_s=time.monotonic() - began, kept=keep,
                stack_preexisting=not started_stack)
        if dashboard is not None:
            linger(dashboard)
    except KeyboardInterrupt:
        warn("interrupted: stopping everything the demo started …")
    except ChildDiedError as exc:
        warn(f"demo failed: {exc}")
    except (ServerStartError, StackError) as exc:
        warn(f"demo failed: the local stack did not start: {exc}")
    except click.ClickException as exc:
        warn(f"demo failed: {exc.format_message()}")
    except demo_flower.FlowerDemoError as exc:
        warn(f"demo failed: {exc}")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # cleanup is bounded: let it finish
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            _cleanup(supervisor, stack, stop_stack=started_stack and not keep)
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, previous_term)
    for line in summary:
        _say(line)
    sys.exit(code)


async def _flower_problems(settings: Settings, detail: JobDetail, *, rounds: int,
                           clients: int) -> list[str]:
    """The Flower demo's checks of its finished job (metrics rows, checkpoints, sha256)."""
    objects = object_store_for(settings)
    try:
        return await demo_flower.job_problems(objects, detail.metrics, detail.checkpoints,
                                              rounds=rounds, clients=clients)
    finally:
        await objects.close()


def _cleanup(supervisor: Supervisor | None, stack: DevStack | None, *, stop_stack: bool) -> None:
    if supervisor is not None:
        stop_dashboard(supervisor)
    if supervisor is not None and supervisor.children:
        stopped = supervisor.stop_all()
        if stopped:
            _say(f"stopped {', '.join(stopped)}")
    if stack is not None and stop_stack:
        names = stack.stop()
        if names:
            _say(f"stopped the stack ({', '.join(names)}); its data stays in {stack.directory}")


def summary_lines(
    detail: JobDetail,
    *,
    directory: Path,
    env_file: Path,
    settings: Settings,
    elapsed_s: float,
    kept: bool,
    stack_preexisting: bool,
) -> list[str]:
    """The closing summary: outcome, accuracy, where metrics and checkpoints are, what next."""
    job = detail.job
    lines = [
        "",
        f"job {job.id} {job.status.value} in {elapsed_s:.1f}s "
        f"({job.round}/{job.spec.rounds} rounds, {len(job.clients)} clients)",
    ]
    if job.error is not None:
        who = f" [{job.error.participant}]" if job.error.participant else ""
        lines.append(f"  error: {job.error.code.value}{who}: {job.error.message}")
    for trend in detail.trends:
        if trend.participant == "server" and trend.name in ("accuracy", "loss"):
            lines.append(
                f"  final {trend.name}: {format_metric(trend.latest)}   "
                f"by round {sparkline(trend.values)}  "
                f"({format_metric(trend.values[0])} → {format_metric(trend.latest)})"
            )
    rows = len(detail.metrics)
    lines.append(f"  metrics:     {rows} rows (per round, server and clients) in MongoDB "
                 f"{redact(settings.mongo_url)} database {settings.mongo_db!r}, "
                 "collection 'metrics'")
    final = job.final_checkpoint.key if job.final_checkpoint is not None else "none"
    lines.append(f"  checkpoints: {len(detail.checkpoints)} in {settings.s3_url} "
                 f"(S3 endpoint {settings.s3_endpoint_url}); final model: {final}")
    lines.append(f"  logs:        {directory / DEMO_SUBDIR}/")
    lines.append("")
    if kept or stack_preexisting:
        lines.append("look at it (the stack is still running):")
    else:
        lines.append("the stack was stopped; its data stays in "
                     f"{directory}. To look at the job, start it again:")
        lines.append(f"  orchestrator dev up --dir {directory}")
    lines += [
        f"  set -a; source {env_file}; set +a",
        f"  orchestrator status {job.id}",
        f"  orchestrator checkpoints {job.id} --download ./models",
        f"  orchestrator events {job.id}",
        f"  orchestrator watch {job.id} --once",
    ]
    if kept or stack_preexisting:
        lines.append(f"stop the stack with:  orchestrator dev down --dir {directory}")
    else:
        lines.append(f"and stop it again with:  orchestrator dev down --dir {directory}")
    return lines


__all__ = ["demo"]
