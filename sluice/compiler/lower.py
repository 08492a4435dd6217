"""lower: the optimized logical graph becomes the physical Plan.

Each stage is the ops one fusion group holds, in topological order; its inputs
are the ops of other stages it reads; its output is its last op. Stages are
listed in a topological order, so a Plan runs front to back.
"""

from __future__ import annotations

import networkx as nx

from sluice.compiler.ir import Op, OpKind, topological_ops
from sluice.compiler.plan import Plan, Stage, stage_id


def lower(graph: nx.DiGraph, optimized: bool = True) -> Plan:
    """The Plan of ``graph`` (stages from ``graph.graph["stages"]``, singletons otherwise)."""
    order = topological_ops(graph)
    groups = graph.graph.get("stages") or {}
    placement = graph.graph.get("placement") or {}
    reasons = graph.graph.get("placement_reasons") or {}
    members: dict[str, list[Op]] = {}
    for op in order:
        members.setdefault(groups.get(op.id, op.id), []).append(op)
    stage_of_op = {op.id: groups.get(op.id, op.id) for op in order}
    stages: list[Stage] = []
    emitted: set[str] = set()
    last_of = {stage_of_op[op.id]: op.id for op in order}
    for op in order:
        # A stage is emitted where its *last* op falls: every op before it in the stage
        # is read only inside the stage, so all the stage's outside inputs come earlier.
        group = stage_of_op[op.id]
        if group in emitted or last_of[group] != op.id:
            continue
        emitted.add(group)
        ops = tuple(members[group])
        inside = {o.id for o in ops}
        inputs: list[str] = []
        for o in ops:
            for i in o.inputs:
                if i not in inside and i not in inputs:
                    inputs.append(i)
        head = ops[0]
        # A fused stage is a CALL stage even when a host/device copy leads it.
        kind = OpKind.CALL if any(o.kind is OpKind.CALL for o in ops) else head.kind
        stages.append(Stage(id=stage_id(ops), kind=kind, ops=ops, inputs=tuple(inputs),
                            output=ops[-1].id, resources=head.resources, device=head.device,
                            placement=placement.get(head.id, "local"),
                            placement_reason=reasons.get(head.id)))
    used = {op.fn_id for op in order if op.fn_id}
    functions = tuple(sorted((k, v) for k, v in graph.graph["functions"].items() if k in used))
    blocked = tuple(sorted((u, v, rule) for (u, v), rule in (graph.graph.get("blocked") or {}).items()))
    not_chained = tuple(sorted((u, v, rule) for (u, v), rule
                               in (graph.graph.get("not_chained") or {}).items()))
    jit_groups = graph.graph.get("jit_stages") or {}
    jit_stages = tuple(st.id for st in stages if any(stage_of_op[o.id] in jit_groups for o in st.ops))
    return Plan(stages=tuple(stages), outputs=tuple(graph.graph["outputs"]),
                multi_output=bool(graph.graph.get("multi_output")), functions=functions,
                passes=tuple(graph.graph.get("passes", ())), blocked=blocked,
                logical_edges=tuple(sorted(graph.edges())), optimized=optimized,
                jit_stages=jit_stages, actor_chains=tuple(graph.graph.get("actor_chains", ())),
                not_chained=not_chained,
                sizes=tuple(sorted((graph.graph.get("sizes") or {}).items())))
