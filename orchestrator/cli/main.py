"""Entry point: ``orchestrator COMMAND``. Subcommands are loaded lazily, one module each.

Exit codes: 0 success, 1 failure, 2 bad usage or bad input.
"""

from __future__ import annotations

import importlib
import sys

import click

from orchestrator import __version__
from orchestrator.cli.output import flush_stdout, silence_stdout

#: command name -> "module:attribute" of a click command
COMMANDS: dict[str, tuple[str, str]] = {
    "daemon": ("orchestrator.cli.daemon:daemon", "run the orchestrator daemon"),
    "worker": ("orchestrator.cli.worker:worker", "run a server or client worker"),
    "submit": ("orchestrator.cli.submit:submit", "submit a job spec"),
    "status": ("orchestrator.cli.query:status", "show one job"),
    "list": ("orchestrator.cli.query:list_jobs", "list jobs, newest first"),
    "cancel": ("orchestrator.cli.cancel:cancel", "cancel a job"),
    "events": ("orchestrator.cli.query:events", "a job's history and recent events"),
    "checkpoints": ("orchestrator.cli.checkpoints:checkpoints", "a job's model trail"),
    "logs": ("orchestrator.cli.logs:logs", "what a job's participants printed and logged"),
    "watch": ("orchestrator.cli.watch:watch", "live view of jobs"),
    "workloads": ("orchestrator.cli.workloads:workloads", "workloads live workers offer"),
    "workers": ("orchestrator.cli.workers:workers", "the live workers and what they run"),
    "rejections": ("orchestrator.cli.rejections:rejections", "submissions the daemon refused"),
    "why": ("orchestrator.cli.why:why", "how a job came to end the way it did"),
    "dev": ("orchestrator.cli.dev:dev", "start/stop a local stack of real servers"),
    "storage": ("orchestrator.cli.storage:storage", "prepare and check the checkpoint store"),
    "demo": ("orchestrator.cli.demo:demo", "run the whole system on this machine"),
    "ui": ("orchestrator.cli.ui:ui", "serve the live web dashboard"),
}


class LazyGroup(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        """Run the command; a reader of stdout that went away (``orchestrator watch --json |
        head -1``) ends it quietly with exit 0, as for any Unix filter whose output is no
        longer wanted (the command's own errors keep their exit codes)."""
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            silence_stdout()
            ctx.exit(0)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target[0].split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            return _unavailable(cmd_name, target[1])
        command = getattr(module, attr)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _unavailable(name: str, help_text: str) -> click.Command:
    @click.command(name=name, help=help_text)
    def stub() -> None:
        raise click.ClickException(f"'{name}' is not available in this build")

    return stub


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="orchestrator")
def cli() -> None:
    """A dependable orchestrator for multi-party (federated learning) jobs."""


def main() -> None:
    try:
        cli.main(prog_name="orchestrator")
    finally:
        flush_stdout()  # before the interpreter's own flush, which would report a broken pipe
    sys.exit(0)


if __name__ == "__main__":
    main()
