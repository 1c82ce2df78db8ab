"""The job specification: validated data describing a job (never code)."""

from __future__ import annotations

import json
import math
from collections import deque
from datetime import timedelta
from functools import cached_property
from typing import Annotated, Any, NamedTuple, Self

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from orchestrator.core._types import FROZEN, JsonObject, Name
from orchestrator.core.jsonshape import check_shape, load_object_pairs

MAX_SPEC_BYTES = 256 * 1024
#: Deepest nesting of objects and arrays in a submitted spec (or an event), checked before
#: the JSON is parsed.
MAX_JSON_DEPTH = 32
#: Most object keys plus array items in one submitted spec (or event), in all.
MAX_JSON_ITEMS = 10_000
MAX_CLIENTS = 1000
MAX_CONFIG_BYTES = 64 * 1024
NOT_FINITE = "not a finite number"


def _non_finite_at(value: Any) -> str | None:
    """The path of the first NaN or infinity inside ``value`` (``""`` for ``value`` itself)."""
    queue: deque[tuple[str, Any]] = deque([("", value)])
    while queue:
        path, node = queue.popleft()
        if isinstance(node, float) and not math.isfinite(node):
            return path
        if isinstance(node, dict):
            queue.extend((f"{path}.{k}" if path else str(k), v) for k, v in node.items())
        elif isinstance(node, list | tuple):
            queue.extend((f"{path}[{i}]", v) for i, v in enumerate(node))
    return None


def _bounded_json(value: JsonObject, *, what: str) -> JsonObject:
    try:
        size = len(json.dumps(value, separators=(",", ":"), default=str, allow_nan=False))
    except ValueError:  # NaN or an infinity somewhere inside
        path = _non_finite_at(value)
        raise PydanticCustomError("finite_number", NOT_FINITE + " at {path}",
                                  {"path": path}) from None
    if size > MAX_CONFIG_BYTES:
        msg = f"{what} is {size} bytes as JSON; the limit is {MAX_CONFIG_BYTES}"
        raise ValueError(msg)
    return value


def _finite(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """Say "not a finite number" for NaN and infinities (not a misleading bound)."""
    try:
        return handler(value)
    except ValidationError as exc:
        if any(err["type"] == "finite_number" for err in exc.errors()):
            raise PydanticCustomError("finite_number", NOT_FINITE) from None
        raise


_FINITE = WrapValidator(_finite)
StartSeconds = Annotated[float, Field(gt=0, le=86_400, allow_inf_nan=False), _FINITE]
HeartbeatSeconds = Annotated[float, Field(gt=0, le=3_600, allow_inf_nan=False), _FINITE]
RoundSeconds = Annotated[float, Field(gt=0, le=604_800, allow_inf_nan=False), _FINITE]
JobSeconds = Annotated[float, Field(gt=0, le=2_592_000, allow_inf_nan=False), _FINITE]
GraceSeconds = Annotated[float, Field(gt=0, le=3_600, allow_inf_nan=False), _FINITE]


def _safe_data_path(value: str | None) -> str | None:
    if value is None:
        return None
    if "\x00" in value:
        raise PydanticCustomError("data_path", "must not contain NUL bytes")
    if ".." in value.replace("\\", "/").split("/"):
        raise PydanticCustomError("data_path", "must not contain '..' components (got {path})",
                                  {"path": repr(value)})
    return value


def load_spec_json(raw: str, *, what: str = "spec") -> Any:
    """Parse a submitted spec's JSON: its nesting and key count checked before parsing,
    duplicate keys refused (``JsonShapeError``); invalid JSON raises ``ValueError``."""
    check_shape(raw, what=what, max_depth=MAX_JSON_DEPTH, max_items=MAX_JSON_ITEMS)
    return load_object_pairs(raw, what=what)


class ParticipantSpec(BaseModel):
    """One participant: which worker runs it, its local data and free-form config."""

    model_config = FROZEN

    worker: Name
    data_path: Annotated[str, Field(max_length=4096)] | None = None
    config: JsonObject = Field(default_factory=dict)

    @field_validator("data_path")
    @classmethod
    def _data_path(cls, value: str | None) -> str | None:
        return _safe_data_path(value)

    @field_validator("config")
    @classmethod
    def _config_size(cls, value: JsonObject) -> JsonObject:
        return _bounded_json(value, what="participant config")


class Deltas(NamedTuple):
    """``Timeouts`` as timedeltas (None where disabled)."""

    start: timedelta
    heartbeat: timedelta
    round: timedelta | None
    job: timedelta | None
    cancel_grace: timedelta


class Timeouts(BaseModel):
    """Deadlines, in seconds. ``round_s`` and ``job_s`` may be disabled with ``None``."""

    model_config = FROZEN

    start_s: StartSeconds = 60.0
    heartbeat_s: HeartbeatSeconds = 15.0
    round_s: RoundSeconds | None = 600.0
    job_s: JobSeconds | None = 86_400.0
    cancel_grace_s: GraceSeconds = 30.0

    @cached_property  # (read once per event on the daemon's hot path; the model is frozen)
    def deltas(self) -> Deltas:
        def delta(seconds: float | None) -> timedelta | None:
            return None if seconds is None else timedelta(seconds=seconds)

        return Deltas(timedelta(seconds=self.start_s), timedelta(seconds=self.heartbeat_s),
                      delta(self.round_s), delta(self.job_s),
                      timedelta(seconds=self.cancel_grace_s))


class JobSpec(BaseModel):
    """What a submitter sends. ``workload`` names a registered workload."""

    model_config = FROZEN

    job_id: Name | None = None
    workload: Name
    model: Annotated[str, Field(max_length=256)] | None = None
    #: Deprecated: the old name of ``server.config`` (moved there on validation).
    server_config: JsonObject = Field(default_factory=dict)
    server: ParticipantSpec
    clients: Annotated[list[ParticipantSpec], Field(max_length=MAX_CLIENTS)] = Field(
        default_factory=list
    )
    rounds: Annotated[int, Field(ge=1, le=100_000)] = 1
    min_clients: Annotated[int, Field(ge=0, le=MAX_CLIENTS)] | None = None
    timeouts: Timeouts = Field(default_factory=Timeouts)
    idempotency_key: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    labels: dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=256)]] = (
        Field(default_factory=dict, max_length=32)
    )

    @model_validator(mode="before")
    @classmethod
    def _one_server_config(cls, data: Any) -> Any:
        """``server_config`` is the deprecated old name of ``server.config``: moved there when
        ``server.config`` is empty, refused beside a non-empty one (never silently ignored)."""
        if not isinstance(data, dict) or not data.get("server_config"):
            return data
        server = data.get("server")
        if not isinstance(server, dict):
            return data
        if server.get("config"):
            msg = ("the server's configuration is given twice, in server.config and in "
                   "server_config (its deprecated old name): give it once, in server.config")
            raise ValueError(msg)
        return {**data, "server": {**server, "config": data["server_config"]}, "server_config": {}}

    @field_validator("server_config")
    @classmethod
    def _server_config_size(cls, value: JsonObject) -> JsonObject:
        return _bounded_json(value, what="server_config")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.min_clients is not None and self.min_clients > len(self.clients):
            msg = f"min_clients={self.min_clients} exceeds the {len(self.clients)} clients given"
            raise ValueError(msg)
        return self

    @cached_property  # (read once per event on the daemon's hot path; the spec is frozen)
    def required_clients(self) -> int:
        """How many clients must stay healthy (all of them unless ``min_clients`` says less)."""
        return len(self.clients) if self.min_clients is None else self.min_clients

    def participant_ids(self) -> list[str]:
        """Stable participant ids: ``server``, ``client-0`` … ``client-(N-1)``."""
        return ["server", *(client_id(i) for i in range(len(self.clients)))]

    def participant_spec(self, participant: str) -> ParticipantSpec:
        if participant == "server":
            return self.server
        return self.clients[client_index(participant)]

    @classmethod
    def from_json(cls, raw: str | bytes) -> JobSpec:
        """Parse and validate a spec, enforcing the size, depth and key limits before parsing
        (and refusing duplicate keys)."""
        if len(raw) > MAX_SPEC_BYTES:
            msg = f"spec is {len(raw)} bytes; the limit is {MAX_SPEC_BYTES}"
            raise ValueError(msg)
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        return cls.model_validate(load_spec_json(text))

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def client_id(index: int) -> str:
    return f"client-{index}"


def client_index(participant: str) -> int:
    prefix, _, number = participant.partition("-")
    if prefix != "client" or not number.isdigit():
        msg = f"not a client participant id: {participant!r}"
        raise ValueError(msg)
    return int(number)
