"""Validation shared by every context implementation: peer message bodies and recipients,
workload config values, rounds and metrics (re-exported by :mod:`workers.sdk`)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.errors import WorkloadError
from workers.workload_api import MAX_MESSAGE_BYTES, PeerMessageError

MAX_METRICS = 64
"""Most metrics one ``report_metrics`` call may carry."""


def encode_message_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """Check that ``body`` is a small JSON object and return a JSON round-tripped copy.

    The copy is what the receiver gets, whatever the transport: tuples become lists, and the
    sender cannot mutate a message after sending it.
    """
    if not isinstance(body, Mapping):
        msg = f"a peer message body must be a JSON object, not {type(body).__name__}"
        raise PeerMessageError(msg)
    try:
        raw = json.dumps(body, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        msg = f"a peer message body must be JSON-serialisable: {exc}"
        raise PeerMessageError(msg) from exc
    if len(raw.encode()) > MAX_MESSAGE_BYTES:
        msg = (
            f"a peer message body is {len(raw.encode())} bytes as JSON; the limit is "
            f"{MAX_MESSAGE_BYTES}: put large data with put_blob and send its key"
        )
        raise PeerMessageError(msg)
    decoded: dict[str, Any] = json.loads(raw)
    return decoded


def check_recipient(sender: str, to: str, peers: Sequence[str]) -> None:
    """Raise :class:`PeerMessageError` unless ``to`` is another participant of the job."""
    if to == sender:
        msg = f"{sender} tried to send a message to itself"
        raise PeerMessageError(msg)
    if to not in peers:
        msg = f"unknown peer {to!r}; the job's participants are {', '.join(peers)}"
        raise PeerMessageError(msg)


def config_float(
    config: Mapping[str, Any], name: str, default: float, *, minimum: float | None = None
) -> float:
    """A finite number from a workload config, with a clear error when it is not one."""
    value = config.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        msg = f"config {name!r} must be a finite number, not {value!r}"
        raise WorkloadError(msg)
    if minimum is not None and value < minimum:
        msg = f"config {name!r} must be >= {minimum}, not {value!r}"
        raise WorkloadError(msg)
    return float(value)


def config_int(
    config: Mapping[str, Any], name: str, default: int, *, minimum: int | None = None
) -> int:
    """An integer from a workload config, with a clear error when it is not one."""
    value = config.get(name, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        msg = f"config {name!r} must be an integer, not {value!r}"
        raise WorkloadError(msg)
    if minimum is not None and value < minimum:
        msg = f"config {name!r} must be >= {minimum}, not {value!r}"
        raise WorkloadError(msg)
    return value


def check_round(round: int, *, minimum: int) -> None:
    """Rounds are plain integers from ``minimum`` up (metrics may use round 0)."""
    if isinstance(round, bool) or not isinstance(round, int) or round < minimum:
        msg = f"round must be an integer >= {minimum}, not {round!r}"
        raise WorkloadError(msg)


def validate_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """Metrics as finite floats under names of 1 to 128 characters, at most MAX_METRICS."""
    if len(metrics) > MAX_METRICS:
        msg = f"at most {MAX_METRICS} metrics per round, got {len(metrics)}"
        raise WorkloadError(msg)
    clean: dict[str, float] = {}
    for name, value in metrics.items():
        if not isinstance(name, str) or not 0 < len(name) <= 128:
            msg = f"metric name {name!r} must be a string of 1 to 128 characters"
            raise WorkloadError(msg)
        if isinstance(value, bool) or not isinstance(value, int | float):
            msg = f"metric {name!r} must be a number, not {value!r}"
            raise WorkloadError(msg)
        if not math.isfinite(value):
            msg = f"metric {name!r} is {value}; metrics must be finite"
            raise WorkloadError(msg)
        clean[name] = float(value)
    return clean
