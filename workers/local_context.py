"""The in-memory ``WorkloadContext`` of one participant of a local run (see
:mod:`workers.local`)."""

from __future__ import annotations

import contextlib
import math
import uuid
from collections.abc import Mapping, MutableMapping
from types import MappingProxyType
from typing import Any, Protocol

import anyio
import anyio.lowlevel

from orchestrator.core.status import Role
from orchestrator.errors import IntegrityError, ObjectNotFoundError, WorkloadError
from orchestrator.logs import get_logger
from orchestrator.storage.port import sha256_hex
from workers.local_results import CheckpointRecord
from workers.sdk import (
    SERVER_ID,
    ContextBase,
    Identity,
    PeerMessage,
    check_recipient,
    check_round,
    encode_message_body,
    validate_metrics,
)


class LocalJobState(Protocol):
    """What a :class:`LocalContext` reads and records in its hub
    (:class:`~workers.local.LocalHub`)."""

    job_id: str
    model: str | None
    rounds: int
    min_clients: int
    participants: list[str]
    store: MutableMapping[str, bytes]
    metrics: dict[str, dict[int, dict[str, float]]]
    rounds_started: list[int]
    checkpoint_records: list[CheckpointRecord]

    def deliver(self, to: str, message: PeerMessage) -> None: ...
    async def maybe_kill(self, context: LocalContext, round_: int) -> None: ...


class LocalContext(ContextBase):
    """The in-memory :class:`~workers.sdk.WorkloadContext` of one participant."""

    def __init__(
        self,
        hub: LocalJobState,
        *,
        participant: str,
        config: Mapping[str, Any],
        data_path: str | None,
    ) -> None:
        is_server = participant == SERVER_ID
        super().__init__(
            Identity(
                job_id=hub.job_id,
                participant=participant,
                role=Role.SERVER if is_server else Role.CLIENT,
                run_id=uuid.uuid4().hex,
                config=MappingProxyType(dict(config)),
                data_path=data_path,
                model=hub.model,
                rounds=hub.rounds,
                peers=tuple(hub.participants),
                client_index=None if is_server else int(participant.removeprefix("client-")),
                client_count=len(hub.participants) - 1,
                min_clients=hub.min_clients,
            ),
            get_logger("workers.local", job_id=hub.job_id, participant=participant),
        )
        self._hub = hub
        self._inbox_in, self._inbox = anyio.create_memory_object_stream[PeerMessage](math.inf)
        self._scope: anyio.CancelScope | None = None

    # --- reporting --------------------------------------------------------------------------

    async def report_metrics(self, round: int, metrics: Mapping[str, float]) -> None:
        check_round(round, minimum=0)
        clean = validate_metrics(metrics)
        await anyio.lowlevel.checkpoint()
        self._hub.metrics.setdefault(self.participant, {}).setdefault(round, {}).update(clean)
        await self._hub.maybe_kill(self, round)

    async def round_started(self, round: int) -> None:
        check_round(round, minimum=1)
        if self.role is Role.SERVER:
            self._hub.rounds_started.append(round)
            await self._hub.maybe_kill(self, round)
        await anyio.lowlevel.checkpoint()

    # --- objects ----------------------------------------------------------------------------

    async def save_checkpoint(
        self, round: int, data: bytes, *, final: bool = False, ext: str = "npz"
    ) -> str:
        key = self._checkpoint_key(round, data, ext)
        if self._hub.store.get(key, data) != data:  # as on S3, where the upload would fail
            msg = f"checkpoint {key} already holds other bytes; checkpoints are never overwritten"
            raise WorkloadError(msg)
        self._hub.store[key] = bytes(data)
        self._hub.checkpoint_records.append(
            CheckpointRecord(
                key=key,
                participant=self.participant,
                round=round,
                final=final,
                size=len(data),
                sha256=sha256_hex(data),
            )
        )
        await anyio.lowlevel.checkpoint()
        return key

    async def load_checkpoint(self, key: str, *, sha256: str | None = None) -> bytes:
        data = await self._read(key, what="checkpoint")
        if sha256 is not None and sha256_hex(data) != sha256:
            raise IntegrityError(f"checkpoint {key!r} is corrupt: its bytes have sha256 "
                                 f"{sha256_hex(data)}, expected {sha256}")
        return data

    async def put_blob(self, name: str, data: bytes) -> str:
        key = self._blob_key(name, sha256_hex(bytes(data)))
        self._hub.store[key] = bytes(data)
        await anyio.lowlevel.checkpoint()
        return key

    async def get_blob(self, key: str) -> bytes:
        return await self._read(key, what="blob")

    async def _read(self, key: str, *, what: str) -> bytes:
        await anyio.lowlevel.checkpoint()
        try:
            return self._hub.store[key]
        except KeyError:
            msg = f"no {what} under key {key!r}"
            raise ObjectNotFoundError(msg) from None

    # --- messages ---------------------------------------------------------------------------

    async def send(self, to: str, body: Mapping[str, Any]) -> None:
        check_recipient(self.participant, to, self._hub.participants)
        message = PeerMessage(sender=self.participant, body=encode_message_body(body))
        self._hub.deliver(to, message)
        await anyio.lowlevel.checkpoint()

    def _deliver(self, message: PeerMessage) -> None:
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._inbox_in.send_nowait(message)

    async def receive(self, *, timeout_s: float | None = None) -> PeerMessage:
        try:
            with anyio.fail_after(timeout_s):
                message = await self._inbox.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            await self.checkpoint_cancel()
            raise
        round_ = message.body.get("round")
        if isinstance(round_, int):
            await self._hub.maybe_kill(self, round_)
        return message

    # --- cancellation -----------------------------------------------------------------------

    def _request_stop(self) -> None:
        self._stop_requested = True
        self._inbox_in.close()  # wakes a pending receive, which then raises WorkloadCancelled

    def _close(self) -> None:
        self._inbox_in.close()
        self._inbox.close()
