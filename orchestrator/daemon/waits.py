"""Waiting that a stop cuts short."""

from __future__ import annotations

import anyio


async def wait_for(event: anyio.Event, stopping: anyio.Event, timeout_s: float) -> None:
    """Until ``event`` or ``stopping`` is set, or ``timeout_s`` passed."""
    if event.is_set() or stopping.is_set():
        return
    with anyio.move_on_after(timeout_s):
        async with anyio.create_task_group() as tg:
            async def wait(e: anyio.Event) -> None:
                await e.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(wait, event)
            tg.start_soon(wait, stopping)


async def sleep_unless(stopping: anyio.Event, seconds: float) -> None:
    """Sleep, but wake at once when ``stopping`` is set."""
    with anyio.move_on_after(seconds):
        await stopping.wait()


class Wakeup:
    """A latch another task sets to wake a sleeper early (a job waits, a worker came)."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def set(self) -> None:
        self._event.set()

    async def sleep(self, seconds: float, stopping: anyio.Event) -> None:
        """Sleep until woken, stopping, or ``seconds`` passed; then re-arm."""
        await wait_for(self._event, stopping, seconds)
        self._event = anyio.Event()
