"""The Plan: frozen, picklable data with content ids, equal across builds and processes.

Compiler-only: no runtime is started (test_run.py executes plans).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import sluice
from sluice.compiler.ir import OpKind, make_op
from sluice.compiler.plan import Plan, Stage, stage_id
from sluice.dsl.nodes import DAGNode, InputNode, MultiOutputNode
from tests.compiler.dag_example import Counter, add, inc

pytestmark = pytest.mark.usefixtures("no_runtime_started")
REPO_ROOT = Path(__file__).resolve().parents[2]


@sluice.remote(num_gpus=1)
def on_gpu(x: int) -> int:
    return x


def sample_dag() -> DAGNode:
    """A DAG with a fused chain, a diamond, a constant, a selector and an actor."""
    with InputNode() as inp:
        chain = inc.bind(inc.bind(inp[0]))
        counter = Counter.bind(10)
        return MultiOutputNode([add.bind(chain, inc.bind(chain)), counter.add.bind(inp[1]),
                                add.bind(inp[1], 100)])


def ids_of(plan: Plan) -> dict:
    return {"stages": [s.id for s in plan.stages], "ops": [op.id for s in plan.stages for op in s.ops],
            "outputs": list(plan.outputs)}


def test_the_same_dag_compiles_to_equal_plans_with_equal_ids() -> None:
    first, second = sample_dag().compile(), sample_dag().compile()
    assert first == second
    assert ids_of(first) == ids_of(second)
    dag = sample_dag()
    assert dag.compile() == dag.compile()


def test_stage_and_op_ids_are_equal_in_another_process() -> None:
    script = ("import json; from tests.compiler.test_plan import sample_dag, ids_of; "
              "print(json.dumps(ids_of(sample_dag().compile())))")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONHASHSEED": "12345"}
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == ids_of(sample_dag().compile())


def test_a_plan_is_frozen() -> None:
    plan = sample_dag().compile()
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.stages = ()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.stages[0].ops = ()  # type: ignore[misc]


def test_a_pickled_plan_is_equal_and_holds_no_run_state() -> None:
    plan = sample_dag().compile()
    copy = pickle.loads(pickle.dumps(plan))
    assert copy == plan and copy is not plan
    assert ids_of(copy) == ids_of(plan)
    assert set(vars(copy)) == {f.name for f in dataclasses.fields(Plan)}  # run state lives outside
    assert copy.functions == plan.functions


def test_stage_of_finds_the_stage_holding_an_op() -> None:
    plan = sample_dag().compile()
    for stage in plan.stages:
        for op in stage.ops:
            assert plan.stage_of(op.id) is stage
    with pytest.raises(KeyError, match=r"no stage holds op 'nope'"):
        plan.stage_of("nope")


def test_function_returns_the_pickled_function_or_names_the_missing_id() -> None:
    plan = sample_dag().compile()
    for fn_id, data in plan.functions:
        assert plan.function(fn_id) == data
    with pytest.raises(KeyError, match=r"function ff is not in this plan"):
        plan.function(0xFF)


def test_a_stage_is_named_by_its_ops_and_identified_by_their_ids() -> None:
    a = make_op(OpKind.CALL, "a")
    b = make_op(OpKind.CALL, "b", inputs=(a.id,))
    fused = Stage(id=stage_id((a, b)), kind=OpKind.CALL, ops=(a, b), inputs=(), output=b.id)
    single = Stage(id=stage_id((a,)), kind=OpKind.CALL, ops=(a,), inputs=(), output=a.id)
    assert fused.name == "a+b" and fused.fused
    assert single.name == "a" and not single.fused
    assert stage_id((a, b)) == stage_id((a, b)) != stage_id((b, a)) != stage_id((a,))
    assert stage_id((a,)).startswith("stage-")


def test_an_unoptimized_plan_has_one_stage_per_node_and_no_optimizing_passes() -> None:
    with InputNode() as inp:
        dag = MultiOutputNode([inc.bind(inc.bind(inp)), add.bind(inp, 1), add.bind(inp, 1)])
    plan = dag.compile(optimize=False)
    assert len(plan.stages) == 5  # the input and four calls (the equal ones stay apart)
    assert plan.optimized is False
    assert "cse" not in plan.passes and "fusion" not in plan.passes
    optimized = dag.compile()
    assert optimized.optimized is True and {"cse", "fusion"} <= set(optimized.passes)


def test_a_gpu_function_stage_carries_gpu_resources_and_device() -> None:
    with InputNode() as inp:
        dag = inc.bind(on_gpu.bind(inc.bind(inp)))
    plan = dag.compile()
    gpu_stage = next(s for s in plan.stages if any(op.name == "on_gpu" for op in s.ops))
    assert dict(gpu_stage.resources) == {"CPU": 1.0, "GPU": 1.0}
    assert gpu_stage.device == "gpu"
    assert all(op.name != "inc" for op in gpu_stage.ops)  # different resources: not fused
    cpu_stages = [s for s in plan.stages if any(op.name == "inc" for op in s.ops)]
    assert len(cpu_stages) == 2
    assert all(s.device == "cpu" and dict(s.resources) == {"CPU": 1.0} for s in cpu_stages)
