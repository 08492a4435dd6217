"""compile: logical graph -> passes -> Plan, in one place."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from sluice.compiler.lower import lower
from sluice.compiler.pass_log import MAX_OPS, PassChange, snapshot
from sluice.compiler.passes.actor_chains import find_actor_chains
from sluice.compiler.passes.cse import eliminate_common_subexpressions
from sluice.compiler.passes.fusion import fuse_linear_chains
from sluice.compiler.passes.gpu import place_gpus
from sluice.compiler.passes.locality import ClusterView, place_stages
from sluice.compiler.passes.numba_fusion import fuse_numba
from sluice.compiler.passes.validate import validate
from sluice.compiler.plan import Plan


def compile_graph(graph: Any, optimize: bool = True, cluster: ClusterView | None = None) -> Plan:
    """The physical Plan of a logical graph (``sluice.dsl.to_graph.build_graph`` makes one).

    Always: validate, GPU placement (host/device copies made explicit), actor
    chains (forwarding changes where values go, not what runs) and locality.
    With ``optimize``: CSE, linear fusion and numba fusion too. ``cluster``: the
    nodes and the sizes of the values that exist already (read from the backend
    by the caller, ``sluice.dsl.placement``); without it every stage stays local.
    Each pass that fires leaves the graph before and after it in ``Plan.pass_log``.
    """
    log: list[PassChange] = []
    record = graph.number_of_nodes() <= MAX_OPS

    def run(pass_: Callable[..., Any], g: Any, *args: Any) -> Any:
        fired = len(g.graph.get("passes", ()))
        out = pass_(g, *args)
        names = out.graph.get("passes", ())
        if record and len(names) > fired:
            log.append(PassChange(names[-1], snapshot(g), snapshot(out)))
        return out

    graph = validate(graph)
    if optimize:
        graph = run(eliminate_common_subexpressions, graph)
    graph = run(place_gpus, graph)
    if optimize:
        graph = run(fuse_linear_chains, graph)
        graph = run(fuse_numba, graph)
    graph = run(find_actor_chains, graph)
    if cluster is not None:
        graph = graph.copy()
        graph.graph["sizes"] = {op_id: size for op_id, size in cluster.sizes.items()
                                if op_id in graph}
    graph = run(place_stages, graph, cluster.held if cluster is not None else None)
    return dataclasses.replace(lower(graph, optimized=optimize), pass_log=tuple(log))
