"""lower: the optimized logical graph becomes the Plan's stages, front to back.

Each stage holds the ops of one fusion group in topological order; its inputs
are the ops of *other* stages it reads; its output is its last op; stages are
listed in a topological order, so a Plan runs front to back. Compiler-only:
plans are also run here in this process (``run_plan_in_process``), stage by
stage in Plan order, with the same ``StageFunction`` a worker runs.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sluice
from sluice.compiler.ir import OpKind, fill_slots, unpack_template
from sluice.compiler.lower import lower
from sluice.compiler.plan import Plan, stage_id
from sluice.compiler.run import DAGInput, StageFunction
from sluice.dsl.nodes import InputNode, MultiOutputNode
from sluice.executor.calls import load_function
from tests.compiler.dag_example import add, graph_of, op
from tests.dsl.test_to_graph import DagSpec, dag_specs

pytestmark = pytest.mark.usefixtures("no_runtime_started")
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, database=None)


def run_plan_in_process(plan: Plan, *args: Any, **kwargs: Any) -> Any:
    """Run ``plan`` stage by stage, in its order, in this process; returns output values.

    A stage whose input is not computed yet raises KeyError, as ``execute_plan``
    does: the Plan's order is all either has to go by.
    """
    functions = dict(plan.functions)
    dag_input = DAGInput(args, kwargs)
    values: dict[str, Any] = {}
    for stage in plan.stages:
        op = stage.ops[0]
        inputs = [values[i] for i in stage.inputs]
        if stage.kind is OpKind.INPUT:
            values[stage.output] = dag_input.stage_value()
        elif stage.kind is OpKind.SELECT:
            values[stage.output] = dag_input.select(op.key)
        elif stage.kind is OpKind.ACTOR:
            cls = load_function(functions[op.fn_id])
            call_args, call_kwargs = unpack_template(op.template)
            values[stage.output] = cls(*fill_slots(call_args, inputs), **fill_slots(call_kwargs, inputs))
        elif stage.kind is OpKind.METHOD:
            call_args, call_kwargs = unpack_template(op.template)
            slots = [None] + inputs[1:]
            values[stage.output] = getattr(inputs[0], op.method)(
                *fill_slots(call_args, slots), **fill_slots(call_kwargs, slots))
        else:
            needed = {o.fn_id: functions[o.fn_id] for o in stage.ops if o.fn_id}
            task = StageFunction(stage.ops, stage.inputs, needed, stage.id in plan.jit_stages)
            values[stage.output] = task(*inputs)
    outs = [values[o] for o in plan.outputs]
    return outs if plan.multi_output else outs[0]


def assert_runs_front_to_back(plan: Plan) -> None:
    done: set[str] = set()
    for stage in plan.stages:
        late = [i for i in stage.inputs if i not in done]
        assert not late, f"stage {stage.name} comes before the stages computing its inputs {late}"
        done.update(op.id for op in stage.ops)


# -- tiny literal graphs ----------------------------------------------------------------------

def test_without_fusion_each_op_is_its_own_stage_in_topological_order() -> None:
    inp = op(OpKind.INPUT, "input")
    a = op(OpKind.CALL, "a", inp, fn_id=1)
    b = op(OpKind.CALL, "b", a, fn_id=1)
    plan = lower(graph_of(inp, a, b), optimized=False)
    assert [s.ops for s in plan.stages] == [(inp,), (a,), (b,)]
    assert [s.inputs for s in plan.stages] == [(), (inp.id,), (a.id,)]
    assert [s.output for s in plan.stages] == [inp.id, a.id, b.id]
    assert [s.kind for s in plan.stages] == [OpKind.INPUT, OpKind.CALL, OpKind.CALL]
    assert plan.optimized is False
    assert plan.outputs == (b.id,) and plan.multi_output is False


def test_a_fused_group_is_one_stage_reading_only_other_stages() -> None:
    inp = op(OpKind.INPUT, "input")
    a = op(OpKind.CALL, "a", inp)
    b = op(OpKind.CALL, "b", a, inp)
    c = op(OpKind.CALL, "c", b)
    d = op(OpKind.CALL, "d", c, resources=(("CPU", 2.0),))
    plan = lower(graph_of(inp, a, b, c, d, stages={a: a, b: a, c: a}))
    _, chain, last = plan.stages
    assert chain.ops == (a, b, c)
    assert chain.inputs == (inp.id,)  # once, though two members read it
    assert chain.output == c.id and chain.fused and chain.name == "a+b+c"
    assert chain.id == stage_id((a, b, c))
    assert last.inputs == (c.id,) and last.resources == (("CPU", 2.0),)
    assert_runs_front_to_back(plan)


def test_a_stage_takes_resources_device_and_placement_from_its_first_op() -> None:
    gpu = (("CPU", 1.0), ("GPU", 1.0))
    a = op(OpKind.CALL, "a", resources=gpu, device="gpu")
    b = op(OpKind.CALL, "b", a, resources=gpu, device="gpu")
    plan = lower(graph_of(a, b, stages={a: a, b: a}, placement={a.id: "node-2", b.id: "node-2"}))
    (stage,) = plan.stages
    assert (stage.resources, stage.device, stage.placement) == (gpu, "gpu", "node-2")
    assert lower(graph_of(a, b)).stages[0].placement == "local"  # no placement given


def test_the_functions_table_holds_only_functions_the_plan_calls() -> None:
    a = op(OpKind.CALL, "a", fn_id=11)
    b = op(OpKind.CALL, "b", a, fn_id=12)
    plan = lower(graph_of(a, b, functions={11: b"eleven", 12: b"twelve", 13: b"unused"}))
    assert plan.functions == ((11, b"eleven"), (12, b"twelve"))
    assert plan.function(12) == b"twelve"


def test_blocked_edges_and_logical_edges_are_recorded_sorted() -> None:
    a = op(OpKind.CALL, "a")
    b = op(OpKind.CALL, "b", a)
    c = op(OpKind.CALL, "c", a)
    graph = graph_of(a, b, c, outputs=(b, c))
    graph.graph["blocked"] = {(a.id, c.id): "rule two", (a.id, b.id): "rule one"}
    graph.graph["passes"] = ("cse",)
    plan = lower(graph)
    assert plan.blocked == tuple(sorted([(a.id, b.id, "rule one"), (a.id, c.id, "rule two")]))
    assert plan.logical_edges == tuple(sorted([(a.id, b.id), (a.id, c.id)]))
    assert plan.passes == ("cse",) and plan.multi_output is True


def test_a_fused_stage_comes_after_every_stage_it_reads() -> None:
    # The chain's first op needs nothing and its id sorts before "input": the stage
    # must still wait for the input that its second op reads.
    inp = op(OpKind.INPUT, "input")
    const = op(OpKind.CALL, "const")
    use = op(OpKind.CALL, "use", const, inp)
    assert const.id < inp.id
    plan = lower(graph_of(inp, const, use, stages={const: const, use: const}))
    assert_runs_front_to_back(plan)


# -- through .bind() and compile() -------------------------------------------------------------

@sluice.remote
def double(x: int) -> int:
    return 2 * x


@sluice.remote
def five() -> int:
    return 5


def test_a_chain_reading_two_selectors_runs_in_plan_order() -> None:
    with InputNode() as inp:
        dag = add.bind(double.bind(inp[0]), inp[1])
    plan = dag.compile()
    assert [s.name for s in plan.stages if s.kind is OpKind.CALL] == ["double+add"]
    assert_runs_front_to_back(plan)
    assert run_plan_in_process(plan, 2, 5) == 9


def test_a_chain_from_a_constant_call_into_the_input_runs_in_plan_order() -> None:
    with InputNode() as inp:
        dag = add.bind(five.bind(), inp)
    plan = dag.compile()
    assert_runs_front_to_back(plan)
    assert run_plan_in_process(plan, 1) == 6


def test_only_used_functions_survive_cse() -> None:
    with InputNode() as inp:
        dag = MultiOutputNode([double.bind(inp), double.bind(inp), add.bind(inp, 1)])
    plan = dag.compile()
    called = {op.fn_id for stage in plan.stages for op in stage.ops if op.fn_id}
    assert {fn_id for fn_id, _ in plan.functions} == called and len(called) == 2
    assert run_plan_in_process(plan, 4) == [8, 8, 5]


@SETTINGS
@given(dag_specs())
def test_every_op_lands_in_exactly_one_stage_and_stages_run_front_to_back(spec: DagSpec) -> None:
    for optimize in (True, False):
        plan = spec.build().compile(optimize=optimize)
        members = [op.id for stage in plan.stages for op in stage.ops]
        assert len(members) == len(set(members))
        edges = set(plan.logical_edges)
        assert {u for u, _ in edges} | {v for _, v in edges} <= set(members)
        for stage in plan.stages:
            inside = {op.id for op in stage.ops}
            assert not inside & set(stage.inputs)
            assert stage.output == stage.ops[-1].id
            read = {i for op in stage.ops for i in op.inputs} - inside
            assert set(stage.inputs) == read
        assert_runs_front_to_back(plan)
        if not optimize:
            assert all(len(stage.ops) == 1 for stage in plan.stages)


@SETTINGS
@given(dag_specs(), st.integers(-3, 3))
def test_a_plan_computes_what_its_dag_means(spec: DagSpec, x: int) -> None:
    for optimize in (True, False):
        plan = spec.build().compile(optimize=optimize)
        got = run_plan_in_process(plan, x)
        assert (got if spec.multi_output else [got]) == spec.evaluate(x)
