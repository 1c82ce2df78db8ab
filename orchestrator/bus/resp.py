"""RESP packing of many commands into one write (``execute_batch``, on one node or a cluster).

``hiredis.pack_command`` packs the common case in C; redis-py's asyncio connections pack with
a pure-Python packer that re-joins the buffer once per argument (a 200-id XACK is the slow
case), so a commit of a few hundred XADDs packs several times faster this way
(``bench/bench_daemon.py`` prints both).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import hiredis

Packer = Callable[..., Iterable[bytes | memoryview]]


def pack_commands(commands: Iterable[tuple[Any, ...]], fallback: Packer) -> bytes:
    """The RESP bytes of ``commands``, as redis-py would pack them.

    ``hiredis.pack_command`` packs the common case; ``fallback`` (a connection's
    ``pack_command``) the rest: a command name with spaces (``"CONFIG GET"``, which redis-py
    splits into two arguments), a name given as bytes, and the argument types hiredis refuses
    (redis-py then packs them or raises ``DataError``).
    """
    chunks: list[bytes | memoryview] = []
    for command in commands:
        name = command[0]
        if isinstance(name, str) and " " not in name:
            try:
                chunks.append(hiredis.pack_command(command))
                continue
            except TypeError:
                pass
        chunks.extend(fallback(*command))
    return b"".join(chunks)


__all__ = ["Packer", "pack_commands"]
