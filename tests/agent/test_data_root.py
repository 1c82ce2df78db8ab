"""``data_path`` confined to the worker's data root, on a real worker agent and Redis."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.bus import Redis
from orchestrator.bus.keys import Keys
from orchestrator.core.status import ErrorCode
from orchestrator.storage import ObjectStore
from tests.agent.support import FakeDaemon, RegisterWorkload, running_agent, start_command
from workers.data_paths import DataPathError, confine
from workers.sdk import WorkloadContext, WorkloadResult


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """(root, outside): root/shards/a.npz, root/escape -> outside (a symlink leaving the root)."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "shards").mkdir(parents=True)
    (root / "shards" / "a.npz").write_bytes(b"data")
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    (root / "escape").symlink_to(outside)
    (root / "inside").symlink_to(root / "shards")
    return root, outside


async def test_data_path_is_confined_to_the_data_root(
    redis: Redis, keys: Keys, memory_store: ObjectStore, daemon: FakeDaemon,
    register_workload: RegisterWorkload, layout: tuple[Path, Path],
) -> None:
    root, outside = layout
    seen: dict[str, str | None] = {}

    async def reader(ctx: WorkloadContext) -> WorkloadResult:
        seen[ctx.job_id] = ctx.data_path
        return WorkloadResult()

    name = register_workload(reader)
    cases = {
        "relative": "shards/a.npz",
        "via-link-inside": "inside/a.npz",
        "absolute": str(root / "shards" / "a.npz"),
        "system": "/etc/passwd",
        "dotdot": "../outside/secret",
        "symlink-out": "escape/secret",
    }
    async with running_agent(redis, keys, memory_store, data_root=str(root)) as agent:
        starts = {}
        for case, path in cases.items():
            command = start_command(agent.config.name, job_id=f"{case}-job", workload=name)
            command = command.model_copy(update={"data_path": path})
            await daemon.send(command)
            starts[case] = command
        ends = {case: await daemon.wait_terminal(start) for case, start in starts.items()}
    real_root = os.path.realpath(root)
    assert ends["relative"].type == ends["via-link-inside"].type == "participant.finished"
    assert seen["relative-job"] == os.path.join(real_root, "shards", "a.npz")
    assert seen["via-link-inside-job"] == os.path.join(real_root, "shards", "a.npz")
    refused = {case: ends[case] for case in ("absolute", "system", "dotdot", "symlink-out")}
    for case, end in refused.items():
        assert end.type == "participant.failed", case
        assert end.code == ErrorCode.INVALID_SPEC, case
        assert daemon.types(f"{case}-job") == ["participant.failed"], "it never started"
        assert f"{case}-job" not in seen, "the workload never ran"
    absolute = cases["absolute"]
    assert refused["absolute"].message == (f"data_path {absolute!r} is absolute; it must be "
                                           f"relative to the data root {root}")
    assert refused["system"].message == ("data_path '/etc/passwd' is absolute; it must be "
                                         f"relative to the data root {root}")
    assert refused["dotdot"].message == ("data_path '../outside/secret' has a '..' component; "
                                         f"refused by the data root {root}")
    assert refused["symlink-out"].message == (
        f"data_path 'escape/secret' resolves to {os.path.realpath(outside / 'secret')}, "
        f"outside the data root {root}")


async def test_without_a_data_root_paths_pass_as_given_but_dotdot_is_refused(
    redis: Redis, keys: Keys, memory_store: ObjectStore, daemon: FakeDaemon,
    register_workload: RegisterWorkload,
) -> None:
    seen: dict[str, str | None] = {}

    async def reader(ctx: WorkloadContext) -> WorkloadResult:
        seen[ctx.job_id] = ctx.data_path
        return WorkloadResult()

    name = register_workload(reader)
    async with running_agent(redis, keys, memory_store) as agent:
        plain = start_command(agent.config.name, job_id="plain-job", workload=name)
        plain = plain.model_copy(update={"data_path": "/data/shard-1.npz"})
        dotdot = start_command(agent.config.name, job_id="dotdot-job", workload=name)
        dotdot = dotdot.model_copy(update={"data_path": "data/../../etc/passwd"})
        await daemon.send_at_once([plain, dotdot])
        ok, refused = await daemon.wait_terminal(plain), await daemon.wait_terminal(dotdot)
    assert ok.type == "participant.finished" and seen["plain-job"] == "/data/shard-1.npz"
    assert refused.type == "participant.failed" and refused.code == ErrorCode.INVALID_SPEC
    assert refused.message == ("data_path 'data/../../etc/passwd' has a '..' component; "
                               "refused by this worker (no data root)")
    assert "dotdot-job" not in seen


def test_confine_refuses_nul_and_keeps_none() -> None:
    assert confine(None, "/srv") is None
    with pytest.raises(DataPathError, match="contains a NUL byte"):
        confine("a\x00b", "/srv")
