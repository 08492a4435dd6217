"""DAG fixtures shared by the compiler tests, and an example pipeline.

* The example pipeline (``dag``, ``make_dag``), for ``sluice plan`` (see
  tests/test_cli.py), the backends' conformance tests and reading plans: ``load``
  feeds two branches that join in ``combine`` (a diamond: those edges cannot
  fuse), then ``scale -> shift`` is a linear chain that fuses into ``combine``'s
  stage; a ``Tally`` actor keeps a running total of the results.
* Small remote functions and an actor to ``.bind()`` graphs from: ``inc``,
  ``add``, ``Counter``.
* Builders of tiny literal logical graphs for testing one pass at a time: ``op``,
  ``graph_of``, and ``snapshot`` to check that a pass leaves its input alone.
"""

from __future__ import annotations

import os
from typing import Any

import networkx as nx

import sluice
from sluice import InputNode, MultiOutputNode
from sluice.compiler.ir import Op, OpKind, make_op, new_graph, ops_of

CPU1 = (("CPU", 1.0),)
GPU1 = (("CPU", 1.0), ("GPU", 1.0))


@sluice.remote
def load(n: int) -> list[int]:
    """The numbers 0..n-1."""
    return list(range(n))


@sluice.remote
def evens(xs: list[int]) -> list[int]:
    """The even numbers of ``xs``."""
    return [x for x in xs if x % 2 == 0]


@sluice.remote
def odds(xs: list[int]) -> list[int]:
    """The odd numbers of ``xs``."""
    return [x for x in xs if x % 2 == 1]


@sluice.remote
def combine(a: list[int], b: list[int]) -> int:
    """sum(a) - sum(b)."""
    return sum(a) - sum(b)


@sluice.remote
def scale(x: int) -> int:
    """10 * x."""
    return 10 * x


@sluice.remote
def shift(x: int) -> int:
    """x + 1."""
    return x + 1


@sluice.remote
class Tally:
    """A running total across executions of the plan."""

    def __init__(self) -> None:
        self.total = 0

    def add(self, x: int) -> int:
        """Add ``x``; return the running total."""
        self.total += x
        return self.total


def make_dag() -> MultiOutputNode:
    """The example DAG: ``[shift(scale(combine(evens(xs), odds(xs)))), tally.add(that)]``."""
    with InputNode() as n:
        xs = load.bind(n)
        result = shift.bind(scale.bind(combine.bind(evens.bind(xs), odds.bind(xs))))
        tally = Tally.bind()
        return MultiOutputNode([result, tally.add.bind(result)])


dag = make_dag()


# -- remote functions and an actor to bind graphs from ------------------------------------------

@sluice.remote
def inc(x: int) -> int:
    """x + 1."""
    return x + 1


@sluice.remote
def add(a: int, b: int) -> int:
    """a + b."""
    return a + b


@sluice.remote
class Counter:
    """A running total from ``start``."""

    def __init__(self, start: int = 0) -> None:
        self.n = start

    def add(self, k: int) -> int:
        """Add ``k``; return the total."""
        self.n += k
        return self.n

    def pid(self) -> int:
        """The process the actor lives in."""
        return os.getpid()


# -- tiny literal graphs ------------------------------------------------------------------------

def op(kind: OpKind, name: str, *inputs: Op, ordinal: int = 0, **fields: Any) -> Op:
    """An op reading ``inputs``; a CALL or TRANSFER asks for one CPU unless ``resources`` is given."""
    if kind in (OpKind.CALL, OpKind.TRANSFER):
        fields.setdefault("resources", CPU1)
    return make_op(kind, name, ordinal, inputs=tuple(i.id for i in inputs), **fields)


def graph_of(*ops: Op, stages: dict[Op, Op | str] | None = None, outputs: tuple[Op, ...] = (),
             functions: dict[int, bytes] | None = None, **attrs: Any) -> nx.DiGraph:
    """A logical graph of ``ops`` as the front end leaves it; ``stages`` maps ops to their
    stage (its first op, or a name; the others stand alone); the outputs default to the last
    op; ``attrs`` add or replace graph attributes."""
    stage_of = {o.id: s if isinstance(s, str) else s.id for o, s in (stages or {}).items()}
    return new_graph(list(ops), {
        "outputs": tuple(o.id for o in outputs or ops[-1:]), "functions": functions or {},
        "passes": (), "stages": stage_of,
        "blocked": {}, "placement": {}, "multi_output": len(outputs) > 1, **attrs})


def snapshot(graph: nx.DiGraph) -> tuple:
    """Everything a pass could change in place: ops (with content), edges, graph attributes."""
    ops = sorted((o.id, o, o.content) for o in ops_of(graph).values())
    return ops, sorted(graph.edges), dict(graph.graph)
