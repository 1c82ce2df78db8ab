"""Flower records as the orchestrator keeps them: ``MetricRecord`` scalars as round metrics,
the ``ArrayRecord`` arrays of the global model as ``.npz`` (``allow_pickle=False``)."""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping

import numpy as np
from flwr.app import ArrayRecord, Message

from workers.sdk import MAX_METRICS


def scalar_metrics(record: Mapping[str, object], prefix: str) -> dict[str, float]:
    """The finite scalars of a ``MetricRecord`` as ``<prefix>_<name>`` (``<name>`` without a
    prefix; lists are skipped)."""
    out: dict[str, float] = {}
    for name, value in record.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(value):
            out[(f"{prefix}_{name}" if prefix else name)[:128]] = float(value)
    return out


def reply_metrics(message: Message, prefix: str) -> dict[str, float]:
    """Every metric of a reply's ``MetricRecord``s, and of the ``ConfigRecord``s in which
    Flower's legacy API carries a client's metrics (``fitres.metrics``,
    ``evaluateres.metrics``); none for an error reply."""
    if not message.has_content():
        return {}
    out: dict[str, float] = {}
    for record in message.content.metric_records.values():
        out.update(scalar_metrics(record, prefix))
    for name, config in message.content.config_records.items():
        if name.endswith(".metrics"):
            out.update(scalar_metrics(config, prefix))
    return out


def first_arrays(messages: Iterable[Message]) -> ArrayRecord | None:
    """The arrays the first message with any carries (a strategy sends every node the same
    global model), merged over its ``ArrayRecord``s."""
    for message in messages:
        if not message.has_content():
            continue
        records = dict(message.content.array_records)
        if len(records) == 1:
            return next(iter(records.values()))
        if records:
            merged = ArrayRecord()
            for record_name, record in records.items():
                for name, array in record.items():
                    merged[f"{record_name}.{name}"] = array
            return merged
    return None


def arrays_to_npz(arrays: ArrayRecord) -> bytes:
    """The arrays as ``.npz`` bytes, under their ``ArrayRecord`` names."""
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **{name: array.numpy() for name, array in arrays.items()})
    return buffer.getvalue()


def merge_round(rows: dict[int, dict[str, float]], round_: int,
                metrics: Mapping[str, float]) -> dict[str, float] | None:
    """Add ``metrics`` to round ``round_``'s row; the whole row when it changed (a metrics
    row is replaced on each report, so every report carries the round's metrics so far)."""
    row = rows.setdefault(round_, {})
    before = dict(row)
    for name, value in metrics.items():
        if name in row or len(row) < MAX_METRICS:
            row[name] = value
    return dict(row) if row != before else None
