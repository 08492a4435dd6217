"""fusion: a linear chain of calls becomes one stage, run as one task on one worker.

Rule: the edge ``u -> v`` fuses when
  * both ops are function calls (or host/device transfers), not actor ops and
    not stream ops (``BLOCKS``: a limit, union or shuffle needs the whole stream);
  * ``u`` has exactly one consumer, ``v``, and is not an output of the graph
    (its value is needed nowhere else, so it never has to be stored);
  * ``v`` reads no other computed op (inputs and constants do not count): a
    join, such as the bottom of a diamond, stays a stage boundary;
  * both ask for the same resources and run on the same device (placement is
    part of an op; fusing never drops it), and ``u`` returns one value;
  * both have the same ``scheduling_strategy`` (a stage runs in one place).
Every edge into a computed op that does not fuse is recorded in
``graph.graph["blocked"]`` with the first rule it broke, for ``explain()``
(an edge from the input or a selector: the value travels with the task; from
a bound object: the task reads it where it runs).
"""

from __future__ import annotations

import networkx as nx

from sluice.compiler.ir import Op, OpKind, ops_of

_FUSIBLE = (OpKind.CALL, OpKind.TRANSFER)
_COMPUTED = (OpKind.CALL, OpKind.TRANSFER, OpKind.ACTOR, OpKind.METHOD, OpKind.BLOCKS)
# Why an edge from a value that is not computed is a stage boundary.
_VALUE_RULES = {
    OpKind.INPUT: "driver value: the execute() input travels with the task",
    OpKind.CONSTANT: "bound object: the task reads the stored value where it runs",
}

# A CONSTANT of a running actor (``handle.method.bind()``) feeding its method calls.
_RUNNING_ACTOR_RULE = "running actor: its methods run in that actor's process"


def fuse_linear_chains(graph: nx.DiGraph) -> nx.DiGraph:
    """A new graph whose ``stages`` attribute maps every op to its stage."""
    ops = ops_of(graph)
    outputs = set(graph.graph["outputs"])
    blocked: dict[tuple[str, str], str] = {}
    leader: dict[str, str] = {}  # op -> the first op of its stage (union-find, path-halving)

    def find(x: str) -> str:
        while leader.get(x, x) != x:
            leader[x] = leader.get(leader[x], leader[x])
            x = leader[x]
        return x

    fused_any = False
    for u, v in sorted(graph.edges()):
        a, b = ops[u], ops[v]
        if a.kind not in _COMPUTED:
            if b.kind in _COMPUTED:
                blocked[(u, v)] = (_RUNNING_ACTOR_RULE if a.key[:1] == ("actor",)
                                   else _VALUE_RULES.get(a.kind, _VALUE_RULES[OpKind.INPUT]))
            continue
        reason = _blocking_rule(graph, ops, a, b, outputs)
        if reason is None:
            leader[find(v)] = find(u)
            fused_any = True
        else:
            blocked[(u, v)] = reason
    stages = {op_id: find(op_id) for op_id in ops}
    g = graph.copy()
    g.graph["stages"] = stages
    g.graph["blocked"] = blocked
    if fused_any:
        g.graph["passes"] = tuple(graph.graph.get("passes", ())) + ("fusion",)
    return g


def _blocking_rule(graph: nx.DiGraph, ops: dict[str, Op], a: Op, b: Op, outputs: set[str]) -> str | None:
    """The first rule that keeps ``a -> b`` apart, or None when they fuse."""
    if OpKind.BLOCKS in (a.kind, b.kind):
        op = a if a.kind is OpKind.BLOCKS else b
        return (f"stream op: {op.name} works on the whole stream of blocks ({op.method}), "
                "not block by block")
    if a.is_actor_op or b.is_actor_op:
        return "actor op: actor methods run in their actor's process, not in a fused task"
    if a.kind not in _FUSIBLE or b.kind not in _FUSIBLE:
        return f"{a.kind.value} -> {b.kind.value} is not a call chain"
    consumers = graph.out_degree(a.id)
    if consumers != 1:
        return f"multi-consumer: {a.name} feeds {consumers} ops, so its value must be stored"
    if a.id in outputs:
        return f"{a.name} is an output of the graph, so its value must be stored"
    computed_inputs = [i for i in b.inputs if ops[i].kind in _COMPUTED]
    if len(computed_inputs) != 1:
        return f"join: {b.name} reads {len(computed_inputs)} computed values (diamond or fan-in)"
    if a.resources != b.resources:
        return f"different resources: {_fmt(a.resources)} vs {_fmt(b.resources)}"
    if a.device != b.device:
        return f"different device: {a.device} vs {b.device}"
    if a.num_returns != 1:
        return f"{a.name} returns {a.num_returns} values"
    if _strategy(a) != _strategy(b):
        return (f"different scheduling_strategy: {_strategy(a)!r} vs {_strategy(b)!r} (a stage "
                "runs in one place)")
    return None


def _strategy(op: Op) -> object:
    return dict(op.options).get("scheduling_strategy")


def _fmt(resources: tuple) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in resources) + "}" if resources else "{}"
