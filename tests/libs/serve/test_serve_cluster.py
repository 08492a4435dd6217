"""sluice.serve on a sluice cluster (a head and two nodes): replicas go where their resources
are, spread over the nodes, and answer handle calls and HTTP over TCP."""

from __future__ import annotations

import os
from collections.abc import Iterator

import urllib.request

import pytest

import sluice
import sluice.serve as serve
from tests.cluster.conftest import LocalCluster, node_with
from tests.libs.serve.helpers import free_port


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    c = LocalCluster(nodes=2, cpus=1, node_args=[["--resources", '{"model": 2}'], []])
    try:
        sluice.init(address=c.address)
        c.http_port = free_port()
        serve.start(http_options={"port": c.http_port})
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


@serve.deployment(num_replicas=2, ray_actor_options={"num_cpus": 0, "resources": {"model": 1}})
class Pinned:
    def __call__(self, request=None) -> str:
        return f"{sluice.get_runtime_context().get_node_id()} {os.getpid()}"


def test_replicas_go_to_the_node_with_their_resources_and_answer_http(cluster: LocalCluster) -> None:
    serve.run(Pinned.bind(), name="pinned", route_prefix="/pinned")
    only = node_with("model")  # one node declares it: both replicas run there
    url = f"http://127.0.0.1:{cluster.http_port}/pinned"
    answers = set()
    for _ in range(60):
        with urllib.request.urlopen(url, timeout=60) as response:  # through the proxy
            assert response.status == 200
            answers.add(response.read().decode())
    assert {a.split()[0] for a in answers} == {only}
    assert len({a.split()[1] for a in answers}) == 2  # both replicas served
    handle = serve.get_app_handle("pinned")
    assert handle.remote().result(timeout_s=60).split()[0] == only
    serve.delete("pinned")
