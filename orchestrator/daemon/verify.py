"""Verified checkpoints: a ``checkpoint.saved`` reaches ``decide`` only once its object is seen.

Theory of operation
-------------------
A worker announces a checkpoint (``checkpoint.saved``: key, size, sha256) only after its
upload succeeded, but the announcement is a claim. Before the events of a batch reach
``decide`` the events handler hands them to a :class:`CheckpointVerifier`, which looks at the
object of every ``checkpoint.saved`` in the daemon's own view of the object store (opened from
the same settings as the workers': ``ORCHESTRATOR_S3_URL`` and friends):

* the object must exist and have the announced size (one HEAD);
* its sha256 must be the announced one: the digest the store recorded at upload (the
  ``x-amz-meta-sha256`` metadata on S3, the sidecar of ``file://``) when it still has it; when
  the store lost it (rclone forgets metadata across restarts) the daemon stream-hashes the
  object itself, if it is at most ``hash_max_bytes`` (64 MiB) — a larger one is accepted on
  existence and size alone, with a warning;
* otherwise the event is *refused* (``refused: checkpoint …`` with what differed): it is
  recorded like any other refused event and never reaches ``decide``, so no manifest row is
  written and a ``participant.finished`` naming it as final cannot make the job succeed (the
  job waits in ``finalizing`` until its finalize deadline).

When the store cannot answer now (unreachable, too slow, a permanent error such as refused
credentials) the event is *deferred*: its entry is left unacknowledged and parked
(:mod:`orchestrator.daemon.parking`), which hands it back to the events handler soon, then
less and less often, until it verifies — so a checkpoint announced during an S3 outage enters
the manifest as soon as S3 is back. The rest of the batch goes on. After a deferral the
verifier pauses (``pause_s``): checks in that window are deferred at once, without I/O, so an
outage costs one probe per hand-back, not one timeout per event.

The checks run concurrently, at most ``concurrency`` at a time, each HEAD within
``timeout_s`` and each hashing within ``hash_timeout_s`` (a timeout defers the event). A
batch without ``checkpoint.saved`` (the noop path, heartbeats, metrics) costs one type test
per event. Events are screened by MAC first (``check``, in ``apply_events``): a verdict only
matters for an authentic event, so a forged one is refused as forged.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import anyio

from orchestrator.core import CheckpointSaved, Event, Job
from orchestrator.daemon.apply import Check
from orchestrator.errors import (
    IntegrityError,
    ObjectNotFoundError,
    StorageError,
)
from orchestrator.logs import get_logger
from orchestrator.storage import ObjectStore
from orchestrator.storage.hashing import sha256_update
from orchestrator.storage.validation import validate_key

log = get_logger("orchestrator.daemon.verify")

MISSING = "refused: checkpoint missing"
WRONG_SIZE = "refused: checkpoint size mismatch"
WRONG_SHA256 = "refused: checkpoint sha256 mismatch"
BAD_KEY = "refused: checkpoint key invalid"
UNREADABLE = "refused: checkpoint unreadable"

#: Hash an object whose sha256 the store lost only up to this size (bytes): the batch waits
#: for the hashing (rare: only stores that lose metadata, such as rclone after a restart).
HASH_MAX_BYTES = 64 * 1024 * 1024


class Deferred(Exception):
    """The store could not answer now: try the event again later."""


@dataclass(slots=True)
class Verdicts:
    """What the verifier found for a batch: refused events (by identity) with the reason,
    and deferred ones (by identity)."""

    refused: dict[int, str] = field(default_factory=dict)
    deferred: set[int] = field(default_factory=set)

    def check(self, base: Check | None) -> Check | None:
        """``base`` (the MAC check) followed by this batch's checkpoint verdicts."""
        if not self.refused:
            return base
        refused = self.refused

        def checked(job: Job, event: Event) -> str | None:
            reason = base(job, event) if base is not None else None
            return reason if reason is not None else refused.get(id(event))

        return checked


Verify = Callable[[Sequence[Event]], Awaitable[Verdicts]]
"""What the events handler calls (a ``CheckpointVerifier``)."""


class CheckpointVerifier:
    """Checks the objects ``checkpoint.saved`` events announce (see the module docstring)."""

    def __init__(self, objects: ObjectStore, *, concurrency: int = 16, timeout_s: float = 10.0,
                 hash_max_bytes: int = HASH_MAX_BYTES, hash_timeout_s: float = 120.0,
                 pause_s: float = 1.0) -> None:
        if (concurrency < 1 or timeout_s <= 0 or hash_timeout_s <= 0 or hash_max_bytes < 0
                or pause_s < 0):
            raise ValueError("concurrency ≥ 1, timeouts > 0, hash_max_bytes ≥ 0, pause_s ≥ 0")
        self.objects = objects
        self.timeout_s = timeout_s
        self.hash_timeout_s = hash_timeout_s
        self.hash_max_bytes = hash_max_bytes
        self.pause_s = pause_s
        self._paused_until = 0.0
        self._limiter = anyio.CapacityLimiter(concurrency)
        #: Counters, for logs and tests.
        self.checked = 0
        self.hashed = 0
        self.unhashed = 0
        self.deferred = 0

    async def __call__(self, events: Sequence[Event]) -> Verdicts:
        verdicts = Verdicts()
        saved = [e for e in events if isinstance(e, CheckpointSaved)]
        if not saved:
            return verdicts

        async def one(event: CheckpointSaved) -> None:
            async with self._limiter:
                if anyio.current_time() < self._paused_until:
                    verdicts.deferred.add(id(event))  # the store just failed: no new probe
                    return
                try:
                    reason = await self.verify(event)
                except Deferred as exc:
                    log.warning("checkpoint not verifiable now: its event is left for later",
                                job_id=event.job_id, key=event.key, error=str(exc))
                    self._pause()
                    verdicts.deferred.add(id(event))
                    return
                except TimeoutError:
                    log.warning("checkpoint verification timed out: its event is left for "
                                "later", job_id=event.job_id, key=event.key)
                    self._pause()
                    verdicts.deferred.add(id(event))
                    return
                except Exception:  # a bug: never let one check take the batch down
                    log.exception("checkpoint verification failed: its event is left for "
                                  "later", job_id=event.job_id, key=event.key)
                    self._pause()
                    verdicts.deferred.add(id(event))
                    return
            self.checked += 1
            if reason is not None:
                verdicts.refused[id(event)] = reason

        async with anyio.create_task_group() as tg:
            for event in saved:
                tg.start_soon(one, event)
        return verdicts

    def _pause(self) -> None:
        self._paused_until = anyio.current_time() + self.pause_s
        self.deferred += 1

    async def verify(self, event: CheckpointSaved) -> str | None:
        """None when the object is there with the announced size and sha256; else why not.
        Raises ``Deferred`` when the store cannot tell now."""
        try:
            key = validate_key(event.key)
        except StorageError as exc:
            return f"{BAD_KEY}: {exc}"
        try:
            with anyio.fail_after(self.timeout_s):
                info = await self.objects.stat(key)
        except ObjectNotFoundError:
            return f"{MISSING}: no object {key} in {self.objects.url}"
        except IntegrityError as exc:
            return f"{UNREADABLE}: {exc}"
        except StorageError as exc:  # unreachable (StorageUnavailableError), denied, …
            raise Deferred(str(exc)) from exc
        if info.size != event.size:
            return (f"{WRONG_SIZE}: announced {event.size} bytes, the object {key} has "
                    f"{info.size}")
        actual = info.sha256
        if not actual:
            if info.size > self.hash_max_bytes:
                self.unhashed += 1
                log.warning("checkpoint sha256 not checked: the store lost it and the object "
                            "is larger than the hashing bound", job_id=event.job_id, key=key,
                            size=info.size, hash_max_bytes=self.hash_max_bytes)
                return None
            with anyio.fail_after(self.hash_timeout_s):
                actual = await self._hash(key, event.sha256)
        if actual != event.sha256:
            return f"{WRONG_SHA256}: announced {event.sha256}, the object {key} has {actual}"
        return None

    async def _hash(self, key: str, announced: str) -> str:
        """The sha256 of the object's bytes, streamed (the store lost the recorded one)."""
        digest = hashlib.sha256()
        stream = self.objects.open_stream(key, sha256=announced)
        try:
            async for chunk in stream:
                await sha256_update(digest, chunk)
        except IntegrityError:
            pass  # the bytes differ from ``announced``: the digest computed here says how
        except ObjectNotFoundError:
            raise Deferred(f"object {key} vanished while being hashed") from None
        except StorageError as exc:
            raise Deferred(str(exc)) from exc
        finally:
            if isinstance(stream, AsyncGenerator):
                with anyio.CancelScope(shield=True):
                    await stream.aclose()  # release the connection, also when cancelled
        self.hashed += 1
        return digest.hexdigest()
