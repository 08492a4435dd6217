"""validate: reject graphs that cannot run, at compile time, naming the node.

Rule: every call's bound arguments fit its function's signature (a TypeError
names the node, as calling it would); every resource a node asks for exists in
the running runtime (when one runs); the graph is acyclic. Changes nothing.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

import networkx as nx

from sluice.compiler.ir import Op, OpKind, Slot, topological_ops, unpack_template
from sluice.exceptions import InternalError

if TYPE_CHECKING:
    from sluice.executor.backend import Backend


class _Bound:
    """Stands in for a node's value while checking a signature."""

    def __repr__(self) -> str:
        return "<node value>"


def validate(graph: nx.DiGraph) -> nx.DiGraph:
    """Check arity, resources and acyclicity; returns ``graph`` itself (nothing changes)."""
    if not nx.is_directed_acyclic_graph(graph):
        cycle = nx.find_cycle(graph)
        raise InternalError(f"the logical graph has a cycle through {cycle}; graphs built "
                            "with .bind() cannot, so this is a sluice bug")
    signatures = graph.graph.get("signatures", {})
    driver = _driver()
    for op in topological_ops(graph):
        if op.kind in (OpKind.CALL, OpKind.ACTOR, OpKind.METHOD):
            _check_arity(op, signatures.get(op.id))
        if driver is not None and op.resources:
            driver.check_feasible(op.resources, f"graph node {op.name} ({op.id})")
    return graph


def _check_arity(op: Op, signature: inspect.Signature | None) -> None:
    if signature is None:
        return
    args, kwargs = unpack_template(op.template)
    placeholder = _Bound()
    args = tuple(placeholder if type(a) is Slot else a for a in args)
    kwargs = {k: placeholder if type(v) is Slot else v for k, v in kwargs.items()}
    try:
        signature.bind(*args, **kwargs)
    except TypeError as err:
        what = "constructor of" if op.kind is OpKind.ACTOR else ""
        raise TypeError(f"graph node {op.name} ({op.id}): the arguments given to .bind() do not "
                        f"fit the {what + ' ' if what else ''}signature {op.name}{signature}: {err}; "
                        "fix the .bind(...) call") from None


def _driver() -> Backend | None:
    """The running driver's backend, which checks resource demands; None without one (the
    compiler runs without a runtime) and inside tasks (the driver checks at submission)."""
    from sluice.executor import context

    rt = context.current()
    return rt if rt is not None and rt.is_driver else None
