"""An example pipeline for ``sluice plan`` (see tests/test_cli.py) and for reading plans.

``load`` feeds two branches that join in ``combine`` (a diamond: those edges
cannot fuse), then ``scale -> shift`` is a linear chain that fuses into
``combine``'s stage; a ``Tally`` actor keeps a running total of the results.
"""

from __future__ import annotations

import sluice
from sluice import InputNode, MultiOutputNode


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
