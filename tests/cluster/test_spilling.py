"""Node stores past their capacity spill to disk, and what was spilled reads back intact,
on the node that holds it and from other nodes."""

from __future__ import annotations

import glob
import os
import tempfile
from collections.abc import Iterator

import numpy as np
import pytest

import sluice
from tests.cluster.conftest import LocalCluster

MB = 1_000_000


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    # 40 MB stores: ten 16 MB blocks cannot all stay in node 0's memory.
    c = LocalCluster(nodes=2, extra=["--object-store-memory", str(40 * MB)],
                     node_args=[["--resources", '{"n0": 1}'], ["--resources", '{"n1": 1}']])
    sluice.init(address=c.address)
    try:
        yield c
    finally:
        sluice.shutdown()
        c.stop()


@sluice.remote(resources={"n0": 0.01})
def block(seed: int) -> np.ndarray:
    return np.full(2_000_000, seed, dtype=np.int64)  # 16 MB


@sluice.remote
def total(a: np.ndarray) -> int:
    return int(a.sum())


def spilled_files(cluster: LocalCluster) -> list[str]:
    """Node 0's spill files (its spill folder is named after its daemon's pid)."""
    return glob.glob(os.path.join(tempfile.gettempdir(),
                                  f"sluice-spill-{cluster.nodes[0].pid}-*", "sluice-*"))


def node0(cluster: LocalCluster):
    return next(n for n in cluster.status().nodes if "n0" in n.total_json)


def test_a_full_node_store_spills_and_reads_back(cluster: LocalCluster) -> None:
    refs = [block.remote(i) for i in range(10)]
    sluice.wait(refs, num_returns=len(refs), timeout=60)
    status = node0(cluster)
    assert status.objects_spilled >= 6  # 160 MB made, 40 MB may stay in memory
    assert len(spilled_files(cluster)) >= 6
    # Read on node 0 (pulled back from its own disk) and on node 1 (served from node 0's disk).
    on0 = [total.options(resources={"n0": 0.01}).remote(r) for r in refs]
    on1 = [total.options(resources={"n1": 0.01}).remote(r) for r in refs]
    want = [2_000_000 * i for i in range(10)]
    assert sluice.get(on0, timeout=60) == want
    assert sluice.get(on1, timeout=60) == want
    # The driver reads them too; node 0's memory stays near its capacity meanwhile.
    assert [int(a[0]) for a in sluice.get(refs, timeout=60)] == list(range(10))
    # Freed: the disk copies go as well.
    del refs, on0, on1
    cluster.wait_until(lambda st: not spilled_files(cluster) and node0(cluster).store_used == 0, 60,
                       "spilled and in-memory copies removed once freed")
