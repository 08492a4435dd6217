"""sluice.train on a sluice cluster (a head with no CPU and two nodes of one CPU): the
ranks spread over the nodes, join one gloo group across them, and their checkpoints reach
the driver's storage path through the object store; a gang restarted after a rank is
killed gets its checkpoint as data on its own nodes (no shared file system needed)."""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import sluice  # noqa: E402
from sluice import train  # noqa: E402
from sluice.train.torch import TorchTrainer  # noqa: E402
from tests.cluster.conftest import LocalCluster  # noqa: E402


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    c = LocalCluster(nodes=2, cpus=1, head_cpus=0)
    try:
        sluice.init(address=c.address)
        yield c
    finally:
        sluice.shutdown()
        c.stop()


def spread_loop(config):
    import torch.distributed as dist

    rank = train.get_context().get_world_rank()
    checkpoint = train.get_checkpoint()
    start = int(Path(checkpoint.path, f"rank{rank}").read_text()) if checkpoint else 0
    where = checkpoint.path if checkpoint else ""
    for step in range(start, 4):
        if rank == 1 and step == 2 and not os.path.exists(config["marker"]):
            Path(config["marker"]).write_text("")
            os.kill(os.getpid(), signal.SIGKILL)
        node = sluice.get_runtime_context().get_node_id()
        nodes: list = [None, None]
        dist.all_gather_object(nodes, node)
        sources: list = [None, None]
        dist.all_gather_object(sources, where)
        folder = tempfile.mkdtemp()
        Path(folder, f"rank{rank}").write_text(str(step + 1))
        train.report({"step": step + 1, "nodes": nodes, "resumed_from": sources,
                      "start": start}, checkpoint=train.Checkpoint.from_directory(folder))


def test_ranks_spread_over_nodes_and_checkpoints_travel_through_the_store(cluster,
                                                                          tmp_path) -> None:
    storage = tmp_path / "storage"
    run = TorchTrainer(spread_loop, train_loop_config={"marker": str(tmp_path / "killed")},
                       scaling_config=train.ScalingConfig(num_workers=2,
                                                          placement_strategy="SPREAD"),
                       run_config=train.RunConfig(name="spread", storage_path=str(storage),
                                                  failure_config=train.FailureConfig(1)))
    result = run.fit()
    m = result.metrics
    assert m["step"] == 4 and len(set(m["nodes"])) == 2  # one rank on each node
    assert run.controller.failures == 1 and m["start"] == 2
    # after the restart, the rank on the driver's node read the checkpoint in the storage
    # path; the one on the other node, a copy that came to its node as data
    driver_node = sluice.get_runtime_context().get_node_id()
    for node, source in zip(m["nodes"], m["resumed_from"]):
        assert source and source.startswith(str(storage)) == (node == driver_node)
    latest = Path(result.checkpoint.path)
    assert latest.parent == storage / "spread"
    assert {p.name: p.read_text() for p in latest.iterdir()} == {"rank0": "4", "rank1": "4"}
