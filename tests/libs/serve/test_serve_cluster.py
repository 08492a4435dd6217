"""sluice.serve on a two-node sluice cluster: replicas spread over the nodes answer over TCP."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

import sluice
import sluice.serve as serve
from tests.cluster.conftest import LocalCluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    c = LocalCluster(nodes=2, cpus=1)
    try:
        sluice.init(address=c.address)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        serve.start(http_options={"port": port})
        yield c
    finally:
        try:
            serve.shutdown()
        finally:
            sluice.shutdown()
            c.stop()


@serve.deployment(num_replicas=2, ray_actor_options={"num_cpus": 1})
class Where:
    def __call__(self) -> tuple:
        return sluice.get_runtime_context().get_node_id(), os.getpid()


def test_replicas_on_two_nodes_answer_handle_calls(cluster: LocalCluster) -> None:
    handle = serve.run(Where.bind())
    nodes = {handle.remote().result(timeout_s=60)[0] for _ in range(60)}
    assert len(nodes) == 2  # one CPU per node: one replica on each
    from sluice.libs.serve.handle import controller

    _, replicas = sluice.get(controller().listen_replicas.remote("default#Where", -1))
    assert len(replicas) == 2 and all(r.address.startswith("tcp:") for r in replicas)
    assert {r.node_id for r in replicas} == nodes
