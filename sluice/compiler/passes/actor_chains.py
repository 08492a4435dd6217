"""actor_chains: runs of actor method calls that feed only each other, forwarded actor to actor.

Rule: a method call ``v`` *follows* the method call ``u`` (``u``'s value goes from
``u``'s actor straight to ``v``'s actor, never back to the driver) when
  * both return one value;
  * ``u``'s value is the only computed value ``v`` reads besides its actor (the
    execute() input and selectors do not count: they travel with the chain; a
    bound ObjectRef does, as its value is read where the call runs), and
    ``v`` reads it once, as a whole argument (positional or keyword), not inside
    a list, tuple or dict;
  * ``u``'s value is read by ``v`` alone and is not an output of the graph (so
    nothing else needs it stored).
A chain is a maximal run of calls each following the one before, at least two
long. Its first call takes the chain's *source*: its only argument besides its
actor (the input, a selector or any computed value), again whole; a first call
that reads more than one value leaves the chain, which then starts at the next.
Forwarding changes where values travel, never what is computed, so the pass
runs whether or not the graph is optimized.

The result is ``graph.graph["actor_chains"]`` (a tuple of :class:`ActorChain`) and
``graph.graph["not_chained"]`` (``(u, v) -> reason`` for every method-to-method
edge that did not chain), both copied into the Plan for ``explain()``; the
runner forwards exactly the chains the Plan lists.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import networkx as nx

from sluice.compiler.ir import ActorChain, Op, OpKind, Slot, ops_of, topological_ops, unpack_template

PASS_NAME = "actor_chains"

# One line of the rule, for explain().
RULE = ("a method call follows the call before it when that call's value is its only "
        "computed argument, passed whole, read by nothing else and not an output, and each "
        "returns one value")

_DRIVER_VALUES = (OpKind.INPUT, OpKind.SELECT)


def find_actor_chains(graph: nx.DiGraph) -> nx.DiGraph:
    """A copy of ``graph`` with ``actor_chains`` and ``not_chained`` set (see the module rule).

    A graph without method calls has nothing to chain: it comes back as it is
    (``lower`` reads both keys as empty).
    """
    ops = ops_of(graph)
    if not any(op.kind is OpKind.METHOD for op in ops.values()):
        return graph
    outputs = set(graph.graph["outputs"])
    follows: dict[str, tuple[str, int | str]] = {}  # op id -> (the call it follows, its slot)
    not_chained: dict[tuple[str, str], str] = {}
    for v in sorted(ops):
        op = ops[v]
        if op.kind is not OpKind.METHOD:
            continue
        link = chained_input(op, ops, from_driver=False)
        for u in dict.fromkeys(op.inputs[1:]):
            if ops[u].kind is not OpKind.METHOD:
                continue
            # ``u`` is computed, so a link found is ``u`` itself.
            reason = link if isinstance(link, str) else _reader_rule(graph, ops, u, outputs)
            if reason is None and isinstance(link, tuple):
                follows[v] = link
            elif reason is not None:
                not_chained[(u, v)] = reason
    order = {op.id: i for i, op in enumerate(topological_ops(graph))}
    chains = tuple(sorted(_chains(follows, ops), key=lambda c: order[c.ops[0]]))
    g = graph.copy()
    g.graph["actor_chains"] = chains
    g.graph["not_chained"] = not_chained
    if chains:
        g.graph["passes"] = (*graph.graph.get("passes", ()), PASS_NAME)
    return g


def _reader_rule(graph: nx.DiGraph, ops: Mapping[str, Op], u: str,
                 outputs: set[str]) -> str | None:
    """Why ``u``'s value must come back to the driver, or None when it need not."""
    if ops[u].num_returns != 1:
        return f"{ops[u].name} returns {ops[u].num_returns} values"
    readers = graph.out_degree(u)
    if readers != 1:
        return f"multi-consumer: {ops[u].name} feeds {readers} ops, so its value must be stored"
    if u in outputs:
        return f"{ops[u].name} is an output of the graph, so its value must be stored"
    return None


def chained_input(op: Op, ops: Mapping[str, Op], from_driver: bool) -> tuple[str, int | str] | str:
    """(the input a method call takes its chained value from, its argument slot), or why none.

    ``from_driver``: the chain's first call, whose chained value may be the input or
    a selector too (it is then its only argument besides the actor).
    """
    if op.num_returns != 1:
        return f"{op.name} returns {op.num_returns} values"
    rest = op.inputs[1:]
    candidates = [i for i in rest if from_driver or ops[i].kind not in _DRIVER_VALUES]
    if len(candidates) != 1:
        return f"join: {op.name} reads {len(candidates)} computed values besides its actor"
    value = candidates[0]
    args, kwargs = unpack_template(op.template)
    index = rest.index(value) + 1
    uses = rest.count(value) if rest.count(value) != 1 else _slot_uses((args, kwargs), index)
    if uses != 1:
        return f"{op.name} reads the value {uses} times"
    for position, arg in enumerate(args):
        if type(arg) is Slot and arg.index == index:
            return value, position
    for key, arg in kwargs.items():
        if type(arg) is Slot and arg.index == index:
            return value, key
    return f"{op.name} takes the value inside a list, tuple or dict, not as a whole argument"


def _slot_uses(template: Any, index: int) -> int:
    """How many times ``Slot(index)`` appears in ``template``, nested containers too."""
    count, stack = 0, [template]
    while stack:
        value = stack.pop()
        if type(value) is Slot:
            count += value.index == index
        elif type(value) in (list, tuple):
            stack.extend(value)
        elif type(value) is dict:
            stack.extend(value.values())
    return count


def _chains(follows: Mapping[str, tuple[str, int | str]], ops: Mapping[str, Op]
            ) -> tuple[ActorChain, ...]:
    """Maximal runs of ``follows`` links, each from its first call that can take a source."""
    followed = {prev for prev, _ in follows.values()}
    chains = []
    for tail in sorted(v for v in follows if v not in followed):
        members = [tail]
        while members[-1] in follows:  # iterate back to the head: chains may be long
            members.append(follows[members[-1]][0])
        members.reverse()
        while len(members) >= 2:
            head = chained_input(ops[members[0]], ops, from_driver=True)
            if isinstance(head, tuple):
                source, slot = head
                slots = (slot, *(follows[m][1] for m in members[1:]))
                chains.append(ActorChain(source=source, ops=tuple(members), slots=slots))
                break
            # The first call reads several values: it runs on its own; the next one
            # takes its value as the chain's source.
            members.pop(0)
    return tuple(chains)
