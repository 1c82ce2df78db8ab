"""Built-in workloads: noop, sleep, fail, fedavg and flower.

Each is a :class:`~workers.sdk.Workload` (the function with its configuration models), offered
through the ``orchestrator.workloads`` entry-point group like any plugin's
(``pyproject.toml``: ``fedavg = "workers.workloads:FEDAVG"``). ``BUILTINS`` is the registry's
fallback for a source tree whose package metadata is missing or stale (run without
``pip install -e .``, or installed before the entry points existed), so the built-ins are
always there.
"""

from __future__ import annotations

from collections.abc import Mapping

from workers.sdk import Workload
from workers.workloads import basic, fedavg
from workers.workloads.fedavg.config import FedAvgClientConfig, FedAvgServerConfig
from workers.workloads.flower import FLOWER  # (imports flwr only when a flower job runs)

NOOP = Workload(basic.noop, light=True)  # (any config, ignored: a stand-in; runs inline)
SLEEP = Workload(basic.sleep, basic.SleepConfig, basic.SleepConfig)
FAIL = Workload(basic.fail, basic.FailConfig, basic.FailConfig)
FEDAVG = Workload(fedavg.fedavg, FedAvgServerConfig, FedAvgClientConfig)

#: Name -> every built-in workload, with its configuration models.
BUILTINS: Mapping[str, Workload] = {"noop": NOOP, "sleep": SLEEP, "fail": FAIL,
                                    "fedavg": FEDAVG, "flower": FLOWER}

#: Name -> where each built-in's entry point points (the same objects as ``BUILTINS``).
BUILTIN_SOURCES: Mapping[str, str] = {name: f"workers.workloads:{name.upper()}"
                                      for name in BUILTINS}

__all__ = ["BUILTINS", "BUILTIN_SOURCES", "FAIL", "FEDAVG", "FLOWER", "NOOP", "SLEEP", "basic",
           "fedavg"]
