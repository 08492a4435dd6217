"""validate: reject graphs that cannot run, at compile time, naming the node.

Rule: every call's bound arguments fit its function's signature (a TypeError
names the node, as calling it would); every resource a node asks for exists in
the running runtime (when one runs); the graph is acyclic. Changes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import networkx as nx

from sluice.compiler.ir import Op, OpKind, Slot, topological_ops, unpack_template
from sluice.exceptions import InternalError

if TYPE_CHECKING:
    from sluice.executor.arity import Arity
    from sluice.executor.backend import Backend


class _Bound:
    """Stands in for a node's value while checking a signature."""

    def __repr__(self) -> str:
        return "<node value>"


def validate(graph: nx.DiGraph) -> nx.DiGraph:
    """Check arity, resources and acyclicity; returns ``graph`` itself (nothing changes)."""
    # First: every later pass (and this one's topological walk) assumes a DAG.
    if not nx.is_directed_acyclic_graph(graph):
        edges = nx.find_cycle(graph)
        names = [_op_name(graph, u) for u, _ in edges] + [_op_name(graph, edges[0][0])]
        raise InternalError(f"the logical graph has a cycle: {' -> '.join(names)}; graphs built "
                            "with .bind() cannot (building them refuses one), so this is a sluice "
                            "bug")
    signatures = graph.graph.get("signatures", {})
    driver = _driver()
    for op in topological_ops(graph):
        if op.kind in (OpKind.CALL, OpKind.ACTOR, OpKind.METHOD):
            _check_arity(op, signatures.get(op.id))
        if driver is not None and op.resources:
            driver.check_feasible(op.resources, f"graph node {op.name} ({op.id})")
    return graph


def _check_arity(op: Op, arity: Arity | None) -> None:
    if arity is None:
        return
    args, kwargs = unpack_template(op.template)
    placeholder = _Bound()
    args = tuple(placeholder if type(a) is Slot else a for a in args)
    kwargs = {k: placeholder if type(v) is Slot else v for k, v in kwargs.items()}
    why = arity.problem(args, kwargs)
    if why is not None:
        what = "constructor of" if op.kind is OpKind.ACTOR else ""
        raise TypeError(f"graph node {op.name} ({op.id}): the arguments given to .bind() do not "
                        f"fit the {what + ' ' if what else ''}signature {arity.label}{arity.text}: "
                        f"{why}; fix the .bind(...) call")


def _op_name(graph: nx.DiGraph, op_id: str) -> str:
    op = graph.nodes[op_id].get("op")
    return f"{op.name} ({op_id})" if op is not None else op_id


def _driver() -> Backend | None:
    """The running driver's backend, which checks resource demands; None without one (the
    compiler runs without a runtime) and inside tasks (the driver checks at submission)."""
    from sluice.executor import context

    rt = context.current()
    return rt if rt is not None and rt.is_driver else None
