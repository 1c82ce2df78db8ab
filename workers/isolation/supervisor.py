"""The agent's side of an isolated participant: start its child, answer it, stop it.

Theory of operation. :class:`IsolatedWorkload` is, to :class:`~workers.participant.ParticipantRun`,
just a workload function: it takes the participant's real
:class:`~workers.context.RedisWorkloadContext` and returns a ``WorkloadResult`` or raises what
the workload raised. Inside, it starts ``python -m workers.child`` (:mod:`workers.child`) in a
new session with one end of a socket pair, sends it ``init``, and then, in one task group:

* answers the child's requests with the real context (each in a task of its own, so a
  ``receive`` waiting for a message does not hold up a ``report_metrics``);
* forwards the context's stop (as a ``stop`` notice *and* SIGTERM) and membership changes;
* reads the child's stdout and stderr line by line into the participant's
  :class:`~workers.isolation.logs.ParticipantLog`, and runs its live tail.

It ends when the child sent its last word and exited. A child that exits without one fails the
participant: ``… exited with code 3`` or ``… was killed by signal 9``. When the run's cancel
scope ends the call (the stop grace is over, or a checkpoint failed), the child gets SIGKILL.
Everything of the agent — heartbeats, the outbox, other participants — runs on in the agent's
event loop whatever the child does.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Any, Literal

import anyio
from anyio.abc import ByteReceiveStream, Process, SocketStream, TaskGroup
from structlog.typing import FilteringBoundLogger

from orchestrator.errors import WorkloadError
from workers.child import resolve
from workers.context import RedisWorkloadContext
from workers.isolation.logs import ParticipantLog
from workers.isolation.protocol import (
    BytesCodec,
    Channel,
    ChannelClosedError,
    error_from_wire,
    error_to_wire,
)
from workers.isolation.requests import handler_for
from workers.workload_api import WorkloadContext, WorkloadFn, WorkloadResult

EXIT_WAIT_S = 5.0
"""How long a child that sent its last word may take to exit before it is killed."""
_READ_CHUNK = 64 * 1024
_HIDDEN_ENV = ("ORCHESTRATOR_REDIS_", "ORCHESTRATOR_MONGO_", "ORCHESTRATOR_DAEMON_KEY")
"""Settings a workload's process does not get (it talks to the orchestrator through its agent):
every Redis and MongoDB setting (URLs, passwords, TLS files) and the daemon key."""


def reference_of(fn: WorkloadFn) -> str | None:
    """``module:qualname`` under which a child process finds ``fn`` again; None when it cannot
    (a function defined inside another, a callable object, a ``__main__`` function)."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        return None
    if module == "__main__" or "<" in qualname:
        return None
    reference = f"{module}:{qualname}"
    try:
        found = resolve(reference)
    except Exception:
        return None
    return reference if found is fn else None


@dataclass(frozen=True, slots=True)
class ChildTarget:
    """What a child process imports to run a workload: the registry's ``source`` of a workload
    loaded by reference (kind ``source``), or a function's ``module:qualname``."""

    name: str
    reference: str
    kind: Literal["source", "function"]


def child_target(name: str, fn: WorkloadFn, source: str | None) -> ChildTarget | None:
    """How a child finds workload ``name`` again; None when it cannot (run it inline)."""
    if source is not None:
        return ChildTarget(name, source, "source")
    reference = reference_of(fn)
    return None if reference is None else ChildTarget(name, reference, "function")


def exit_description(returncode: int | None) -> str:
    if returncode is None:
        return "did not exit"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "?"
        return f"was killed by signal {-returncode} ({name})"
    return f"exited with code {returncode}"


class IsolatedWorkload:
    """A workload run in a child process, called like the workload itself."""

    def __init__(self, target: ChildTarget, capture: ParticipantLog, log: FilteringBoundLogger,
                 *, log_level: str = "info") -> None:
        self.target = target
        self.capture = capture
        self.log = log
        self.log_level = log_level
        self.killed = False
        """Whether the child had to be killed (SIGKILL)."""
        self.returncode: int | None = None
        self._ready = False  # the child takes SIGTERM as a stop request
        self._stop_wanted = False
        self._process: Process | None = None

    async def __call__(self, ctx: WorkloadContext) -> WorkloadResult:
        if not isinstance(ctx, RedisWorkloadContext):
            raise TypeError("an isolated workload runs with a worker's context")
        directory = tempfile.mkdtemp(prefix="orchestrator-run-")
        try:
            return await self._run(ctx, directory)
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    async def _run(self, ctx: RedisWorkloadContext, directory: str) -> WorkloadResult:
        ours, theirs = socket.socketpair()
        try:
            process = await anyio.open_process(
                [sys.executable, "-m", "workers.child", "--fd", str(theirs.fileno()),
                 "--agent-pid", str(os.getpid())],
                stdin=subprocess.DEVNULL, pass_fds=[theirs.fileno()], env=_child_env(),
                start_new_session=True,
            )
        finally:
            theirs.close()
        self._process = process
        stream = await SocketStream.from_socket(ours)
        channel = Channel(stream, stream)
        self.log.debug("workload process started", pid=process.pid, fn=self.target.reference)
        last: dict[str, Any] | None = None
        outputs_done = [anyio.Event(), anyio.Event()]
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._read_output, process.stdout, "stdout", outputs_done[0])
                tg.start_soon(self._read_output, process.stderr, "stderr", outputs_done[1])
                tg.start_soon(self.capture.tail)
                await self._notify(channel, _init(ctx, self.target, directory, self.log_level))

                def on_stop() -> None:
                    self._on_stop(tg, channel)

                def on_gone(gone: list[str], reason: str) -> None:
                    tg.start_soon(self._notify, channel,
                                  {"op": "gone", "gone": gone, "reason": reason})

                ctx.stop_listeners.append(on_stop)
                ctx.gone_listeners.append(on_gone)
                try:
                    if ctx.cancelled():
                        on_stop()
                    last = await self._serve(ctx, channel, BytesCodec(directory, "agent"))
                    with anyio.move_on_after(EXIT_WAIT_S):
                        self.returncode = await process.wait()
                    with anyio.move_on_after(EXIT_WAIT_S):  # the last lines of its output
                        for done in outputs_done:
                            await done.wait()
                finally:
                    ctx.stop_listeners.remove(on_stop)
                    ctx.gone_listeners.remove(on_gone)
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self._end(process, stream)
        return self._outcome(last)

    async def _serve(self, ctx: RedisWorkloadContext, channel: Channel,
                     codec: BytesCodec) -> dict[str, Any] | None:
        """Answer requests until the child's last word (returned) or until it hangs up."""
        async with anyio.create_task_group() as requests:
            try:
                while True:
                    message = await channel.receive()
                    if message.get("op") in {"result", "raised"}:
                        requests.cancel_scope.cancel()
                        return message
                    if message.get("op") == "ready":
                        self._ready = True
                        if self._stop_wanted:
                            self._sigterm()
                        continue
                    requests.start_soon(self._answer, ctx, channel, codec, message)
            except ChannelClosedError:
                requests.cancel_scope.cancel()
        return None

    async def _answer(self, ctx: RedisWorkloadContext, channel: Channel, codec: BytesCodec,
                      message: dict[str, Any]) -> None:
        request_id = message.get("id")
        handler = handler_for(message.get("op"))
        reply: dict[str, Any]
        args = message.get("args")
        try:
            reply = {"id": request_id,
                     "ok": await handler(ctx, codec, args if isinstance(args, dict) else {})}
        except Exception as exc:
            reply = {"id": request_id, "error": error_to_wire(exc)}
        await self._notify(channel, reply)

    async def _notify(self, channel: Channel, message: dict[str, Any]) -> None:
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            await channel.send(message)

    def _on_stop(self, tg: TaskGroup, channel: Channel) -> None:
        """The participant was asked to stop: tell the child, and SIGTERM it (once it is
        ready: the notice alone reaches one that is still starting)."""
        self._stop_wanted = True
        tg.start_soon(self._notify, channel, {"op": "stop"})
        if self._ready:
            self._sigterm()

    def _sigterm(self) -> None:
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.send_signal(signal.SIGTERM)

    async def _read_output(self, output: ByteReceiveStream | None, name: str,
                           done: anyio.Event) -> None:
        try:
            if output is not None:
                await self._read_lines(output, name)
        finally:
            done.set()

    async def _read_lines(self, output: ByteReceiveStream, name: str) -> None:
        pending = b""
        with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError,
                                 anyio.ClosedResourceError):
            async for chunk in output:
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    self.capture.add(name, line.decode(errors="replace"))
                if len(pending) > _READ_CHUNK:
                    self.capture.add(name, pending.decode(errors="replace"))
                    pending = b""
        if pending:
            self.capture.add(name, pending.decode(errors="replace"))

    async def _end(self, process: Process, stream: SocketStream) -> None:
        """The child is gone when this returns (SIGKILL if need be); the tail is flushed."""
        if process.returncode is None:
            self.killed = True
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            self.log.warning("killed the workload process", pid=process.pid)
            self.capture.add("note", "[the workload's process was killed (SIGKILL)]")
        self.returncode = await process.wait()
        with contextlib.suppress(Exception):
            await stream.aclose()
        with contextlib.suppress(Exception):
            await process.aclose()
        with anyio.move_on_after(EXIT_WAIT_S):  # (shielded: never wait on Redis for long)
            await self.capture.flush()

    def _outcome(self, last: dict[str, Any] | None) -> WorkloadResult:
        if last is None:
            message = f"the workload's process {exit_description(self.returncode)}"
            self.capture.add("note", f"[{message}]")
            raise WorkloadError(message)
        if last["op"] == "raised":
            error = last.get("error")
            raise error_from_wire(error if isinstance(error, dict) else {})
        summary = last.get("summary")
        final = last.get("final_checkpoint")
        return WorkloadResult(final_checkpoint=final if isinstance(final, str) else None,
                              summary=dict(summary) if isinstance(summary, dict) else {})


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_HIDDEN_ENV)}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _init(ctx: RedisWorkloadContext, target: ChildTarget, directory: str,
          log_level: str) -> dict[str, Any]:
    return {
        "op": "init", "name": target.name, "fn": target.reference, "kind": target.kind,
        "dir": directory, "sys_path": list(sys.path),
        "log_level": log_level, "gone": sorted(ctx.gone_peers),
        "identity": {
            "job_id": ctx.job_id, "participant": ctx.participant, "role": ctx.role.value,
            "run_id": ctx.run_id, "config": dict(ctx.config), "data_path": ctx.data_path,
            "model": ctx.model, "rounds": ctx.rounds, "peers": list(ctx.peers),
            "client_index": ctx.client_index, "client_count": ctx.client_count,
            "min_clients": ctx.min_clients,
        },
    }
