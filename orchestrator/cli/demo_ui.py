"""``orchestrator demo --ui``: the dashboard as one more process the demo supervises.

It runs ``orchestrator ui`` with the stack's **watcher** credentials (read-only) on 127.0.0.1
(8710 when free, else any free port), its log beside the daemon's in ``DIR/demo/ui.log``.
The demo prints its URL once it answers, before the job is submitted, so a browser opened on
it sees the job from its first state. On a terminal the demo then keeps everything up until
Ctrl-C (:func:`linger`), so the finished job can still be looked at; the dashboard is stopped
first (before the workers and the daemon), also when interrupted.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import click

from orchestrator.cli.common import Failure
from orchestrator.devstack.acl import WATCHER
from orchestrator.devstack.dashboard import pick_port
from orchestrator.devstack.process import HOST

if TYPE_CHECKING:
    from orchestrator.demo import Child, Supervisor
    from orchestrator.devstack.stack import DevStack

READY_TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0
ROLE = "ui"


@dataclass
class Dashboard:
    """The demo's dashboard process and its address."""

    child: Child
    url: str

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}healthz", timeout=1.0) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    async def ready(self, supervisor: Supervisor) -> None:
        """Until ``/healthz`` answers; ``Failure`` (with its log) if it does not in time."""
        with anyio.move_on_after(READY_TIMEOUT_S):
            while not await anyio.to_thread.run_sync(self._answers):
                supervisor.check()  # it exited: say so, with its log
                await anyio.sleep(0.1)
            return
        raise Failure(f"the dashboard did not answer on {self.url} within "
                      f"{READY_TIMEOUT_S:g}s; see {self.child.log_path}")


def start_dashboard(supervisor: Supervisor, stack: DevStack) -> Dashboard:
    """Start ``orchestrator ui`` on the demo's stack with the watcher's credentials."""
    port = pick_port()
    child = supervisor.spawn(ROLE, ROLE, ["ui", "--host", HOST, "--port", str(port)],
                             stack.role_env(WATCHER))
    return Dashboard(child, f"http://{HOST}:{port}/")


def linger(dashboard: Dashboard) -> None:
    """On a terminal, keep the dashboard (and the stack) up after the job until Ctrl-C, so the
    finished job can still be looked at; elsewhere (a script, CI) return at once."""
    if not sys.stdin.isatty() or not sys.stdout.isatty():
        return
    click.echo(f"the dashboard stays up at {dashboard.url} — press Ctrl-C to stop everything")
    sys.stdout.flush()
    try:
        while dashboard.child.alive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        return


def stop_dashboard(supervisor: Supervisor) -> None:
    """SIGTERM the dashboard (SIGKILL after a grace period) and reap it."""
    for child in supervisor.children:
        if child.role != ROLE or not child.alive():
            continue
        with contextlib.suppress(ProcessLookupError):
            child.popen.send_signal(signal.SIGTERM)
        try:
            child.popen.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                child.popen.kill()
            child.popen.wait()


__all__ = ["Dashboard", "linger", "start_dashboard", "stop_dashboard"]
