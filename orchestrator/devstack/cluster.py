"""A local Redis Cluster: three primaries from the same ``valkey-server`` binary.

For tests and the bench (``bench/bench_e2e.py --cluster``). Each node runs with
``--cluster-enabled yes`` in a directory of its own; :func:`start_cluster` gives each a third of
the 16384 slots (``CLUSTER ADDSLOTSRANGE``), joins them (``CLUSTER MEET``) and waits until
every node reports ``cluster_state:ok``. Valkey ships no ``valkey-cli``, so this is done with
redis-py's ``execute_command``. There are no replicas: a test cluster, not a resilient one.

With ``aclfile`` every node loads the same users (:mod:`orchestrator.devstack.acl`): ACLs are
per node in Redis Cluster, so each node must have them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.devstack.process import (
    HOST,
    ServerProcess,
    ServerStartError,
    free_port,
    spawn,
    start_server,
)
from orchestrator.devstack.redis_server import _redis_ready, redis_server_binary

SLOTS = 16384
CLUSTER_SCHEME = "redis+cluster://"
"""The URL scheme that makes ``connect_redis`` build a cluster client."""

_READY_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class NodeSpec:
    """How one node is started (again, by :meth:`ClusterProcess.restart`)."""

    binary: Path
    data_dir: Path
    bus_port: int
    """Its cluster bus port (not the default port + 10000, which may be taken or past 65535)."""
    aclfile: Path | None = None
    appendonly: bool = False


@dataclass
class ClusterProcess:
    """The nodes of a running local cluster; ``url`` is ``redis+cluster://HOST:PORT/0`` (any
    node's address finds the others)."""

    nodes: list[ServerProcess] = field(default_factory=list)
    specs: list[NodeSpec] = field(default_factory=list)
    username: str | None = None
    password: str | None = None

    @property
    def url(self) -> str:
        return f"{CLUSTER_SCHEME}{HOST}:{self.nodes[0].port}/0"

    @property
    def node_urls(self) -> list[str]:
        """Each node as a plain ``redis://`` URL (to look at one node on its own)."""
        return [f"redis://{HOST}:{node.port}/0" for node in self.nodes]

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL; by PID)."""
        for node in self.nodes:
            node.stop()

    def restart(self, i: int) -> None:
        """Start node ``i`` again (after it was stopped or killed) on its port and directory:
        it rejoins with its slots from its ``nodes.conf`` (its data only with ``appendonly``);
        returns once the cluster is ok again."""
        self.nodes[i].stop()
        self.nodes[i] = _start_node(self.specs[i], self.nodes[i].port,
                                    username=self.username, password=self.password)
        _wait_ok(self)


def _admin(port: int, username: str | None, password: str | None) -> Any:
    import redis  # noqa: PLC0415 - only needed once a server is starting

    return redis.Redis(host=HOST, port=port, username=username, password=password,
                       socket_timeout=5.0, socket_connect_timeout=2.0)


def _start_node(spec: NodeSpec, port: int | None = None, *, username: str | None,
                password: str | None) -> ServerProcess:
    def launch(chosen: int) -> ServerProcess:
        argv = [
            str(spec.binary), "--bind", HOST, "--port", str(chosen),
            "--dir", str(spec.data_dir), "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf", "--cluster-port", str(spec.bus_port),
            "--cluster-node-timeout", "5000", "--save", "", "--maxmemory-policy", "noeviction",
            "--daemonize", "no", "--logfile", "",
        ]  # fmt: skip
        argv += (["--appendonly", "yes", "--appendfsync", "always"] if spec.appendonly
                 else ["--appendonly", "no"])
        if spec.aclfile is not None:
            argv += ["--aclfile", str(spec.aclfile)]
        url = f"redis://{HOST}:{chosen}/0"
        return spawn("redis-cluster-node", argv, spec.data_dir, port=chosen, url=url,
                     marker=spec.binary.name)

    return start_server(port, launch, lambda p: _redis_ready(p, password, username))


def start_cluster(
    data_dir: Path,
    primaries: int = 3,
    *,
    aclfile: Path | None = None,
    username: str | None = None,
    password: str | None = None,
    appendonly: bool = False,
) -> ClusterProcess:
    """Start ``primaries`` nodes under ``data_dir/node-i``, share the slots out evenly, join
    them and wait for ``cluster_state:ok`` on each. ``username``/``password`` (with
    ``aclfile``) are the admin user the setup commands authenticate as; with ``appendonly``
    each node keeps an AOF fsynced on every write (a killed node restarts with its data)."""
    if primaries < 1:
        raise ValueError("a cluster needs at least one primary")
    binary = redis_server_binary()
    cluster = ClusterProcess(username=username, password=password)
    cluster.specs = [NodeSpec(binary, data_dir / f"node-{i}", free_port(), aclfile, appendonly)
                     for i in range(primaries)]
    bus_ports = [spec.bus_port for spec in cluster.specs]
    try:
        for spec in cluster.specs:
            cluster.nodes.append(_start_node(spec, username=username, password=password))
        for i, node in enumerate(cluster.nodes):
            lo, hi = SLOTS * i // primaries, SLOTS * (i + 1) // primaries - 1
            with _client(node.port, username, password) as client:
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", lo, hi)
                if i > 0:
                    client.execute_command("CLUSTER", "MEET", HOST, cluster.nodes[0].port,
                                           bus_ports[0])
        _wait_ok(cluster)
    except BaseException:
        cluster.stop()
        raise
    return cluster


@contextmanager
def _client(port: int, username: str | None, password: str | None) -> Iterator[Any]:
    client = _admin(port, username, password)
    try:
        yield client
    finally:
        client.close()


def _wait_ok(cluster: ClusterProcess) -> None:
    """Until every node says ``cluster_state:ok`` and knows every other node."""
    deadline = time.monotonic() + _READY_TIMEOUT_S
    pending = list(cluster.nodes)
    while pending:
        node = pending[0]
        with _client(node.port, cluster.username, cluster.password) as client:
            info = client.execute_command("CLUSTER", "INFO")
        text = info.decode() if isinstance(info, bytes) else str(info)
        fields = dict(line.split(":", 1) for line in text.split() if ":" in line)
        if (fields.get("cluster_state") == "ok"
                and int(fields.get("cluster_known_nodes", "0")) == len(cluster.nodes)):
            pending.pop(0)
            continue
        if time.monotonic() >= deadline:
            raise ServerStartError(f"the local cluster did not reach cluster_state:ok within "
                                   f"{_READY_TIMEOUT_S:.0f} s (node {node.port}: {text!r})")
        time.sleep(0.05)


__all__ = ["CLUSTER_SCHEME", "ClusterProcess", "NodeSpec", "start_cluster"]
