"""numba fusion: a stage made of a chain of ``jit=True`` calls runs as one compiled function.

Legality rule: compiling never changes what a stage computes. A stage (ops
sharing a name in ``graph.graph["stages"]``; an op with no entry is a stage of
its own, named by its op id) compiles when

- every op is a CALL with ``jit=True`` on the CPU (numba compiles for the CPU;
  GPU stages, transfers, selects and actor calls keep their Python code),
- the ops form a linear chain: each op after the first reads only the previous
  op's value, as its first positional argument, with constants after it and no
  keyword arguments (``jit.chained_constants``); the first op takes no keyword
  arguments either,
- no value but the last leaves the chain (no other reader, not a graph output,
  one return value), so compiling the middle away loses nothing.

A single ``jit=True`` op is a one-op chain. The pass only records facts:
``graph.graph["jit_stages"]`` maps each compiled stage's name to its op ids in
chain order (the worker runs ``jit.compile_chain(jit.chain_steps(ops, fns))``);
``graph.graph["jit_blocked"]`` maps each stage that holds a ``jit=True`` op but
does not compile to the rule it broke. Run it after fusion.
"""

from __future__ import annotations

from collections import defaultdict
from itertools import pairwise

import networkx as nx

from sluice.compiler.ir import Op, OpKind, topological_ops, unpack_template
from sluice.compiler.jit import chained_constants

PASS_NAME = "numba_fusion"


def fuse_numba(graph: nx.DiGraph) -> nx.DiGraph:
    """A copy of ``graph`` with its compilable jit stages recorded in ``graph.graph["jit_stages"]``.

    Records ``"numba_fusion"`` in ``graph.graph["passes"]`` when a stage compiles
    that was not recorded before.
    """
    g = graph.copy()
    jit_stages: dict[str, tuple[str, ...]] = {}
    jit_blocked: dict[str, str] = {}
    for name, ops in stage_groups(g).items():
        if not any(op.jit for op in ops):
            continue
        reason = chain_break(g, ops)
        if reason is None:
            jit_stages[name] = tuple(op.id for op in ops)
        else:
            jit_blocked[name] = reason
    changed = bool(jit_stages) and jit_stages != graph.graph.get("jit_stages")
    g.graph["jit_stages"] = jit_stages
    g.graph["jit_blocked"] = jit_blocked
    if changed:
        g.graph["passes"] = (*g.graph.get("passes", ()), PASS_NAME)
    return g


def stage_groups(graph: nx.DiGraph) -> dict[str, list[Op]]:
    """Stage name -> its ops in topological order (an op without a stage is its own)."""
    stages = graph.graph.get("stages") or {}
    groups: dict[str, list[Op]] = defaultdict(list)
    for op in topological_ops(graph):
        groups[stages.get(op.id, op.id)].append(op)
    return dict(groups)


def chain_break(graph: nx.DiGraph, ops: list[Op]) -> str | None:
    """Why the stage ``ops`` cannot compile as one numba chain, or None when it can."""
    for op in ops:
        reason = _member_break(op)
        if reason:
            return reason
    if unpack_template(ops[0].template)[1]:
        return f"{ops[0].name} takes keyword arguments, which a compiled chain cannot pass"
    outputs = set(graph.graph.get("outputs", ()))
    for prev, op in pairwise(ops):
        if op.inputs != (prev.id,) or chained_constants(op) is None:
            return (f"{op.name} does not read {prev.name}'s value alone as its first argument "
                    "(constants after it, no keyword arguments)")
        if set(graph.successors(prev.id)) != {op.id} or prev.id in outputs or prev.num_returns != 1:
            return f"{prev.name}'s value is also used outside the chain"
    return None


def _member_break(op: Op) -> str | None:
    if op.kind is not OpKind.CALL:
        return f"{op.name} is not a remote function call ({op.kind.value} op); only calls compile"
    if not op.jit:
        return f"{op.name} has jit=False"
    if op.device != "cpu":
        return f"{op.name} runs on the {op.device}; numba compiles for the CPU"
    return None
