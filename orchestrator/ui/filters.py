"""The jobs list's query (``status``, ``workload``, ``label=k=v``…, ``cursor``, ``limit``),
parsed once for ``/jobs``, ``/api/jobs`` and ``/events?view=jobs`` so that the three agree on
what a bad value is (a 400 with the reason, never a 500) and on which jobs match."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import QueryParams

from orchestrator.client.records import decode_cursor, status_filter
from orchestrator.core import JobStatus
from orchestrator.errors import PermanentError

DEFAULT_LIMIT = 25
MAX_LIMIT = 200
MAX_TEXT = 256


class FilterError(PermanentError):
    """A filter value the dashboard cannot use; the message says which and why."""


@dataclass(frozen=True, slots=True)
class JobFilters:
    """The jobs list's filters and paging, validated."""

    status: JobStatus | None = None
    workload: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    cursor: str | None = None
    limit: int = DEFAULT_LIMIT

    def matches(self, summary: Mapping[str, Any], *, with_status: bool = True) -> bool:
        """Whether a job summary passes the filters (``with_status`` False: all but the
        status, which the page applies itself to live updates)."""
        if with_status and self.status is not None and summary.get("status") != self.status:
            return False
        if self.workload and summary.get("workload") != self.workload:
            return False
        labels = summary.get("labels") or {}
        return all(labels.get(k) == v for k, v in self.labels.items())

    def form(self) -> dict[str, str]:
        """The values the filter form shows."""
        label = next(iter(f"{k}={v}" for k, v in self.labels.items()), "")
        return {"status": self.status.value if self.status else "",
                "workload": self.workload or "", "label": label}

    def query(self, *, cursor: str | None = None) -> list[tuple[str, str]]:
        """The query string's items of these filters (with another ``cursor``)."""
        items: list[tuple[str, str]] = []
        if self.status is not None:
            items.append(("status", self.status.value))
        if self.workload:
            items.append(("workload", self.workload))
        items += [("label", f"{k}={v}") for k, v in self.labels.items()]
        if self.limit != DEFAULT_LIMIT:
            items.append(("limit", str(self.limit)))
        if cursor is not None:
            items.append(("cursor", cursor))
        return items


def _text(params: QueryParams, name: str) -> str | None:
    value = (params.get(name) or "").strip()
    if len(value) > MAX_TEXT:
        raise FilterError(f"{name}: longer than {MAX_TEXT} characters")
    return value or None


def parse_labels(values: list[str]) -> dict[str, str]:
    """``k=v`` items as a dict; empty items are ignored, malformed ones refused."""
    labels: dict[str, str] = {}
    for raw in values:
        item = raw.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or len(item) > MAX_TEXT:
            raise FilterError(f"label {item[:60]!r}: write it as key=value")
        if "." in key or key.startswith("$"):
            raise FilterError(f"label key {key[:60]!r}: no '.' and no leading '$'")
        labels[key] = value.strip()
    return labels


def parse_filters(params: QueryParams) -> JobFilters:
    """The filters of a request's query; ``FilterError`` naming the bad value."""
    status_text = _text(params, "status")
    try:
        status = status_filter(status_text)
    except PermanentError as exc:
        raise FilterError(str(exc)) from None
    cursor = _text(params, "cursor")
    if cursor is not None:
        try:
            decode_cursor(cursor)
        except PermanentError:
            raise FilterError("cursor: not a cursor of this list (follow the next-page "
                              "link)") from None
    limit_text = _text(params, "limit")
    limit = DEFAULT_LIMIT
    if limit_text is not None:
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_LIMIT:
            raise FilterError(f"limit: a whole number from 1 to {MAX_LIMIT}")
        limit = int(limit_text)
    return JobFilters(status=status, workload=_text(params, "workload"),
                      labels=parse_labels(params.getlist("label")), cursor=cursor, limit=limit)


__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "FilterError", "JobFilters", "parse_filters"]
