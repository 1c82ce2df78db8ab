"""The job store: MongoDB (source of truth) and an in-memory twin with the same contract."""

from orchestrator.store.memory import MemoryJobStore
from orchestrator.store.mongo import MongoJobStore, connect_mongo
from orchestrator.store.port import (
    REFUSED_EVENTS_CAP,
    JobQuery,
    JobStore,
    JobWrite,
    RefusedEvent,
    Rejection,
)

__all__ = [
    "REFUSED_EVENTS_CAP",
    "JobQuery",
    "JobStore",
    "JobWrite",
    "MemoryJobStore",
    "MongoJobStore",
    "RefusedEvent",
    "Rejection",
    "connect_mongo",
]
