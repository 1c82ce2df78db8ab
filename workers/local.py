"""Run a whole job's participants in one process, in memory: for tests and for trying workloads.

Every participant is a task in one anyio task group with a :class:`LocalContext`: messages go
over anyio memory object streams, blobs and checkpoints into one dict (``store``), metrics into
the result. Faults are injectable: :meth:`LocalHub.kill` cancels a participant abruptly (as a
SIGKILL would: it sends nothing more), :meth:`LocalHub.request_stop` asks it to stop
cooperatively. When the server ends without success the hub stops the other participants, as
the daemon would.

    result = await run_local_job("fedavg", clients=3, rounds=5)
    result.metrics["server"][5]["accuracy"]
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel

from orchestrator.core.status import Role
from workers.local_context import LocalContext
from workers.local_results import (
    CheckpointRecord,
    LocalJobResult,
    OutcomeState,
    ParticipantOutcome,
)
from workers.registry import WorkloadFn, get_workload, validate_config
from workers.sdk import SERVER_ID, PeerMessage, WorkloadCancelled

__all__ = [
    "CheckpointRecord",
    "LocalClient",
    "LocalContext",
    "LocalHub",
    "LocalJobResult",
    "OutcomeState",
    "ParticipantOutcome",
    "run_local_job",
]


@dataclass(frozen=True, slots=True)
class LocalClient:
    """One client of a local job: its config and, optionally, its local data file."""

    config: Mapping[str, Any] = field(default_factory=dict)
    data_path: str | None = None



class LocalHub:
    """Runs one job's participants in memory. Use :func:`run_local_job` unless you need faults
    injected at times of your choosing (``kill``/``request_stop`` from another task)."""

    def __init__(
        self,
        workload: str | WorkloadFn,
        *,
        server_config: Mapping[str, Any] | None = None,
        server_data_path: str | None = None,
        clients: int | Sequence[Mapping[str, Any] | str | LocalClient | None] = 2,
        rounds: int = 1,
        min_clients: int | None = None,
        model: str | None = None,
        store: MutableMapping[str, bytes] | None = None,
        job_id: str | None = None,
        kill_at_round: Mapping[str, int] | None = None,
    ) -> None:
        clients = _as_clients(clients)
        if rounds < 1:
            msg = f"rounds must be >= 1, not {rounds}"
            raise ValueError(msg)
        if min_clients is not None and not 0 <= min_clients <= len(clients):
            msg = f"min_clients={min_clients} must be between 0 and {len(clients)} clients"
            raise ValueError(msg)
        self.workload: WorkloadFn = (
            get_workload(workload) if isinstance(workload, str) else workload
        )
        self.job_id = job_id or f"local-{uuid.uuid4().hex[:12]}"
        self.rounds = rounds
        self.min_clients = len(clients) if min_clients is None else min_clients
        self.model = model
        self.store: MutableMapping[str, bytes] = {} if store is None else store
        self.participants = [SERVER_ID, *(f"client-{i}" for i in range(len(clients)))]
        unknown = set(kill_at_round or {}) - set(self.participants)
        if unknown:
            msg = f"kill_at_round names unknown participants {sorted(unknown)}"
            raise ValueError(msg)
        self._kill_at_round = dict(kill_at_round or {})
        self.metrics: dict[str, dict[int, dict[str, float]]] = {}
        self.rounds_started: list[int] = []
        self.checkpoint_records: list[CheckpointRecord] = []
        self.outcomes: dict[str, ParticipantOutcome] = {}
        def checked(config: Mapping[str, Any], role: Role) -> Mapping[str, Any]:
            """As a worker does: a named workload's config against its model (ConfigError)."""
            return validate_config(workload, role, config) if isinstance(workload, str) else config

        self._contexts = {
            SERVER_ID: LocalContext(self, participant=SERVER_ID,
                                    config=checked(server_config or {}, Role.SERVER),
                                    data_path=server_data_path)
        }
        for index, client in enumerate(clients):
            participant = f"client-{index}"
            self._contexts[participant] = LocalContext(
                self, participant=participant, config=checked(client.config, Role.CLIENT),
                data_path=client.data_path)

    def __enter__(self) -> LocalHub:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every inbox. ``run`` does it; call it (or use ``with``) for a hub never run."""
        for context in self._contexts.values():
            context._close()

    def context(self, participant: str) -> LocalContext:
        return self._contexts[participant]

    def kill(self, participant: str) -> None:
        """Cancel ``participant`` at once; it sends nothing more and its inbox is dropped."""
        scope = self._contexts[participant]._scope
        if scope is not None:
            scope.cancel()

    def request_stop(self, participant: str) -> None:
        """Ask ``participant`` to stop: its next ``checkpoint_cancel`` or ``receive`` raises
        :class:`~workers.sdk.WorkloadCancelled`."""
        self._contexts[participant]._request_stop()

    def deliver(self, to: str, message: PeerMessage) -> None:
        """Queue ``message`` for ``to``; dropped if ``to`` already ended (as a dead worker's
        command stream would be read by nobody)."""
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._contexts[to]._inbox_in.send_nowait(message)

    async def maybe_kill(self, context: LocalContext, round_: int) -> None:
        kill_at = self._kill_at_round.get(context.participant)
        if kill_at is not None and round_ >= kill_at:
            context.log.info("killing participant (fault injection)", round=round_)
            self.kill(context.participant)
            await anyio.lowlevel.checkpoint()  # the cancellation lands here

    async def run(self, *, timeout_s: float | None = None) -> LocalJobResult:
        """Run every participant to its end (or ``TimeoutError`` after ``timeout_s``)."""
        try:
            with anyio.fail_after(timeout_s):
                async with anyio.create_task_group() as tg:
                    for participant in self.participants:
                        tg.start_soon(self._run_participant, participant, name=participant)
        finally:
            self.close()
        return LocalJobResult(
            job_id=self.job_id,
            outcomes={p: self.outcomes[p] for p in self.participants},
            metrics=self.metrics,
            rounds_started=self.rounds_started,
            checkpoint_records=self.checkpoint_records,
            store=self.store,
        )

    async def _run_participant(self, participant: str) -> None:
        context = self._contexts[participant]
        outcome: ParticipantOutcome | None = None
        with anyio.CancelScope() as scope:
            context._scope = scope
            try:
                result = await self.workload(context)
            except WorkloadCancelled as exc:
                outcome = ParticipantOutcome(participant, "stopped", error=exc)
            except Exception as exc:
                context.log.info("participant failed", error=repr(exc))
                outcome = ParticipantOutcome(participant, "failed", error=exc)
            else:
                outcome = ParticipantOutcome(participant, "finished", result=result)
        if scope.cancelled_caught or outcome is None:
            outcome = ParticipantOutcome(participant, "killed")
        self.outcomes[participant] = outcome
        context._close()
        if participant == SERVER_ID and outcome.state != "finished":
            for other in self.participants[1:]:
                self.request_stop(other)


async def run_local_job(
    workload: str | WorkloadFn,
    *,
    server_config: Mapping[str, Any] | None = None,
    server_data_path: str | None = None,
    clients: int | Sequence[Mapping[str, Any] | str | LocalClient | None] = 2,
    rounds: int = 1,
    min_clients: int | None = None,
    model: str | None = None,
    store: MutableMapping[str, bytes] | None = None,
    job_id: str | None = None,
    kill_at_round: Mapping[str, int] | None = None,
    timeout_s: float | None = 600.0,
    raise_on_error: bool = True,
) -> LocalJobResult:
    """Run ``workload`` with one server and the given clients, all in this process.

    ``clients`` is a count, or one entry per client: a config dict, a data path, a
    :class:`LocalClient`, or ``None``. ``kill_at_round={"client-1": 2}`` kills that participant
    when it reaches round 2 (the server in ``round_started``, any participant when it receives
    a message whose ``round`` is >= 2 or reports metrics for such a round). With
    ``raise_on_error`` (the default), the server's error is re-raised if the server failed.
    """
    hub = LocalHub(
        workload,
        server_config=server_config,
        server_data_path=server_data_path,
        clients=clients,
        rounds=rounds,
        min_clients=min_clients,
        model=model,
        store=store,
        job_id=job_id,
        kill_at_round=kill_at_round,
    )
    result = await hub.run(timeout_s=timeout_s)
    if raise_on_error and result.server.state == "failed" and result.server.error is not None:
        raise result.server.error
    return result


def _as_clients(
    clients: int | Sequence[Mapping[str, Any] | str | LocalClient | None],
) -> list[LocalClient]:
    if isinstance(clients, int):
        return [LocalClient() for _ in range(clients)]
    converted: list[LocalClient] = []
    for client in clients:
        if client is None:
            converted.append(LocalClient())
        elif isinstance(client, LocalClient):
            converted.append(client)
        elif isinstance(client, str):
            converted.append(LocalClient(data_path=client))
        else:
            converted.append(LocalClient(config=dict(client)))
    return converted
