"""The job store: MongoDB (source of truth) and an in-memory twin with the same contract."""

from orchestrator.store.base import BatchResult, Change, EventOutcome, JobStore, Rejection
from orchestrator.store.memory import MemoryJobStore
from orchestrator.store.mongo import MongoJobStore, connect_mongo

__all__ = [
    "BatchResult",
    "Change",
    "EventOutcome",
    "JobStore",
    "MemoryJobStore",
    "MongoJobStore",
    "Rejection",
    "connect_mongo",
]
