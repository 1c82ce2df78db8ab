"""The peer of ``bench_e2e.py``: taskiq with taskiq-redis's Redis Streams broker, one no-op task.

``taskiq worker e2e_taskiq_app:broker`` (with ``--app-dir bench``) runs it; the settings come
from ``BENCH_TASKIQ_*`` environment variables set by the bench. No result backend: the
no-op returns nothing and nobody waits for results, as with our ``noop`` jobs, whose
outcome is recorded by the daemon.
"""

from __future__ import annotations

import os

from taskiq_redis import RedisStreamBroker

STREAM = "e2e-taskiq"
GROUP = "e2e-taskiq"
TASK_NAME = "e2e_noop"

broker = RedisStreamBroker(
    os.environ.get("BENCH_TASKIQ_REDIS_URL", "redis://127.0.0.1:6379/0"),
    queue_name=STREAM,
    consumer_group_name=GROUP,
    consumer_id="0",  # the group reads what was queued before the worker started
    xread_count=int(os.environ.get("BENCH_TASKIQ_XREAD_COUNT", "100")),
    socket_timeout=None,
)


@broker.task(task_name=TASK_NAME)
async def noop() -> None:
    """Do nothing."""
