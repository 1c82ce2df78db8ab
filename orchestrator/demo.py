"""The pieces of ``orchestrator demo``: the job it submits and the processes it supervises.

:class:`Supervisor` starts the daemon and the workers as ``orchestrator ...`` subprocesses, each
in its own session (so a terminal's Ctrl-C reaches only the demo, which then stops them in
order) with its log in ``DIR/demo/``. Their pids are written to ``DIR/demo/processes.json`` as
they start. :meth:`Supervisor.stop_all` stops them by pid — workers first (they report their
participants stopped), then the daemon — with SIGTERM, then SIGKILL after a grace period.
On Linux each child also gets ``PR_SET_PDEATHSIG`` so that even a SIGKILLed demo leaves no
worker or daemon behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from orchestrator.core import JobSpec
from orchestrator.devstack.servers import log_tail

DEMO_SUBDIR = "demo"
PROCESS_FILE = "processes.json"
SERVER_WORKER = "demo-server"
STOP_GRACE_S = 10.0
_PR_SET_PDEATHSIG = 1
_LOG_TAIL_LINES = 15


def client_worker(index: int) -> str:
    return f"demo-client-{index + 1}"


def demo_spec(job_id: str, *, rounds: int, clients: int, seed: int = 7,
              min_round_s: float = 0.0) -> JobSpec:
    """A fedavg job on synthetic data: one server worker and ``clients`` client workers.

    The problem (10 classes in 20 dimensions, 200 samples per client, a small learning rate)
    is hard enough that accuracy visibly climbs and loss falls over the first rounds. Each
    round takes a few milliseconds; ``min_round_s`` paces them (``demo --ui``: charts that
    fill round by round while one watches).
    """
    shared = {"seed": seed, "features": 20, "classes": 10, "round_timeout_s": 60}
    return JobSpec.model_validate(
        {
            "job_id": job_id,
            "workload": "fedavg",
            "rounds": rounds,
            "server": {"worker": SERVER_WORKER,
                       "config": {**shared, "test_samples": 1000, "min_round_s": min_round_s}},
            "clients": [
                {"worker": client_worker(i),
                 "config": {**shared, "samples": 200, "epochs": 1, "lr": 0.05}}
                for i in range(clients)
            ],
            "timeouts": {"start_s": 60, "heartbeat_s": 15, "round_s": 120,
                         "job_s": max(600, 120 * rounds + rounds * min_round_s)},
            "labels": {"source": "orchestrator-demo"},
        }
    )


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    """One process the demo started."""

    name: str
    role: str  # "daemon" | "worker"
    popen: subprocess.Popen[bytes]
    log_path: Path
    argv: list[str]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        return log_tail(self.log_path, lines)


class ChildDiedError(RuntimeError):
    """A supervised process exited while the demo still needed it."""

    def __init__(self, child: Child) -> None:
        self.child = child
        code = child.popen.returncode
        tail = child.log_tail()
        super().__init__(
            f"{child.name} (pid {child.pid}) exited with code {code}; its log "
            f"{child.log_path} ends with:\n{tail}"
        )


@dataclass
class Supervisor:
    """Starts and stops the demo's daemon and workers (by pid, never by name)."""

    directory: Path
    env: Mapping[str, str]
    children: list[Child] = field(default_factory=list)
    _logs: list[IO[bytes]] = field(default_factory=list)

    @property
    def run_dir(self) -> Path:
        return self.directory / DEMO_SUBDIR

    @property
    def process_file(self) -> Path:
        return self.run_dir / PROCESS_FILE

    def spawn(self, name: str, role: str, args: list[str],
              env: Mapping[str, str] | None = None) -> Child:
        """Start ``orchestrator ARGS`` with ``self.env`` updated by ``env`` (e.g. the
        process's own role credentials from the stack's ``DIR/env.ROLE``)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.run_dir / f"{name}.log"
        log = log_path.open("ab")
        self._logs.append(log)
        argv = [sys.executable, "-m", "orchestrator.cli.main", *args]
        popen = subprocess.Popen(
            argv,
            env={**self.env, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
        )
        child = Child(name, role, popen, log_path, argv)
        self.children.append(child)
        self._record()
        return child

    def start_daemon(self, env: Mapping[str, str] | None = None) -> Child:
        return self.spawn("daemon", "daemon", ["daemon"], env)

    def start_worker(self, name: str, role: str, env: Mapping[str, str] | None = None) -> Child:
        return self.spawn(name, "worker", ["worker", "--role", role, "--name", name], env)

    def _record(self) -> None:
        rows = [
            {"name": c.name, "role": c.role, "pid": c.pid, "log": str(c.log_path),
             "argv": c.argv}
            for c in self.children
        ]
        tmp = self.process_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"supervisor_pid": os.getpid(), "processes": rows},
                                  indent=2) + "\n")
        tmp.replace(self.process_file)

    def check(self) -> None:
        """Raise :class:`ChildDiedError` if a supervised process has exited."""
        for child in self.children:
            if not child.alive():
                raise ChildDiedError(child)

    def stop_all(self, grace_s: float = STOP_GRACE_S) -> list[str]:
        """Stop workers, then the daemon: SIGTERM, wait ``grace_s``, SIGKILL; reap them all."""
        stopped: list[str] = []
        for role in ("worker", "daemon"):
            group = [c for c in self.children if c.role == role and c.alive()]
            for child in group:
                with contextlib.suppress(ProcessLookupError):
                    child.popen.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            for child in group:
                try:
                    child.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        child.popen.kill()
                    child.popen.wait()
                stopped.append(child.name)
        for child in self.children:  # reap anything that exited by itself
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.popen.wait(timeout=1)
        for log in self._logs:
            log.close()
        self._logs.clear()
        return stopped
