"""sluice.tune on a sluice cluster (a head and two nodes, one CPU each): trials spread over
the nodes, and checkpoints move between a node and the driver through the object store,
not a shared file system (the trials work in folders of their own node)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import sluice
from sluice import tune
from tests.cluster.conftest import LocalCluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    c = LocalCluster(nodes=2, cpus=1)
    try:
        sluice.init(address=c.address)
        yield c
    finally:
        sluice.shutdown()
        c.stop()


def counts(config):
    checkpoint = tune.get_checkpoint()
    start = int(Path(checkpoint.path, "n").read_text()) if checkpoint else 0
    where = sluice.get_runtime_context().get_node_id()
    for n in range(start + 1, 6):
        marker = Path(config["dir"], f"failed-{config['k']}")
        if n == 3 and config["k"] % 2 == 0 and not marker.exists():
            marker.write_text("")
            raise RuntimeError("one failure, to resume from a checkpoint")
        folder = tempfile.mkdtemp()
        Path(folder, "n").write_text(str(n))
        tune.report({"n": n, "node": where, "resumed_from": start,
                     "trial_dir": tune.get_context().get_trial_dir(),
                     "checkpoint_given": checkpoint.path if checkpoint else ""},
                    checkpoint=tune.Checkpoint.from_directory(folder))


def test_trials_spread_over_nodes_and_checkpoints_travel_without_a_shared_folder(
        cluster, tmp_path) -> None:
    grid = tune.Tuner(counts, param_space={"k": tune.grid_search(list(range(6))),
                                           "dir": str(tmp_path)},
                      tune_config=tune.TuneConfig(metric="n", mode="max", reuse_actors=True),
                      run_config=tune.RunConfig(storage_path=str(tmp_path / "results"),
                                                name="spread", verbose=0,
                                                failure_config=tune.FailureConfig(max_failures=1))
                      ).fit()
    assert grid.num_terminated == 6 and grid.num_errors == 0
    nodes = {node for r in grid for node in r.metrics_dataframe["node"]}
    assert len(nodes) >= 2  # one CPU per node: trials ran on several
    driver = sluice.get_runtime_context().get_node_id()
    experiment = tmp_path / "results" / "spread"
    for result in grid:
        frame = result.metrics_dataframe
        # every checkpoint is in the driver's experiment folder, whatever node wrote it
        assert result.checkpoint is not None
        assert Path(result.checkpoint.path).parent == Path(result.path)
        assert Path(result.path).parent == experiment
        assert Path(result.checkpoint.path, "n").read_text() == "5"
        assert list(frame["n"])[-1] == 5
        for _, row in frame.iterrows():
            if row["node"] != driver:  # a node of its own: its own folders
                assert not row["trial_dir"].startswith(str(experiment))
                assert not row["checkpoint_given"].startswith(str(experiment))
        if result.config["k"] % 2 == 0:  # failed once at n=3: resumed from n=2's checkpoint
            assert list(frame["n"]) == [1, 2, 3, 4, 5][:2] + [3, 4, 5]
            assert list(frame["resumed_from"])[-1] == 2
