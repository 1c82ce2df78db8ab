"""The job store: MongoDB (source of truth) and an in-memory twin with the same contract."""

from orchestrator.store.base import BatchResult, EventOutcome, JobStore, Rejection
from orchestrator.store.memory import MemoryJobStore
from orchestrator.store.mongo import MongoJobStore, connect_mongo

__all__ = [
    "ApplyResult",
    "BatchResult",
    "EventOutcome",
    "JobStore",
    "MemoryJobStore",
    "MongoJobStore",
    "Rejection",
    "connect_mongo",
]
