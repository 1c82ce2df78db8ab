"""The two tables of the state machine: the event table ``RULES`` is total and walked
exhaustively, FINISHED states have no exits, every status is reachable, every declared target
happens, and every rule of the joint-state table ``JOINT`` is used."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from orchestrator.core import (
    EVENT_TYPES,
    JOINT,
    RULES,
    TERMINAL,
    CancelRequested,
    DeadlineExpired,
    Event,
    Job,
    JobDispatched,
    JobStatus,
    JobUnschedulable,
    Phase,
    mermaid,
)
from orchestrator.core.diagram import edges
from orchestrator.core.events import DeadlineKind
from tests.core.scenarios import (
    T0,
    Emitter,
    decide_one,
    dispatched,
    joint_rules_hit,
    new_job,
    run,
    spec,
)

README = Path(__file__).resolve().parents[2] / "README.md"
LATER = T0.replace(year=2027)  # every deadline is due
KINDS: tuple[DeadlineKind, ...] = ("start", "heartbeat", "round", "job", "cancel_grace",
                                   "finalize")
FINAL_KEY = "jobs/job1/checkpoints/9/server.npz"


def job_in(status: JobStatus) -> Job:
    job = new_job()
    if status is JobStatus.NOT_STARTED:
        return job
    job = dispatched(job)
    if status is JobStatus.IN_PROGRESS:
        return job
    server = Emitter(job, "server")
    if status is JobStatus.FINISHED_SUCCESSFULLY:  # the server, then its clients, finish
        return run(job, [server.finished(), *(Emitter(job, p.id).finished()
                                              for p in job.clients)])[0]
    if status is JobStatus.FINISHED_WITH_ERROR:
        return run(job, [server.failed()])[0]
    return _cancelled(job)


def _cancelled(job: Job) -> Job:
    job = decide_one(job, CancelRequested(event_id="c", job_id=job.id), T0).job
    return run(job, [Emitter(job, p).stopped() for p in job.participants])[0]


def sample_event(job: Job, event_type: str, participant: str = "server") -> Event:
    if event_type == "job.dispatched":
        return JobDispatched(
            event_id="d2", job_id=job.id, assignments={p: "r" for p in job.participants}
        )
    if event_type == "cancel.requested":
        return CancelRequested(event_id="c2", job_id=job.id)
    if event_type == "deadline.expired":
        return DeadlineExpired(event_id="x", job_id=job.id, kind="start")
    if event_type == "job.unschedulable":
        return JobUnschedulable(event_id="u", job_id=job.id, participant="server",
                                worker=job.participants["server"].worker,
                                message="worker is registered as a client worker")
    e = Emitter(job, participant)
    e.seq = 100
    return {
        "participant.started": e.started,
        "participant.heartbeat": e.heartbeat,
        "round.started": lambda: e.round_started(1),
        "round.metrics": lambda: e.metrics(1),
        "checkpoint.saved": lambda: e.checkpoint(1),
        "participant.finished": e.finished,
        "participant.failed": e.failed,
        "participant.stopped": e.stopped,
    }[event_type]()


def test_table_is_total() -> None:
    assert set(RULES) == {(s, t) for s in JobStatus for t in EVENT_TYPES}


@pytest.mark.parametrize("status", list(JobStatus))
@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_pair_is_exercised(status: JobStatus, event_type: str) -> None:
    job = job_in(status)
    assert job.status is status
    event = sample_event(job, event_type)
    decision = decide_one(job, event, LATER)
    rule = RULES[(status, event_type)]
    (outcome,) = decision.outcomes
    assert outcome.event_id == event.event_id and outcome.job_id == job.id
    assert decision.job.status in rule.targets
    if status in TERMINAL:
        assert decision.job.status is status
        assert decision.job.history == job.history and not decision.history
    if rule.handler.__name__ in ("refuse", "ignore"):
        # Illegal is loud and harmless: the reason names the state (and the event).
        assert outcome.reason.startswith(("refused", "ignored")) and str(status) in outcome.reason
        if rule.handler.__name__ == "refuse":
            assert event_type in outcome.reason
        assert not outcome.applied and decision.reason == ""
        assert decision.job is job and not decision.changed and not decision.commands
        assert not decision.metrics and not decision.checkpoints


def test_terminal_states_have_no_exits() -> None:
    for src, _dst, _event in edges():
        assert src not in TERMINAL
    for (status, _event), rule in RULES.items():
        if status in TERMINAL:
            assert rule.targets == {status}


def test_every_state_is_reachable() -> None:
    reached, frontier = {JobStatus.NOT_STARTED}, [JobStatus.NOT_STARTED]
    while frontier:
        src = frontier.pop()
        for edge_src, dst, _event in edges():
            if edge_src is src and dst not in reached:
                reached.add(dst)
                frontier.append(dst)
    assert reached == set(JobStatus)


def situations() -> list[Job]:
    """Reachable jobs in every status and the IN_PROGRESS phases that matter."""
    jobs = [job_in(s) for s in JobStatus]
    base = dispatched()
    srv = Emitter(base, "server")
    cancelling = decide_one(base, CancelRequested(event_id="c", job_id=base.id), T0).job
    finalizing = run(base, [srv.finished(final_checkpoint=FINAL_KEY)])[0]
    last_one = run(cancelling, [Emitter(base, p).stopped() for p in base.participants
                                if p != "server"])[0]
    all_done = run(finalizing, [Emitter(base, p).finished() for p in base.participants
                                if p != "server"])[0]
    running = run(base, [srv.round_started(1)])[0]
    tight = dispatched(new_job(spec(2, min_clients=2)))
    # The server finished with nothing more to record; one client has still to end.
    one_client_left = run(base, [srv.finished(), Emitter(base, "client-0").finished()])[0]
    assert cancelling.phase is Phase.CANCELLING and finalizing.phase is Phase.FINALIZING
    assert last_one.status is all_done.status is JobStatus.IN_PROGRESS
    assert running.phase is Phase.RUNNING
    assert one_client_left.phase is Phase.FINALIZING
    return [*jobs, cancelling, finalizing, last_one, all_done, running, tight, one_client_left]


def variants(job: Job, event_type: str) -> list[Event]:
    """Every participant's version of an event type, and every deadline kind."""
    if event_type == "deadline.expired":
        return [DeadlineExpired(event_id="x", job_id=job.id, kind=kind,
                                participant=p if kind == "heartbeat" else None)
                for kind in KINDS for p in job.participants]
    if event_type in ("job.dispatched", "cancel.requested", "job.unschedulable"):
        return [sample_event(job, event_type)]
    out = [sample_event(job, event_type, p) for p in job.participants]
    if event_type == "checkpoint.saved":
        out.append(sample_event(job, event_type).model_copy(
            update={"key": FINAL_KEY, "final": True}))
    return out


def test_every_declared_target_is_reached() -> None:
    """Each (status, event) -> target the table declares happens for some concrete job, and
    no decision leads outside its rule's targets."""
    seen: set[tuple[JobStatus, str, JobStatus]] = set()
    for job in situations():
        for event_type in EVENT_TYPES:
            for event in variants(job, event_type):
                after = decide_one(job, event, LATER).job.status
                assert after in RULES[(job.status, event_type)].targets, (job.status, event)
                seen.add((job.status, event_type, after))
    refused = decide_one(job_in(JobStatus.NOT_STARTED),
                         JobDispatched(event_id="d", job_id="job1", assignments={}), LATER)
    seen.add((JobStatus.NOT_STARTED, "job.dispatched", refused.job.status))
    declared = {(s, t, target) for (s, t), rule in RULES.items() for target in rule.targets}
    assert declared <= seen, sorted(declared - seen)


# --- the joint-state table ------------------------------------------------------------------


def test_joint_table_shape() -> None:
    names = [rule.name for rule in JOINT]
    assert len(set(names)) == len(names)
    assert all(rule.ends is None or rule.ends in TERMINAL for rule in JOINT)
    assert all(rule.ends is None or rule.phase is None for rule in JOINT)
    assert {rule.phase for rule in JOINT} <= {None, Phase.STARTING, Phase.RUNNING,
                                              Phase.FINALIZING}
    assert JOINT[-1].when(None)  # type: ignore[arg-type]  # the last rule always holds
    # Each status JOINT can end a job in is a declared target of a participant event.
    participant_targets = {target for (status, t), rule in RULES.items()
                           if status is JobStatus.IN_PROGRESS and t.startswith(
                               ("participant.", "round.", "checkpoint."))
                           for target in rule.targets}
    assert {rule.ends for rule in JOINT if rule.ends is not None} <= participant_targets


def joint_lives() -> dict[str, tuple[Job, list[Event]]]:
    """One short life per ``JOINT`` rule: a dispatched job and the events that end on it."""
    base = dispatched()
    srv, c0 = Emitter(base, "server"), Emitter(base, "client-0")
    cancel = CancelRequested(event_id="c", job_id=base.id)
    tight = dispatched(new_job(spec(2, min_clients=2)))
    return {
        "starting": (base, [c0.started()]),
        "a round under way": (base, [srv.round_started(1)]),
        "cancelling: waiting for stops": (base, [cancel, Emitter(base, "server").stopped()]),
        "cancelled: nobody active": (base, [cancel, *(Emitter(base, p).stopped()
                                                      for p in base.participants)]),
        "server down": (base, [Emitter(base, "server").failed()]),
        "server finished, final checkpoint recorded, clients done": (base, [
            Emitter(base, "server").finished(), *(Emitter(base, p.id).finished()
                                                  for p in base.clients)]),
        "server finished, final checkpoint or clients pending": (base, [
            Emitter(base, "server").finished(final_checkpoint=FINAL_KEY)]),
        "too few healthy clients": (tight, [Emitter(tight, "client-1").failed()]),
    }


def test_every_joint_rule_is_hit() -> None:
    lives = joint_lives()
    assert set(lives) == {rule.name for rule in JOINT}
    for rule in JOINT:
        job, events = lives[rule.name]
        with joint_rules_hit() as names:
            after = run(job, events)[0]
        assert names and names[-1] == rule.name, (rule.name, names)
        assert after.status is (rule.ends or JobStatus.IN_PROGRESS), rule.name
        if rule.phase is not None:
            assert after.phase is rule.phase, rule.name


def test_cancel_grace_is_the_only_deadline_while_cancelling() -> None:
    job = dispatched()
    cancelling = decide_one(job, CancelRequested(event_id="c", job_id=job.id), T0).job
    for kind in KINDS:
        event = DeadlineExpired(event_id=f"x-{kind}", job_id=job.id, kind=kind,
                                participant="client-0" if kind == "heartbeat" else None)
        d = decide_one(cancelling, event, T0 + timedelta(days=1))
        expected = JobStatus.FINISHED_CANCELLED if kind == "cancel_grace" else \
            JobStatus.IN_PROGRESS
        assert d.job.status is expected, kind


def test_readme_diagram_is_generated_from_the_table() -> None:
    text = README.read_text()
    match = re.search(
        r"<!-- state-diagram:start -->\n```mermaid\n(.*?)\n```\n"
        r"<!-- state-diagram:end -->",
        text,
        re.S,
    )
    assert match, "README lacks the generated state diagram block"
    assert match.group(1) == mermaid(), "run: python -m orchestrator.core.diagram --write README.md"
