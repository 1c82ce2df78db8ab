"""Built-in workloads; importing this package registers noop, sleep, fail and fedavg."""

from __future__ import annotations

from workers.workloads import basic, fedavg

__all__ = ["basic", "fedavg"]
