"""Clusters for tests: :class:`~sluice.executor.cluster.local.LocalCluster` started from the repo root."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sluice.executor.cluster import cluster_pb2 as pb
from sluice.executor.cluster.local import LocalCluster as _LocalCluster
from sluice.executor.cluster.local import free_port

ROOT = Path(__file__).resolve().parents[2]
__all__ = ["ROOT", "LocalCluster", "free_port", "node_info"]


class LocalCluster(_LocalCluster):
    """Daemons that import the test modules (the repo root on their path)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("cwd", ROOT)
        super().__init__(*args, **kwargs)


def node_info() -> dict:
    """Where the calling task runs: its node's Flight location and its pid."""
    return {"flight": os.environ.get("SLUICE_NODE_FLIGHT"), "pid": os.getpid()}


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    c = LocalCluster(nodes=2)
    try:
        yield c
    finally:
        c.stop()


def records(status: pb.ClusterStatus) -> list[dict]:
    return [{"id": n.node_id, "alive": n.alive, "total": json.loads(n.total_json),
             "workers": n.workers} for n in status.nodes]
