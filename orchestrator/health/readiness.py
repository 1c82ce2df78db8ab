"""Readiness: is this process connected to its servers and doing its work?

A :class:`Readiness` holds named *checks*, each refreshed by a probe task (:func:`probe`: a
Redis ``PING``, a store ``ping``) and *conditions* read at request time (the daemon is past
startup and not draining; the worker's outbox is publishing). ``/readyz`` is ready when every
condition holds and every check succeeded last time, no longer than ``stale_s`` ago — so a
probe that hangs counts as a failure too. Liveness (``/healthz``) needs none of this: that
the event loop answers the request is the proof.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

Condition = Callable[[], str | None]
"""None when the condition holds; else why the process is not ready."""


@dataclass(slots=True)
class _Check:
    last_ok: float | None = None
    error: str | None = "not checked yet"


class Readiness:
    """Named checks and conditions; :meth:`problems` lists what keeps the process unready."""

    def __init__(self, *, stale_s: float = 5.0) -> None:
        self.stale_s = stale_s
        self._checks: dict[str, _Check] = {}
        self._conditions: list[Condition] = []

    def require(self, condition: Condition) -> None:
        self._conditions.append(condition)

    def add_check(self, name: str) -> None:
        self._checks.setdefault(name, _Check())

    def succeeded(self, name: str) -> None:
        check = self._checks.setdefault(name, _Check())
        check.last_ok, check.error = anyio.current_time(), None

    def failed(self, name: str, error: str) -> None:
        self._checks.setdefault(name, _Check()).error = error

    def problems(self) -> list[str]:
        """Why the process is not ready (empty: ready)."""
        now = anyio.current_time()
        found = [p for p in (c() for c in self._conditions) if p is not None]
        for name, check in self._checks.items():
            if check.error is not None:
                found.append(f"{name}: {check.error}")
            elif check.last_ok is None or now - check.last_ok > self.stale_s:
                found.append(f"{name}: no answer for more than {self.stale_s:g}s")
        return found


async def probe(readiness: Readiness, name: str, check: Callable[[], Awaitable[object]], *,
                every_s: float = 1.0, timeout_s: float = 2.0) -> None:
    """Run ``check`` every ``every_s`` seconds, each bounded by ``timeout_s``, and record its
    result under ``name`` (until cancelled)."""
    readiness.add_check(name)
    while True:
        try:
            with anyio.fail_after(timeout_s):
                await check()
        except TimeoutError:
            readiness.failed(name, f"no answer within {timeout_s:g}s")
        except Exception as exc:  # any failure means not ready; the message says which
            readiness.failed(name, f"{type(exc).__name__}: {str(exc)[:200]}")
        else:
            readiness.succeeded(name)
        await anyio.sleep(every_s)
