"""compile: logical graph -> passes -> Plan, in one place."""

from __future__ import annotations

from typing import Any

from sluice.compiler.lower import lower
from sluice.compiler.passes.actor_chains import find_actor_chains
from sluice.compiler.passes.cse import eliminate_common_subexpressions
from sluice.compiler.passes.fusion import fuse_linear_chains
from sluice.compiler.passes.gpu import place_gpus
from sluice.compiler.passes.locality import place_stages
from sluice.compiler.passes.numba_fusion import fuse_numba
from sluice.compiler.passes.validate import validate
from sluice.compiler.plan import Plan


def compile_graph(graph: Any, optimize: bool = True) -> Plan:
    """The physical Plan of a logical graph (``sluice.dsl.to_graph.build_graph`` makes one).

    Always: validate, GPU placement (host/device copies made explicit), actor
    chains (forwarding changes where values go, not what runs) and locality.
    With ``optimize``: CSE, linear fusion and numba fusion too.
    """
    graph = validate(graph)
    if optimize:
        graph = eliminate_common_subexpressions(graph)
    graph = place_gpus(graph)
    if optimize:
        graph = fuse_linear_chains(graph)
        graph = fuse_numba(graph)
    graph = find_actor_chains(graph)
    graph = place_stages(graph)
    return lower(graph, optimized=optimize)
