"""Every Redis key name, in one place, under a configurable namespace.

Keys of one job share a ``{hash tag}`` so they land in one Redis Cluster slot; shard streams
carry their shard number in the tag so shards spread across the cluster.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    namespace: str = "orchestrator"
    event_shards: int = 4

    # --- streams the daemon consumes -------------------------------------------------
    @property
    def submissions(self) -> str:
        return f"{self.namespace}:submissions"

    @property
    def control(self) -> str:
        """Cancel requests and other operator commands for the daemon."""
        return f"{self.namespace}:control"

    def shard_of(self, job_id: str) -> int:
        return zlib.crc32(job_id.encode()) % self.event_shards

    def events(self, shard: int) -> str:
        return f"{self.namespace}:events:{{{shard}}}"

    def events_for(self, job_id: str) -> str:
        return self.events(self.shard_of(job_id))

    def all_event_streams(self) -> list[str]:
        return [self.events(i) for i in range(self.event_shards)]

    @property
    def dead_letter(self) -> str:
        return f"{self.namespace}:dead-letter"

    # --- workers -----------------------------------------------------------------------
    def commands(self, worker: str) -> str:
        return f"{self.namespace}:commands:{{{worker}}}"

    def worker_alive(self, worker: str) -> str:
        """TTL key a worker refreshes while alive; value is its registration JSON."""
        return f"{self.namespace}:worker:{worker}"

    @property
    def worker_pattern(self) -> str:
        return f"{self.namespace}:worker:*"

    @property
    def workers(self) -> str:
        """Sorted set of worker names scored by their registration's expiry (ms), on Redis
        Cluster only: there the alive keys are listed from it rather than by SCAN."""
        return f"{self.namespace}:workers"

    # --- per job -------------------------------------------------------------------------
    def mailbox(self, job_id: str, participant: str) -> str:
        """Messages between participants of one job (references only, never model bytes)."""
        return f"{self.namespace}:job:{{{job_id}}}:mailbox:{participant}"

    def logs(self, job_id: str) -> str:
        """Capped stream of the job's participants' log lines (workers write, CLI reads)."""
        return f"{self.namespace}:job:{{{job_id}}}:logs"

    @property
    def updates(self) -> str:
        """Capped stream of every job change (for the watcher's job table)."""
        return f"{self.namespace}:updates"

    # --- consumer groups ---------------------------------------------------------------
    daemon_group: str = "daemon"
    worker_group: str = "worker"
