"""Who may speak for a participant: run secrets, event MACs and mailbox MACs (pure, stdlib).

Theory of operation
-------------------
Every daemon replica holds the same *daemon key*. At dispatch each participant run gets a
*run secret*, ``HMAC-SHA256(daemon key, "run|<job>|<participant>|<run id>")``, and every
participant of a job the job's *mailbox key*, ``HMAC-SHA256(daemon key, "mailbox|<job>")``.
Both are functions of the key and of what the job document already holds (the run id is
``participants.<pid>.run_id``), so nothing secret is stored anywhere: any replica, and a
reconciling one after a restart, derives the same values. They travel only in the start (and
stop) command on the worker's own command stream (``RunAuth.seal``), never in the store or a
log line. Names cannot hold ``|``, so the derivation input is unambiguous.

A participant event carries ``mac = HMAC-SHA256(run secret, canonical bytes)`` where the
canonical bytes are the event's type, ``|``, and its JSON as the event model writes it
(``model_dump_json``: fields in the model's order, compact, UTF-8) without ``mac`` and without
fields equal to their defaults (so a field added later with a default does not change the
bytes of older producers). The daemon re-derives them from the event it parsed, so they do
not depend on the order of the producer's fields or its spaces (the order of the keys inside
a mapping such as ``metrics`` is the producer's and is covered); the type prefix keeps the
MAC of one kind of event from fitting another kind with the same fields. The daemon checks it
against the secret of the participant *as stored in the job* (``RunAuth.check``) before
``decide`` sees the event. A mailbox message carries
``HMAC-SHA256(mailbox key, JSON [job, to, sender, id, body])`` over the body exactly as sent.

All comparisons use ``hmac.compare_digest``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
from typing import TYPE_CHECKING, TypeVar

from orchestrator.core.commands import Command, StartParticipant, StopParticipant
from orchestrator.core.events import PARTICIPANT_EVENT_TYPES, ParticipantEventBase

if TYPE_CHECKING:
    from orchestrator.core.events import Event
    from orchestrator.core.job import Job

#: Shortest daemon key accepted (bytes).
MIN_KEY_BYTES = 16
#: Run secrets the daemon remembers between a start command and the run's events.
SECRETS_CACHED = 16_384

NO_MAC = "refused: no MAC"
BAD_MAC = "refused: bad MAC"
NO_RUN = "refused: no run"  # the participant is unknown or was never dispatched: no secret


_UNSIGNED = {"mac"}


def _hmac(key: bytes, data: bytes) -> str:
    return hmac.digest(key, data, "sha256").hex()


def run_secret(key: bytes, job_id: str, participant: str, run_id: str) -> str:
    """The secret of one participant run (hex): only its worker receives it."""
    return _hmac(key, f"run|{job_id}|{participant}|{run_id}".encode())


def mailbox_key(key: bytes, job_id: str) -> str:
    """The key every participant of ``job_id`` signs and checks mailbox messages with (hex)."""
    return _hmac(key, f"mailbox|{job_id}".encode())


def canonical_event(event: ParticipantEventBase) -> bytes:
    """The bytes an event's MAC covers (see the module docstring)."""
    kind: str = type(event).model_fields["type"].default  # the discriminator, always
    body = event.model_dump_json(exclude=_UNSIGNED, exclude_defaults=True)
    return f"{kind}|{body}".encode()


def event_mac(secret: str, event: ParticipantEventBase) -> str:
    """The MAC of ``event`` made with a run secret."""
    return _hmac(secret.encode(), canonical_event(event))


E = TypeVar("E", bound=ParticipantEventBase)


def sign_event(secret: str, event: E) -> E:
    """``event`` with its ``mac`` set."""
    return event.model_copy(update={"mac": event_mac(secret, event)})


def verify(secret: str, event: ParticipantEventBase) -> str | None:
    """None when ``event`` carries a valid MAC for ``secret``; else the refusal reason."""
    if event.mac is None:
        return NO_MAC
    if not hmac.compare_digest(event.mac, event_mac(secret, event)):
        return BAD_MAC
    return None


def message_mac(key: str, *, job_id: str, to: str, sender: str, message_id: str,
                body: str) -> str:
    """The MAC of one mailbox message; ``body`` is its JSON exactly as sent."""
    data = json.dumps([job_id, to, sender, message_id, body], separators=(",", ":"),
                      ensure_ascii=False)
    return _hmac(key.encode(), data.encode())


def verify_message(key: str, mac: str | None, *, job_id: str, to: str, sender: str,
                   message_id: str, body: str) -> bool:
    """Whether a mailbox message's ``mac`` is right."""
    if not mac:
        return False
    expected = message_mac(key, job_id=job_id, to=to, sender=sender, message_id=message_id,
                           body=body)
    return hmac.compare_digest(mac, expected)


class RunAuth:
    """The daemon's side: derives secrets from the daemon key, seals commands, checks events.

    The key never leaves this object (its ``repr`` does not show it).
    """

    __slots__ = ("_keyed", "_secrets")

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"the daemon key must be at least {MIN_KEY_BYTES} bytes")
        # Keyed once; each derivation copies it (half the cost of keying anew).
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)
        # The secret sealed into a start command is asked for again by the run's events.
        self._secrets = functools.lru_cache(maxsize=SECRETS_CACHED)(self._derive)

    def __repr__(self) -> str:
        return "RunAuth(key=<hidden>)"

    def _derive(self, message: str) -> str:
        mac = self._keyed.copy()
        mac.update(message.encode())
        return mac.hexdigest()

    def secret(self, job_id: str, participant: str, run_id: str) -> str:
        """``run_secret`` of the daemon key (recently derived ones are remembered)."""
        return self._secrets(f"run|{job_id}|{participant}|{run_id}")

    def seal(self, command: Command) -> Command:
        """``command`` with the secrets its worker needs (called as the command is sent)."""
        if isinstance(command, StartParticipant):
            return command.model_copy(update={
                "run_secret": self.secret(command.job_id, command.participant, command.run_id),
                "mailbox_key": self._derive(f"mailbox|{command.job_id}")})
        if isinstance(command, StopParticipant) and command.run_id is not None:
            return command.model_copy(update={
                "run_secret": self.secret(command.job_id, command.participant, command.run_id)})
        return command

    def check(self, job: Job, event: Event) -> str | None:
        """None when ``event`` may reach ``decide`` for ``job``; else the refusal reason.

        Only participant events are checked (the daemon's own events never come from the bus:
        ``orchestrator.daemon.events`` refuses them there).
        """
        if not isinstance(event, PARTICIPANT_EVENT_TYPES):
            return None
        p = job.participants.get(event.participant)
        if p is None or p.run_id is None:
            return NO_RUN
        return verify(self.secret(job.id, p.id, p.run_id), event)
