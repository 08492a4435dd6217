"""What the locality pass needs of the backend, asked when a DAG is compiled.

The pass itself (``sluice.compiler.passes.locality``) is a pure function of the
graph and a :class:`~sluice.compiler.passes.locality.ClusterView`; this module
reads that view from the running backend: its live nodes (``Backend.nodes()``)
and, for each ObjectRef bound as an argument (a CONSTANT op), the nodes holding
it and its size (``Backend.object_locations()``).
"""

from __future__ import annotations

import networkx as nx

from sluice.compiler.ir import OpKind, ops_of
from sluice.compiler.passes.locality import ClusterView
from sluice.executor import context
from sluice.executor.backend import Backend


def cluster_view(graph: nx.DiGraph, backend: Backend | None = None) -> ClusterView | None:
    """Where the bound objects of ``graph`` live and how big they are, on ``backend``
    (default: the running one).

    None (every stage stays local) when nothing is running (compiling starts no
    runtime), when the graph binds no ObjectRef (nothing has a known place), or
    when the backend has fewer than two live nodes (nowhere else to go). Objects
    no live node's store holds (values too small to store, freed ones) are left
    out; a size the backend does not know is left out.
    """
    rt = backend if backend is not None else context.current()
    if rt is None:
        return None
    constants = {op.id: op.key[1] for op in ops_of(graph).values()
                 if op.kind is OpKind.CONSTANT and op.key[0] == "object"}  # not a running actor
    if not constants:
        return None
    live = [node.node_id for node in rt.nodes() if node.alive]
    if len(live) < 2:
        return None
    held: dict[str, set[str]] = {node_id: set() for node_id in live}
    sizes: dict[str, int] = {}
    for op_id, location in zip(constants, rt.object_locations(list(constants.values()))):
        if location.size is not None:
            sizes[op_id] = location.size
        for node_id in location.node_ids:
            if node_id in held:
                held[node_id].add(op_id)
    return ClusterView(held={node_id: frozenset(ops) for node_id, ops in held.items()},
                       sizes=sizes)
