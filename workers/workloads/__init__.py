"""Built-in workloads: noop, sleep, fail and fedavg (``BUILTINS``, read by the registry)."""

from __future__ import annotations

from collections.abc import Mapping

from workers.sdk import Workload
from workers.workloads import basic, fedavg
from workers.workloads.fedavg.config import FedAvgClientConfig, FedAvgServerConfig

#: Name -> every built-in workload, with its configuration models.
BUILTINS: Mapping[str, Workload] = {
    "noop": Workload(basic.noop),  # (takes any config and ignores it: a stand-in)
    "sleep": Workload(basic.sleep, basic.SleepConfig, basic.SleepConfig),
    "fail": Workload(basic.fail, basic.FailConfig, basic.FailConfig),
    "fedavg": Workload(fedavg.fedavg, FedAvgServerConfig, FedAvgClientConfig),
}

__all__ = ["BUILTINS", "basic", "fedavg"]
