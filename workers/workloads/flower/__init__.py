"""``flower``: runs an unmodified Flower App, with the orchestrator as Flower's transport.

Theory of operation. The server participant loads the spec's ``ServerApp`` (``module:attribute``
in ``server.config.app``) and calls it, as Flower's runners do, with a Flower ``Context`` and an
:class:`~.grid.OrchestratorGrid`: a Flower ``Grid`` whose nodes are the job's client
participants (``client-<i>`` is node ``1000 + i``). The app runs in a thread; each grid call
crosses to the event loop, where a pushed Flower ``Message`` is serialized with Flower's
protobuf serde, stored with ``put_blob`` and announced to its client by a small notice (key and
sha256) over participant messaging; replies come back the same way. Each client participant
loads its ``ClientApp`` and, until the server says ``done``, calls it with every message and
its node's ``Context`` and sends the reply back. So Flower's rounds run under the
orchestrator's heartbeats, deadlines, cancellation and restart recovery, and Redis carries only
notices, never payloads.

What the orchestrator keeps (see :mod:`.observer`): a round announcement per Flower round;
per round, the server's row (the strategy's aggregated metrics, reply and failure counts) and
one row per client (the metrics of its replies: ``train_<name>``, ``evaluate_<name>``); the
global model's arrays as an ``.npz`` checkpoint every round (the last round's is the final
one). An exception in the ServerApp fails the server participant, hence the job, with Flower's
message; one in a ClientApp becomes an error reply, as in Flower. A client the orchestrator
reports gone drops out of ``Grid.get_node_ids()`` and its outstanding messages get error
replies at once, so the strategy goes on with the others while ``min_clients`` holds; below
it the server fails at once.

Flower (``flwr`` >= 1.40) is an optional dependency, imported only when the workload runs;
without it the participant fails saying ``pip install 'orchestrator[flower]'``.
"""

from __future__ import annotations

from orchestrator.core.status import Role
from workers.sdk import Workload, WorkloadContext, WorkloadResult
from workers.workloads.flower.config import FlowerClientConfig, FlowerServerConfig
from workers.workloads.flower.loading import INSTALL_HINT, require_flower

__all__ = ["FLOWER", "INSTALL_HINT", "FlowerClientConfig", "FlowerServerConfig", "flower"]


async def flower(ctx: WorkloadContext) -> WorkloadResult:
    """An unmodified Flower App: its ServerApp on the server, its ClientApp on each client
    (`pip install 'orchestrator[flower]'`; see docs/workloads-guide.md, "Flower")."""
    require_flower()
    if ctx.role is Role.SERVER:
        from workers.workloads.flower.server import serve  # noqa: PLC0415 - flwr only now

        return await serve(ctx)
    from workers.workloads.flower.client import train  # noqa: PLC0415 - flwr only now

    return await train(ctx)


FLOWER = Workload(flower, FlowerServerConfig, FlowerClientConfig)
"""The workload with its configuration models (registered as ``flower``)."""
