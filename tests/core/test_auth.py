"""Run secrets, event MACs and mailbox MACs (``orchestrator.core.auth``): pure functions."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from orchestrator.core import (
    EVENT_ADAPTER,
    CheckpointSaved,
    Heartbeat,
    JobDispatched,
    ParticipantStarted,
    RoundMetrics,
    StartParticipant,
    StopParticipant,
    decide,
)
from orchestrator.core.auth import (
    BAD_MAC,
    NO_MAC,
    NO_RUN,
    RunAuth,
    canonical_event,
    mailbox_key,
    message_mac,
    run_secret,
    sign_event,
    verify,
    verify_message,
)
from tests.core.scenarios import T0, new_job, spec

KEY = b"k" * 32


def metrics_event(**changes: object) -> RoundMetrics:
    fields: dict[str, object] = {
        "event_id": "e1", "job_id": "j", "participant": "client-0", "worker": "w", "seq": 7,
        "at": datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC), "round": 2,
        "metrics": {"loss": 0.1 + 0.2, "acc": 1e-300}}
    fields.update(changes)
    return RoundMetrics.model_validate(fields)


def test_secrets_are_functions_of_key_job_participant_and_run() -> None:
    base = run_secret(KEY, "j", "server", "r1")
    assert base == run_secret(KEY, "j", "server", "r1")
    others = {run_secret(b"x" * 32, "j", "server", "r1"), run_secret(KEY, "j2", "server", "r1"),
              run_secret(KEY, "j", "client-0", "r1"), run_secret(KEY, "j", "server", "r2")}
    assert base not in others and len(others) == 4
    assert mailbox_key(KEY, "j") not in {base, mailbox_key(KEY, "j2")}


def test_a_signed_event_verifies_after_a_trip_over_the_wire() -> None:
    secret = run_secret(KEY, "j", "client-0", "r1")
    event = sign_event(secret, metrics_event())
    again = EVENT_ADAPTER.validate_json(event.model_dump_json())
    assert isinstance(again, RoundMetrics)
    assert verify(secret, again) is None
    assert canonical_event(again) == canonical_event(metrics_event())
    assert b'"mac"' not in canonical_event(again)
    # The bytes are re-derived from the parsed event: another spelling of the same JSON
    # (the fields' order, spaces) verifies too. (The order of the keys inside a mapping such
    # as ``metrics`` is covered: it is the producer's.)
    fields = json.loads(event.model_dump_json())
    respelled = json.dumps(dict(reversed(fields.items())), indent=2)
    parsed = EVENT_ADAPTER.validate_json(respelled)
    assert isinstance(parsed, RoundMetrics)
    assert verify(secret, parsed) is None


def test_missing_wrong_and_tampered_macs_are_refused() -> None:
    secret = run_secret(KEY, "j", "client-0", "r1")
    event = sign_event(secret, metrics_event())
    assert verify(secret, metrics_event()) == NO_MAC
    assert verify(run_secret(KEY, "j", "client-0", "r2"), event) == BAD_MAC
    assert verify(secret, event.model_copy(update={"round": 3})) == BAD_MAC
    assert verify(secret, event.model_copy(update={"metrics": {"loss": 0.0}})) == BAD_MAC
    # The type is covered: the same fields under another type do not verify.
    started = sign_event(secret, ParticipantStarted(event_id="e", job_id="j",
                                                    participant="client-0", worker="w"))
    beat = Heartbeat(event_id="e", job_id="j", participant="client-0", worker="w",
                     mac=started.mac)
    assert verify(secret, beat) == BAD_MAC


def test_check_uses_the_run_id_stored_in_the_job_and_ignores_the_daemons_events() -> None:
    auth = RunAuth(KEY)
    job = new_job(spec(clients=1), "j")
    job = decide(job, [JobDispatched(event_id="d", job_id="j",
                                     assignments={"server": "rs", "client-0": "rc"})], T0).job
    good = sign_event(auth.secret("j", "server", "rs"),
                      ParticipantStarted(event_id="e", job_id="j", participant="server",
                                         worker=job.server.worker))
    assert auth.check(job, good) is None
    stale = sign_event(auth.secret("j", "server", "old-run"), good)
    assert auth.check(job, stale) == BAD_MAC
    stranger = sign_event(auth.secret("j", "client-9", "rs"),
                          good.model_copy(update={"participant": "client-9"}))
    assert auth.check(job, stranger) == NO_RUN
    assert auth.check(job, JobDispatched(event_id="d", job_id="j", assignments={})) is None


def test_mac_is_ignored_by_decide() -> None:
    job = new_job(spec(clients=1), "j")
    job = decide(job, [JobDispatched(event_id="d", job_id="j",
                                     assignments={"server": "rs", "client-0": "rc"})], T0).job
    plain = ParticipantStarted(event_id="e", job_id="j", participant="server",
                               worker=job.server.worker)
    signed = plain.model_copy(update={"mac": "0" * 64})
    assert decide(job, [plain], T0).job == decide(job, [signed], T0).job


def test_seal_adds_the_secrets_and_nothing_shows_them() -> None:
    auth = RunAuth(KEY)
    start = StartParticipant(command_id="c", job_id="j", participant="server", run_id="r1",
                             role="server", worker="w", workload="noop", rounds=1)
    sealed = auth.seal(start)
    assert isinstance(sealed, StartParticipant)
    assert sealed.run_secret == run_secret(KEY, "j", "server", "r1")
    assert sealed.mailbox_key == mailbox_key(KEY, "j")
    assert auth.seal(start) == sealed, "deterministic: a re-sent start carries the same secret"
    assert sealed.run_secret not in repr(sealed) and sealed.mailbox_key not in repr(sealed)
    assert KEY.decode() not in repr(auth)
    stop = StopParticipant(command_id="s", job_id="j", participant="server", worker="w",
                           run_id="r1")
    assert auth.seal(stop).run_secret == sealed.run_secret  # type: ignore[union-attr]
    unknown_run = stop.model_copy(update={"run_id": None})
    assert auth.seal(unknown_run) == unknown_run
    with pytest.raises(ValueError, match="at least 16 bytes"):
        RunAuth(b"short")


def test_mailbox_macs_cover_job_recipient_sender_id_and_body() -> None:
    key = mailbox_key(KEY, "j")
    fields = {"job_id": "j", "to": "server", "sender": "client-0", "message_id": "m1",
              "body": '{"n":1}'}
    mac = message_mac(key, **fields)
    assert verify_message(key, mac, **fields)
    assert not verify_message(key, None, **fields)
    assert not verify_message(mailbox_key(KEY, "j2"), mac, **fields)
    for name, value in (("to", "client-1"), ("sender", "client-1"), ("message_id", "m2"),
                        ("body", '{"n":2}'), ("job_id", "j2")):
        assert not verify_message(key, mac, **{**fields, name: value}), name


def test_checkpoint_events_sign_every_field() -> None:
    secret = run_secret(KEY, "j", "server", "r")
    event = sign_event(secret, CheckpointSaved(event_id="c", job_id="j", participant="server",
                                               worker="w", round=1, key="k", size=3,
                                               sha256="a" * 64, final=True))
    assert verify(secret, event) is None
    assert verify(secret, event.model_copy(update={"final": False})) == BAD_MAC
