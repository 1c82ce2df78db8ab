"""The job store: MongoDB (source of truth) and an in-memory twin with the same contract."""

from orchestrator.store.memory import MemoryJobStore
from orchestrator.store.mongo import MongoJobStore, connect_mongo
from orchestrator.store.port import JobStore, JobWrite, Rejection

__all__ = [
    "JobStore",
    "JobWrite",
    "MemoryJobStore",
    "MongoJobStore",
    "Rejection",
    "connect_mongo",
]
