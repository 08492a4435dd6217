"""GRAPH_KEYS documents every key a logical graph holds by the time it is lowered.

The graphs handed to ``lower`` carry every key the front ends and the passes set (a
pass copies its input's keys and adds its own). Representative DAGs exercise each
pass that changes something, and a ``sluice.data`` pipeline the data planner's path.
Compiler-only: no runtime is started.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import sluice
import sluice.data
from sluice.compiler import pipeline
from sluice.compiler.ir import GRAPH_KEYS
from sluice.dsl.nodes import InputNode, MultiOutputNode
from sluice.libs.data import planner
from tests.compiler.dag_example import inc, make_dag

pytestmark = pytest.mark.usefixtures("no_runtime_started")

# Given by the caller that compiles, not set by a front end or a pass.
SUPPLIED_BY_CALLERS = {"sizes"}


@sluice.remote(num_gpus=1)
def on_gpu(x: int) -> int:
    return x


@sluice.remote(jit=True)
def doubled(x: float) -> float:
    return 2 * x


def gpu_dag() -> Any:
    with InputNode() as inp:
        return inc.bind(on_gpu.bind(inc.bind(inp)))


def jit_dag() -> Any:
    with InputNode() as inp:
        return doubled.bind(doubled.bind(inp))


def repeated_dag() -> Any:
    with InputNode() as inp:
        return MultiOutputNode([inc.bind(inp), inc.bind(inp)])


def dataset() -> Any:
    return (sluice.data.range(100).map(lambda row: {"id": row["id"] + 1})
            .random_shuffle().limit(10))


def lowered_graphs(monkeypatch: pytest.MonkeyPatch, build: Callable[[], None]) -> list[dict]:
    """The ``graph.graph`` of every graph lowered while ``build()`` compiles."""
    seen: list[dict] = []
    for module in (pipeline, planner):
        real = module.lower

        def recording(graph: Any, *args: Any, _real: Any = real, **kwargs: Any) -> Any:
            seen.append(dict(graph.graph))
            return _real(graph, *args, **kwargs)

        monkeypatch.setattr(module, "lower", recording)
    build()
    return seen


def test_every_graph_key_the_front_ends_and_passes_set_is_documented(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def compile_everything() -> None:
        for make in (make_dag, gpu_dag, jit_dag, repeated_dag):
            make().compile()
            make().compile(optimize=False)
        dataset()._plan()
        dataset()._plan(optimize=False)

    graphs = lowered_graphs(monkeypatch, compile_everything)
    assert len(graphs) == 10
    keys = set().union(*graphs)
    undocumented = keys - set(GRAPH_KEYS)
    assert not undocumented, (f"graph keys {sorted(undocumented)} are set but not documented; "
                              "add them to GRAPH_KEYS in sluice/compiler/ir.py")
    # Every pass that can change these graphs did, so its keys were seen.
    passes = {name for attrs in graphs for name in attrs["passes"]}
    assert {"cse", "gpu_placement", "fusion", "numba_fusion"} <= passes
    # And GRAPH_KEYS lists nothing that no one sets.
    assert set(GRAPH_KEYS) - keys <= SUPPLIED_BY_CALLERS


def test_a_key_that_no_one_documented_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def compile_with_a_new_key() -> None:
        real = pipeline.place_stages

        def place_and_mark(graph: Any, *args: Any) -> Any:
            out = real(graph, *args)
            out.graph["hint"] = True
            return out

        monkeypatch.setattr(pipeline, "place_stages", place_and_mark)
        make_dag().compile()

    (attrs,) = lowered_graphs(monkeypatch, compile_with_a_new_key)
    assert set(attrs) - set(GRAPH_KEYS) == {"hint"}
