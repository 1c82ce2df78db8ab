"""Built-in workloads: noop, sleep, fail and fedavg (``BUILTINS``, read by the registry)."""

from __future__ import annotations

from collections.abc import Mapping

from workers.sdk import WorkloadFn
from workers.workloads import basic, fedavg

#: Name -> workload function of every built-in workload.
BUILTINS: Mapping[str, WorkloadFn] = {
    "noop": basic.noop,
    "sleep": basic.sleep,
    "fail": basic.fail,
    "fedavg": fedavg.fedavg,
}

__all__ = ["BUILTINS", "basic", "fedavg"]
