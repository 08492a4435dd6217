"""numba fusion: only stages that are linear chains of jit=True calls compile."""

from __future__ import annotations

import networkx as nx
import numpy as np

from sluice.compiler import jit
from sluice.compiler.ir import Op, OpKind, Slot, make_op, pack_template
from sluice.compiler.passes.numba_fusion import fuse_numba
from sluice.executor.calls import dumps_function, load_function
from tests.compiler.dag_example import graph_of, op, snapshot


def square(x):
    return x * x


def add(x, k):
    return x + k


def total(x):
    return x.sum()


FUNCTIONS = dict(dumps_function(fn, fn.__name__) for fn in (square, add, total))
FN_ID = {load_function(data).__name__: fid for fid, data in FUNCTIONS.items()}

INP = make_op(OpKind.INPUT, "input")


def call(name: str, *inputs: Op, args: tuple | None = None, jit_on: bool = True,
         fn: str = "square", **fields) -> Op:
    template = pack_template(args, {}) if args is not None else b""
    return op(OpKind.CALL, name, *inputs, fn_id=FN_ID[fn], template=template, jit=jit_on,
              **fields)


def jit_graph(*ops: Op, stages: dict[Op, str]) -> nx.DiGraph:
    """A graph of ``ops`` (the last one its output) that holds the functions above."""
    return graph_of(*ops, stages=stages, functions=dict(FUNCTIONS))


def chain_graph(jit_flags=(True, True, True)) -> tuple[list[Op], nx.DiGraph]:
    """input -> square -> add(., 1.0) -> total, the three calls fused into stage s1."""
    a = call("square", INP, jit_on=jit_flags[0])
    b = call("add", a, args=(Slot(0), 1.0), fn="add", jit_on=jit_flags[1])
    c = call("total", b, fn="total", jit_on=jit_flags[2])
    return [a, b, c], jit_graph(INP, a, b, c, stages={INP: "s0", a: "s1", b: "s1", c: "s1"})


def test_all_jit_linear_stage_is_recorded_in_chain_order() -> None:
    (a, b, c), g = chain_graph()
    out = fuse_numba(g)
    assert out.graph["jit_stages"] == {"s1": (a.id, b.id, c.id)}
    assert out.graph["passes"] == ("numba_fusion",)
    assert out.graph["jit_blocked"] == {}


def test_recorded_stage_runs_as_one_compiled_chain() -> None:
    _, g = chain_graph()
    out = fuse_numba(g)
    ops = [out.nodes[i]["op"] for i in out.graph["jit_stages"]["s1"]]
    functions = {fid: load_function(data) for fid, data in out.graph["functions"].items()}
    chain = jit.compile_chain(jit.chain_steps(ops, functions))
    x = np.arange(5.0)
    assert chain(x) == total(add(square(x), 1.0))
    assert len(chain.dispatcher.signatures) == 1


def test_stage_with_a_python_op_is_not_compiled() -> None:
    _, g = chain_graph(jit_flags=(True, False, True))
    out = fuse_numba(g)
    assert out.graph["jit_stages"] == {}
    assert out.graph["jit_blocked"] == {"s1": "add has jit=False"}
    assert out.graph["passes"] == ()


def test_single_jit_op_compiles_as_a_one_op_stage() -> None:
    a = call("square", INP)
    b = call("add", a, args=(Slot(0), 2), fn="add", jit_on=False)
    out = fuse_numba(jit_graph(INP, a, b, stages={INP: "s0", a: "s1", b: "s2"}))
    assert out.graph["jit_stages"] == {"s1": (a.id,)}
    unstaged = fuse_numba(jit_graph(INP, a, stages={}))
    assert unstaged.graph["jit_stages"] == {a.id: (a.id,)}  # no stage entry: its own stage


def test_op_reading_more_than_the_previous_value_breaks_the_chain() -> None:
    a = call("square", INP)
    b = call("add", a, INP, args=(Slot(0), Slot(1)), fn="add")
    out = fuse_numba(jit_graph(INP, a, b, stages={INP: "s0", a: "s1", b: "s1"}))
    assert out.graph["jit_stages"] == {}
    assert out.graph["jit_blocked"]["s1"].startswith("add does not read square's value alone")


def test_previous_value_not_first_breaks_the_chain() -> None:
    a = call("square", INP)
    b = call("add", a, args=(1.0, Slot(0)), fn="add")
    out = fuse_numba(jit_graph(INP, a, b, stages={INP: "s0", a: "s1", b: "s1"}))
    assert "s1" in out.graph["jit_blocked"] and out.graph["jit_stages"] == {}


def test_value_used_outside_the_stage_breaks_the_chain() -> None:
    (a, _, c), g = chain_graph()
    g.graph["outputs"] = (a.id, c.id)
    out = fuse_numba(g)
    assert out.graph["jit_blocked"] == {"s1": "square's value is also used outside the chain"}


def test_gpu_and_non_call_ops_do_not_compile() -> None:
    a = call("square", INP, device="gpu", resources=(("GPU", 1.0),))
    out = fuse_numba(jit_graph(INP, a, stages={INP: "s0", a: "s1"}))
    assert out.graph["jit_blocked"] == {"s1": "square runs on the gpu; numba compiles for the CPU"}
    b = call("square", INP)
    both = fuse_numba(jit_graph(INP, b, stages={INP: "s1", b: "s1"}))
    assert both.graph["jit_blocked"] == {
        "s1": "input is not a remote function call (input op); only calls compile"}


def test_input_graph_is_unchanged_and_rerun_records_nothing_new() -> None:
    _, g = chain_graph()
    before = snapshot(g)
    once = fuse_numba(g)
    assert snapshot(g) == before
    assert "jit_stages" not in g.graph
    assert fuse_numba(once).graph["passes"] == ("numba_fusion",)


def test_graph_without_jit_ops_is_left_alone() -> None:
    _, g = chain_graph(jit_flags=(False, False, False))
    out = fuse_numba(g)
    assert out.graph["jit_stages"] == {} and out.graph["jit_blocked"] == {}
    assert out.graph["passes"] == ()
    assert sorted(out.edges) == sorted(g.edges)
