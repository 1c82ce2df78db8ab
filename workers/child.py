"""``python -m workers.child --fd N``: one participant's workload in a process of its own.

The worker agent (:mod:`workers.isolation.supervisor`) starts it with one end of a socket pair
as file descriptor ``N`` and sends the ``init`` notice: the participant's identity, the workload
as ``module:qualname`` (the callable the agent's registry resolved: a built-in, an entry-point
plugin or a ``--workload NAME=module:callable`` of the worker), the agent's ``sys.path`` and the
run's directory for large bytes. A workload loaded by reference is loaded again with the
registry's own loader (:func:`workers.plugins.load_reference`), so the child runs exactly the
callable the agent advertised. This process imports the callable, runs it with a
:class:`~workers.isolation.child_context.ChildContext`, sends ``result`` or ``raised`` and exits
0. Its stdout and stderr (where Python ``logging`` and ``ctx.log`` write, one line per record)
are the participant's log, captured by the agent.

SIGTERM asks the workload to stop (``checkpoint_cancel``/``receive`` raise
``WorkloadCancelled``); the agent sends SIGKILL when the stop grace is over. A workload that
blocks this process's thread blocks only this process: the agent beats on.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import importlib
import logging
import math
import os
import signal
import socket
import sys
from collections.abc import Mapping
from typing import Any

import anyio
from anyio.abc import SocketStream, TaskStatus

from orchestrator.errors import WorkloadError
from orchestrator.logs import configure_logging, get_logger
from workers.isolation.child_context import ChildContext, identity_from_wire
from workers.isolation.protocol import BytesCodec, Channel, error_to_wire
from workers.workload_api import WorkloadFn

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
PR_SET_PDEATHSIG = 1
EXIT_ORPHANED = 70


def resolve(reference: str) -> WorkloadFn:
    """The callable named ``module:qualname`` (``a.b`` qualnames walk attributes)."""
    module_name, _, qualname = reference.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"{reference} is not callable")
    fn: WorkloadFn = target
    return fn


def load(init: Mapping[str, Any]) -> WorkloadFn:
    """The workload function the ``init`` notice names: by the registry's own loader for a
    workload the agent loaded by reference (an entry point or ``--workload``), else by the
    function's ``module:qualname``."""
    reference = str(init["fn"])
    if init.get("kind") == "source":
        from workers.plugins import load_reference  # noqa: PLC0415 - only when needed

        return load_reference(str(init["name"]), reference).workload.fn
    return resolve(reference)


def _setup(init: Mapping[str, Any]) -> None:
    for entry in init.get("sys_path", []):
        if isinstance(entry, str) and entry not in sys.path:
            sys.path.append(entry)
    level = str(init.get("log_level", "info"))
    configure_logging(level, "console")
    logging.basicConfig(level=level.upper(), stream=sys.stderr, format=LOG_FORMAT, force=True)


async def _run(fd: int) -> None:
    sock = socket.socket(fileno=fd)
    stream = await SocketStream.from_socket(sock)
    channel = Channel(stream, stream)
    init = await channel.receive()
    _setup(init)
    identity = identity_from_wire(init["identity"])
    log = get_logger("workload", job_id=identity.job_id, participant=identity.participant)
    context = ChildContext(identity, log, channel, BytesCodec(str(init["dir"]), "child"))
    context.mark_gone(init.get("gone", []))  # told before the workload ran
    final: dict[str, Any]
    async with anyio.create_task_group() as tg:
        tg.start_soon(context.serve)
        await tg.start(_on_sigterm, context)
        await channel.send({"op": "ready"})  # (SIGTERM is a stop request from now on)
        try:
            fn = load(init)
            result = await fn(context)
        except BaseException as exc:
            leaf = _leaf(exc)
            if not isinstance(leaf, Exception):
                raise
            final = {"op": "raised", "error": error_to_wire(leaf)}
        else:
            final = _result(result)
        sys.stdout.flush()
        sys.stderr.flush()
        await channel.send(final)
        tg.cancel_scope.cancel()
    await stream.aclose()


def _result(result: object) -> dict[str, Any]:
    """The ``result`` message of what the workload returned (JSON whatever it holds)."""
    key = getattr(result, "final_checkpoint", None)
    if key is not None and not isinstance(key, str):
        message = f"final_checkpoint must be a key, not {key!r}"
        return {"op": "raised", "error": error_to_wire(WorkloadError(message))}
    summary: dict[str, float] = {}
    for name, value in dict(getattr(result, "summary", None) or {}).items():
        with contextlib.suppress(TypeError, ValueError):
            number = float(value)
            if math.isfinite(number):
                summary[str(name)] = number
    return {"op": "result", "final_checkpoint": key, "summary": summary}


async def _on_sigterm(context: ChildContext, *,
                      task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM) as signals:
        task_status.started()
        async for _ in signals:
            context.request_stop()


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _die_with_agent(agent_pid: int | None) -> None:
    """On Linux, have the kernel SIGKILL this process when its agent dies (a SIGKILLed worker
    leaves no workload running on); elsewhere, the closed channel stops the workload."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if agent_pid is not None and os.getppid() != agent_pid:
        os._exit(EXIT_ORPHANED)  # the agent died before the line above


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m workers.child")
    parser.add_argument("--fd", type=int, required=True, help="the channel's file descriptor")
    parser.add_argument("--agent-pid", type=int, default=None, help="the agent's process id")
    args = parser.parse_args(argv)
    _die_with_agent(args.agent_pid)
    anyio.run(_run, args.fd)


if __name__ == "__main__":
    main()
