"""The worker side of trust: events signed with the run secret, mailbox messages with the
job's mailbox key; forged mailbox messages are dropped."""

from __future__ import annotations

import json
import uuid

import anyio
import pytest

from orchestrator.bus import Redis
from orchestrator.bus.keys import Keys
from orchestrator.core.auth import RunAuth, mailbox_key, message_mac, verify
from orchestrator.core.commands import StopParticipant
from orchestrator.storage import ObjectStore
from tests.agent.support import FakeDaemon, RegisterWorkload, new_id, running_agent
from workers.sdk import WorkloadContext, WorkloadResult

KEY = b"the daemon key of the agent tests"


async def test_every_event_of_a_run_is_signed_with_its_secret(
    redis: Redis, keys: Keys, memory_store: ObjectStore, daemon: FakeDaemon,
) -> None:
    auth = RunAuth(KEY)
    daemon.bus.seal = auth.seal  # as the daemon's bus does
    async with running_agent(redis, keys, memory_store) as agent:
        start = await daemon.start(agent.config.name, workload="noop", rounds=2,
                                   heartbeat_interval_s=0.05)
        await daemon.wait_terminal(start)
        # A stop for a run this worker does not have: its "stopped" is signed with the
        # secret the stop carries (when the daemon knew the run id).
        await daemon.stop(start.model_copy(update={"participant": "client-3"}))
        await daemon.send(StopParticipant(command_id=new_id("cmd"), job_id=start.job_id,
                                          participant="client-4", worker=agent.config.name,
                                          run_id="lost-run"))
        await daemon.wait_for(lambda: bool(daemon.of(start.job_id, "client-3")
                                           and daemon.of(start.job_id, "client-4")),
                              timeout_s=10, what="stopped of client-3 and client-4")
    events = daemon.of(start.job_id)
    secret = auth.secret(start.job_id, start.participant, start.run_id)
    mine = [e for e in events if e.participant == start.participant]
    assert "participant.finished" in {e.type for e in mine}
    assert mine and all(verify(secret, e) is None for e in mine)
    (stopped,) = daemon.of(start.job_id, "client-3")
    assert stopped.type == "participant.stopped"
    assert stopped.mac is None, "a stop without a run id carries no secret"
    (lost,) = daemon.of(start.job_id, "client-4")
    assert lost.type == "participant.stopped"
    assert verify(auth.secret(start.job_id, "client-4", "lost-run"), lost) is None


async def test_forged_mailbox_messages_are_dropped(
    redis: Redis, keys: Keys, memory_store: ObjectStore, daemon: FakeDaemon,
    register_workload: RegisterWorkload,
) -> None:
    received: list[tuple[str, object]] = []

    async def listener(ctx: WorkloadContext) -> WorkloadResult:
        message = await ctx.receive(timeout_s=10)
        received.append((message.sender, message.body))
        with pytest.raises(TimeoutError):
            await ctx.receive(timeout_s=0.5)
        return WorkloadResult()

    name = register_workload(listener)
    job_id = new_id("job")
    box = keys.mailbox(job_id, "server")
    right = mailbox_key(KEY, job_id)

    def message(body: dict[str, object], mac_key: str | None, *, sender: str = "client-0",
                to: str = "server") -> dict[str, str]:
        raw, message_id = json.dumps(body), uuid.uuid4().hex
        fields = {"sender": sender, "id": message_id, "body": raw}
        if mac_key is not None:
            fields["mac"] = message_mac(mac_key, job_id=job_id, to=to, sender=sender,
                                        message_id=message_id, body=raw)
        return fields

    forged = [
        message({"forged": "no mac"}, None),
        message({"forged": "other job's key"}, mailbox_key(KEY, "another-job")),
        message({"forged": "another key"}, mailbox_key(b"not the daemon key at all", job_id)),
        message({"forged": "meant for client-1"}, right, to="client-1"),
        {**message({"forged": "altered"}, right), "body": json.dumps({"forged": "altered!"})},
    ]
    for fields in forged:
        await redis.xadd(box, fields)  # type: ignore[arg-type]
    await redis.xadd(box, message({"genuine": True}, right))  # type: ignore[arg-type]
    daemon.bus.seal = RunAuth(KEY).seal
    async with running_agent(redis, keys, memory_store) as agent:
        start = await daemon.start(agent.config.name, job_id=job_id, workload=name,
                                   peers=["server", "client-0"])
        end = await daemon.wait_terminal(start)
    assert end.type == "participant.finished", end
    assert received == [("client-0", {"genuine": True})]


async def test_messages_between_agents_carry_a_mac_that_verifies(
    redis: Redis, keys: Keys, memory_store: ObjectStore, daemon: FakeDaemon,
    register_workload: RegisterWorkload,
) -> None:
    async def talker(ctx: WorkloadContext) -> WorkloadResult:
        await ctx.send("client-0", {"hello": ctx.participant})
        return WorkloadResult()

    name = register_workload(talker)
    job_id = new_id("job")
    daemon.bus.seal = RunAuth(KEY).seal
    async with running_agent(redis, keys, memory_store) as agent:
        start = await daemon.start(agent.config.name, job_id=job_id, workload=name,
                                   peers=["server", "client-0"])
        await daemon.wait_terminal(start)
    with anyio.fail_after(5):
        (entry,) = await redis.xrange(keys.mailbox(job_id, "client-0"))
    fields = {k.decode(): v.decode() for k, v in entry[1].items()}
    assert fields["mac"] == message_mac(mailbox_key(KEY, job_id), job_id=job_id, to="client-0",
                                        sender="server", message_id=fields["id"],
                                        body=fields["body"])
