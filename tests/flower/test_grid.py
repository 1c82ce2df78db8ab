"""The Grid over participant messaging, driven from a thread as a ServerApp drives it, with
the clients played by hand on in-memory contexts: node ids, replies matched to their messages,
a gone client dropped from the nodes and answered for with an error reply, timeouts, and a
closed grid refusing calls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.to_thread
import pytest

pytest.importorskip("flwr")

from anyio.from_thread import BlockingPortal
from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict
from flwr.common.constant import ErrorCode
from flwr.supercore.task_identity import TaskIdentity

from orchestrator.errors import WorkloadError
from workers.local import LocalHub
from workers.sdk import WorkloadContext, WorkloadResult
from workers.workloads.flower import wire
from workers.workloads.flower.grid import GridClosedError, OrchestratorGrid
from workers.workloads.flower.observer import RoundObserver
from workers.workloads.flower.transport import Transport


async def _idle(ctx: WorkloadContext) -> WorkloadResult:  # (never run: contexts only)
    return WorkloadResult()


@asynccontextmanager
async def grid_over(hub: LocalHub) -> AsyncIterator[OrchestratorGrid]:
    transport = Transport(hub.context("server"), RoundObserver(hub.context("server")))
    async with anyio.create_task_group() as tg:
        tg.start_soon(transport.pump)
        async with BlockingPortal() as portal:
            grid = OrchestratorGrid(portal, transport, run_id=7)
            yield grid
            grid.close()
        tg.cancel_scope.cancel()


async def answer(ctx: WorkloadContext, count: int = 1) -> None:
    """Play a ClientApp: reply to ``count`` messages with the round they carried."""
    for _ in range(count):
        notice = await ctx.receive(timeout_s=10)
        request = await wire.fetch_message(ctx, notice.body)
        content = RecordDict({"metrics": MetricRecord({"round": notice.body["round"]})})
        reply = Message(content, reply_to=request)
        await ctx.send("server", await wire.put_message(
            ctx, wire.REPLY, reply, message_id=wire.new_message_id(),
            refers_to=request.metadata.message_id, round_=notice.body["round"]))


def _query(node: int, round_: int) -> Message:
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 7, 1
    content = RecordDict({"config": ConfigRecord({"server-round": round_})})
    return Message(content, dst_node_id=node, message_type="query")


async def test_the_nodes_are_the_clients_and_replies_match_their_messages() -> None:
    with LocalHub(_idle, clients=3) as hub:
        async with grid_over(hub) as grid, anyio.create_task_group() as tg:
            for i in range(3):
                tg.start_soon(answer, hub.context(f"client-{i}"))
            nodes = sorted(await anyio.to_thread.run_sync(grid.get_node_ids))
            assert nodes == [1000, 1001, 1002]
            replies = await anyio.to_thread.run_sync(
                lambda: list(grid.send_and_receive([_query(n, 2) for n in nodes])))
        assert sorted(r.metadata.src_node_id for r in replies) == nodes
        assert all(r.content["metrics"]["round"] == 2 for r in replies)
        assert hub.rounds_started == [2]  # the round was announced once


async def test_a_gone_client_leaves_the_nodes_and_its_reply_is_an_error() -> None:
    with LocalHub(_idle, clients=3, min_clients=2) as hub:
        server = hub.context("server")
        async with grid_over(hub) as grid, anyio.create_task_group() as tg:
            tg.start_soon(answer, hub.context("client-0"))
            tg.start_soon(answer, hub.context("client-1"))  # client-2 never answers

            def strategy() -> list[Message]:  # waits for every reply: no timeout
                return list(grid.send_and_receive([_query(n, 1) for n in (1000, 1001, 1002)]))

            async def lose_client_2() -> None:
                await anyio.sleep(0.2)
                server.note_gone(["client-2"], "worker lost")  # as the daemon tells it

            tg.start_soon(lose_client_2)
            replies = await anyio.to_thread.run_sync(strategy)
            nodes = await anyio.to_thread.run_sync(lambda: sorted(grid.get_node_ids()))
        errors = [r for r in replies if r.has_error()]
        assert len(replies) == 3 and len(errors) == 1
        assert errors[0].metadata.src_node_id == 1002
        assert errors[0].error.code == ErrorCode.NODE_UNAVAILABLE
        assert nodes == [1000, 1001]


async def test_messages_to_a_gone_client_are_answered_at_once_and_too_few_clients_fail() -> None:
    with LocalHub(_idle, clients=2, min_clients=2) as hub:
        hub.context("server").note_gone(["client-1"], "skipped at dispatch")
        async with grid_over(hub) as grid:
            replies = await anyio.to_thread.run_sync(
                lambda: list(grid.send_and_receive([_query(1001, 1)])))
            assert [r.error.code for r in replies] == [ErrorCode.NODE_UNAVAILABLE]
            with pytest.raises(WorkloadError, match=r"only 1 of 2 clients are left"):
                await anyio.to_thread.run_sync(grid.get_node_ids)


async def test_a_timeout_returns_the_replies_so_far_and_a_closed_grid_refuses() -> None:
    with LocalHub(_idle, clients=2) as hub:
        async with grid_over(hub) as grid:
            async with anyio.create_task_group() as tg:
                tg.start_soon(answer, hub.context("client-0"))
                replies = await anyio.to_thread.run_sync(lambda: list(grid.send_and_receive(
                    [_query(1000, 1), _query(1001, 1)], timeout=0.5)))
            assert [r.metadata.src_node_id for r in replies] == [1000]
            grid.close()
            with pytest.raises(GridClosedError):
                await anyio.to_thread.run_sync(grid.get_node_ids)
