"""Executing plans on the local runtime: selectors, actors, CSE at run time, pickled
plans, errors, GPUs (logical), leaks and a 10,000-node chain.

One runtime for the module (two CPUs, one logical GPU), shut down at its end.
"""

from __future__ import annotations

import gc
import os
import pickle
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sluice
from sluice.compiler.ir import OpKind, make_op
from sluice.compiler.plan import Stage, stage_id
from sluice.compiler.run import DAGInput, actor_options, task_options
from sluice.dsl.nodes import DAGNode, InputNode, MultiOutputNode
from sluice.exceptions import InfeasibleResourceError, TaskError
from sluice.executor import context
from sluice.executor.strategies import NodeAffinitySchedulingStrategy
from tests.compiler.dag_example import Counter, add, inc
from tests.dsl.test_to_graph import DagSpec, dag_specs


@pytest.fixture(scope="module", autouse=True)
def runtime() -> Iterator[None]:
    # The record of ended tasks (the state API's) is a bounded ring, 100,000 by default;
    # kept small here so that the memory tests measure everything else.
    os.environ["SLUICE_TASK_EVENTS_MAX"] = "1000"
    try:
        sluice.init(num_cpus=2, num_gpus=1)
    finally:
        del os.environ["SLUICE_TASK_EVENTS_MAX"]
    yield
    sluice.shutdown()


@sluice.remote
def scale(x: int, by: int = 2, *, plus: int = 0) -> int:
    return x * by + plus


@sluice.remote
def echo(*args: Any, **kwargs: Any) -> tuple:
    return args, kwargs


@sluice.remote
def tag(trail: list) -> list:
    """Appends the pid of the process it runs in."""
    return [*trail, os.getpid()]


@sluice.remote
def record(path: str, x: int) -> int:
    """Appends a line to ``path`` each time it runs (how tests count runs)."""
    with open(path, "a") as f:
        f.write(f"{x}\n")
    return 10 * x


@sluice.remote
def boom(x: int) -> int:
    raise ValueError(f"bad input {x}")


@sluice.remote
def payload(x: int) -> np.ndarray:
    return np.full(16_000, x, dtype=np.float64)  # 128 kB: past the inline limit, into shm


@sluice.remote(num_gpus=1)
def visible_gpus(x: int) -> tuple:
    return os.environ.get("CUDA_VISIBLE_DEVICES"), sluice.get_gpu_ids(), x


def runs(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def call_stages(dag: DAGNode, optimize: bool = True) -> int:
    return sum(1 for s in dag.compile(optimize=optimize).stages if s.kind is OpKind.CALL)


# -- results ----------------------------------------------------------------------------------

def test_execute_returns_a_ref_and_a_fused_chain_runs_as_one_task() -> None:
    with InputNode() as inp:
        dag = tag.bind(tag.bind(tag.bind(inp)))
    assert call_stages(dag) == 1
    ref = dag.execute([])
    assert isinstance(ref, sluice.ObjectRef)
    pids = sluice.get(ref)
    assert len(pids) == 3 and len(set(pids)) == 1 and pids[0] != os.getpid()


def test_a_multi_output_node_returns_a_list_of_refs() -> None:
    with InputNode() as inp:
        a = inc.bind(inp)
        dag = MultiOutputNode([a, scale.bind(a), inc.bind(a)])
    refs = dag.execute(1)
    assert isinstance(refs, list) and all(isinstance(r, sluice.ObjectRef) for r in refs)
    assert sluice.get(refs) == [2, 4, 3]


def test_constants_and_keyword_arguments_reach_the_function() -> None:
    with InputNode() as inp:
        dag = scale.bind(inp, 3, plus=scale.bind(inp, by=10))
    assert sluice.get(dag.execute(2)) == 2 * 3 + 20


def test_nodes_nested_in_lists_dicts_and_tuples_are_resolved_to_values() -> None:
    with InputNode() as inp:
        a, b = inc.bind(inp), scale.bind(inp)
        dag = echo.bind([a, {"k": b, "c": "const"}], t=(a, [b]))
    assert sluice.get(dag.execute(5)) == (([6, {"k": 10, "c": "const"}],), {"t": (6, [10])})


@pytest.mark.parametrize("optimize", [True, False])
def test_a_diamond_computes_the_same_with_and_without_optimization(optimize: bool) -> None:
    with InputNode() as inp:
        top = inc.bind(inp)
        dag = add.bind(scale.bind(top), inc.bind(top))
    plan = dag.compile(optimize=optimize)
    assert [sluice.get(plan.execute(x)) for x in range(3)] == [2 * (x + 1) + (x + 2) for x in range(3)]


# -- selectors ---------------------------------------------------------------------------------

def test_positional_arguments_are_selected_by_index() -> None:
    with InputNode() as inp:
        dag = add.bind(inp[0], scale.bind(inp[1]))
    assert sluice.get(dag.execute(2, 5)) == 12


def test_a_fused_chain_may_read_a_selector_after_its_first_op() -> None:
    # add(inp[0], 1) -> add(., inp[1]) fuse into one stage that reads both selectors.
    with InputNode() as inp:
        dag = add.bind(add.bind(inp[0], 1), inp[1])
    assert call_stages(dag) == 1
    assert sluice.get(dag.execute(2, 5)) == 8


def test_keyword_arguments_are_selected_by_attribute_or_key() -> None:
    with InputNode() as inp:
        dag = MultiOutputNode([inc.bind(inp.a), scale.bind(inp["a"]), add.bind(inp.a, inp["b"])])
    assert sluice.get(dag.execute(a=1, b=10)) == [2, 2, 11]


def test_a_single_positional_argument_is_the_input_itself() -> None:
    with InputNode() as inp:
        dag = echo.bind(inp)
    assert sluice.get(dag.execute([1, 2])) == (([1, 2],), {})
    assert sluice.get(dag.execute({"k": 3})) == (({"k": 3},), {})


def test_a_key_of_a_single_dict_argument_indexes_it() -> None:
    with InputNode() as inp:
        dag = add.bind(inp["k"], inp["j"])
    assert sluice.get(dag.execute({"k": 3, "j": 4})) == 7


def test_an_attribute_of_a_single_argument_is_read() -> None:
    class Point:
        def __init__(self, x: int):
            self.x = x

    with InputNode() as inp:
        dag = inc.bind(inp.x)
    assert sluice.get(dag.execute(Point(41))) == 42


def test_a_missing_keyword_argument_names_the_remedy() -> None:
    dag_input = DAGInput((1, 2), {})
    with pytest.raises(AttributeError, match=r"^the graph reads inp\.a but execute\(\) was given 2 "
                                             r"arguments; call execute\(a=\.\.\.\) or pass one value "
                                             r"that has an attribute 'a'$"):
        dag_input.select(("attr", "a"))
    with pytest.raises(KeyError, match=r"the graph reads inp\['a'\] but execute\(\) was given 2 "
                                       r"arguments; call execute\(a=\.\.\.\) or pass one value that has "
                                       r"an item 'a'"):
        dag_input.select(("item", "a"))


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(st.lists(st.integers(), min_size=2, max_size=4), st.dictionaries(
    st.sampled_from(["a", "b", "c"]), st.integers(), max_size=3))
def test_dag_input_selects_the_argument_it_names(args: list[int], kwargs: dict[str, int]) -> None:
    dag_input = DAGInput(tuple(args), kwargs)
    with pytest.raises(TypeError, match=rf"^execute\(\) was given {len(args)} arguments"):
        dag_input.value()  # several arguments: the bare input is none of them
    for i in range(-len(args), len(args)):
        assert dag_input.select(("item", i)) == args[i]
    for key, value in kwargs.items():
        assert dag_input.select(("item", key)) == value == dag_input.select(("attr", key))


# -- what execute() is given against what the graph reads (checked before any task) ------------

@pytest.fixture()
def runs_file(tmp_path: Path) -> Path:
    return tmp_path / "runs"


def bare_and_selector_graphs(path: Path) -> tuple[DAGNode, DAGNode]:
    """A graph that reads the bare input and one that reads inp[3]; each also runs a task
    that reads no input (``record`` appends to ``path``), which must not start on a bad input."""
    with InputNode() as inp:
        bare = MultiOutputNode([record.bind(str(path), 0), echo.bind(inp)])
        selected = MultiOutputNode([record.bind(str(path), 0), echo.bind(inp[3])])
    return bare, selected


@pytest.mark.parametrize(("args", "kwargs", "message"), [
    ((), {}, r"^the graph reads its InputNode but execute\(\) was given no arguments; call "
             r"dag\.execute\(value\)$"),
    ((1, 2, 3), {}, r"^execute\(\) was given 3 arguments and the graph uses the bare InputNode; "
                    r"read them as inp\[0\], inp\[1\], \.\.\. or pass one value$"),
    ((1,), {"k": 2}, r"^execute\(\) was given 1 argument and the keyword argument k and the graph "
                     r"uses the bare InputNode; read them as inp\[0\], inp\.k or pass one value$"),
    ((), {"a": 1, "b": 2}, r"^execute\(\) was given the keyword arguments a, b and the graph uses "
                           r"the bare InputNode; read them as inp\.a, inp\.b or pass one value$"),
])
def test_the_bare_input_given_other_than_one_value_fails_before_any_task(
        runs_file: Path, args: tuple, kwargs: dict, message: str) -> None:
    bare, _ = bare_and_selector_graphs(runs_file)
    with pytest.raises(TypeError, match=message):
        bare.execute(*args, **kwargs)
    with pytest.raises(TypeError, match=message):  # the same from the compiled Plan
        bare.compile(optimize=False).execute(*args, **kwargs)
    assert sluice.get(bare.execute(7), timeout=60)[1] == ((7,), {})
    # Only the good run's task ran (one submitted by a bad run would have queued first).
    assert runs_file.read_text().splitlines() == ["0"]


@pytest.mark.parametrize(("args", "message"), [
    (([1, 2],), r"^the graph reads inp\[3\] but execute\(\) was given 1 argument \(a list of 2 "
                r"items, which has no item 3\); pass one value that has an item 3, or at least 4 "
                r"positional arguments$"),
    ((5,), r"^the graph reads inp\[3\] but execute\(\) was given 1 argument \(an int, which has no "
           r"item 3\)"),
    ((1, 2), r"^the graph reads inp\[3\] but execute\(\) was given 2 arguments; pass at least 4 "
             r"positional arguments"),
    ((), r"^the graph reads inp\[3\] but execute\(\) was given no arguments; pass at least 4"),
])
def test_a_selector_past_what_execute_was_given_fails_before_any_task(
        runs_file: Path, args: tuple, message: str) -> None:
    _, selected = bare_and_selector_graphs(runs_file)
    with pytest.raises(IndexError, match=message):
        selected.execute(*args)
    assert sluice.get(selected.execute(0, 1, 2, 3), timeout=60)[1] == ((3,), {})
    assert runs_file.read_text().splitlines() == ["0"]
    assert sluice.get(selected.execute([0, 1, 2, "item"]), timeout=60)[1] == (("item",), {})


def test_selectors_read_the_input_as_ray_does() -> None:
    # One positional argument is the input itself: inp[k] and inp.k read into it. Several
    # arguments (or keywords): inp[int] is a positional one, inp["k"] and inp.k keyword ones.
    with InputNode() as inp:
        dag = MultiOutputNode([echo.bind(inp[0]), echo.bind(inp[1])])
    assert [v[0] for v in sluice.get(dag.execute([2, 3]), timeout=60)] == [(2,), (3,)]
    assert [v[0] for v in sluice.get(dag.execute(2, 3), timeout=60)] == [(2,), (3,)]
    with InputNode() as inp:
        named = MultiOutputNode([echo.bind(inp["a"]), echo.bind(inp.b)])
    assert [v[0] for v in sluice.get(named.execute(a=1, b=2), timeout=60)] == [(1,), (2,)]
    with pytest.raises(AttributeError, match=r"reads inp\.b but execute\(\) was given 1 argument "
                                             r"\(a dict of 2 items, which has no attribute 'b'\)"):
        named.execute({"a": 1, "b": 2})


def test_an_attribute_the_one_argument_lacks_names_it() -> None:
    with InputNode() as inp:
        dag = inc.bind(inp.x)
    with pytest.raises(AttributeError, match=r"^the graph reads inp\.x but execute\(\) was given 1 "
                                             r"argument \(an int, which has no attribute 'x'\); call "
                                             r"execute\(x=\.\.\.\) or pass one value that has an "
                                             r"attribute 'x'$"):
        dag.execute(3)
    assert sluice.get(dag.execute(x=3), timeout=60) == 4


def test_a_workflow_style_run_checks_its_input_before_any_stage(runs_file: Path) -> None:
    from sluice.compiler.runner import StageHooks, run_plan

    bare, _ = bare_and_selector_graphs(runs_file)
    with pytest.raises(TypeError, match=r"was given no arguments"):
        run_plan(bare.compile(), StageHooks())
    sluice.get(bare.execute(1), timeout=60)
    assert runs_file.read_text().splitlines() == ["0"]


def test_a_graph_without_an_input_ignores_what_execute_is_given() -> None:
    # As in Ray: generic callers (a scheduler, a test over any graph) may pass arguments.
    assert sluice.get(inc.bind(1).execute(99), timeout=60) == 2


# -- CSE at run time ---------------------------------------------------------------------------

def test_equal_pure_calls_run_once_per_execute(tmp_path: Path) -> None:
    marker = str(tmp_path / "runs")
    with InputNode() as inp:
        dag = MultiOutputNode([record.bind(marker, inp), record.bind(marker, inp)])
    assert call_stages(dag) == 1
    assert sluice.get(dag.execute(1)) == [10, 10]
    assert runs(tmp_path / "runs") == 1
    assert sluice.get(dag.execute(2)) == [20, 20]
    assert runs(tmp_path / "runs") == 2


def test_impure_calls_run_each_time(tmp_path: Path) -> None:
    marker = str(tmp_path / "runs")
    impure = record.options(pure=False)
    with InputNode() as inp:
        dag = MultiOutputNode([impure.bind(marker, inp), impure.bind(marker, inp)])
    assert sluice.get(dag.execute(1)) == [10, 10]
    assert runs(tmp_path / "runs") == 2


def test_without_optimization_duplicates_run_and_each_node_is_a_stage(tmp_path: Path) -> None:
    marker = str(tmp_path / "runs")
    with InputNode() as inp:
        dag = MultiOutputNode([record.bind(marker, inp), record.bind(marker, inp)])
    plan = dag.compile(optimize=False)
    assert len(plan.stages) == 3
    assert sluice.get(plan.execute(1)) == [10, 10]
    assert runs(tmp_path / "runs") == 2


# -- actors ------------------------------------------------------------------------------------

def test_actor_state_persists_across_executes_in_one_actor() -> None:
    with InputNode() as inp:
        counter = Counter.bind()
        dag = MultiOutputNode([counter.add.bind(inp), counter.pid.bind()])
    results = [sluice.get(dag.execute(1)) for _ in range(3)]
    assert [n for n, _ in results] == [1, 2, 3]
    pids = {pid for _, pid in results}
    assert len(pids) == 1 and os.getpid() not in pids
    plan = dag._plan
    dag.execute(1)
    assert dag._plan is plan  # execute compiles once and reuses the plan and its actor


def test_an_actor_constructed_from_graph_values_keeps_them() -> None:
    with InputNode() as inp:
        dag = Counter.bind(scale.bind(5)).add.bind(inp)
    assert [sluice.get(dag.execute(1)) for _ in range(2)] == [11, 12]


def test_two_plans_of_one_dag_have_their_own_actors() -> None:
    with InputNode() as inp:
        counter = Counter.bind()
        dag = MultiOutputNode([counter.add.bind(inp), counter.pid.bind()])
    first, second = dag.compile(), dag.compile()
    assert first == second
    assert sluice.get(first.execute(1))[0] == 1
    assert sluice.get(first.execute(1))[0] == 2
    n, pid = sluice.get(second.execute(1))
    assert n == 1
    assert pid != sluice.get(first.execute(1))[1]


def test_two_constructions_are_two_actors_with_separate_state() -> None:
    with InputNode() as inp:
        left, right = Counter.bind(), Counter.bind()
        dag = MultiOutputNode([left.add.bind(inp), right.add.bind(inp), left.pid.bind(), right.pid.bind()])
    assert sluice.get(dag.execute(1))[:2] == [1, 1]
    n_left, n_right, pid_left, pid_right = sluice.get(dag.execute(1))
    assert (n_left, n_right) == (2, 2)
    assert pid_left != pid_right


def test_equal_actor_method_calls_each_run() -> None:
    with InputNode() as inp:
        counter = Counter.bind()
        dag = MultiOutputNode([counter.add.bind(inp), counter.add.bind(inp)])
    assert sorted(sluice.get(dag.execute(1))) == [1, 2]
    assert sorted(sluice.get(dag.execute(1))) == [3, 4]


def test_a_chain_of_actor_calls_passes_values_along() -> None:
    with InputNode() as inp:
        first, second = Counter.bind(100), Counter.bind(1000)
        dag = inc.bind(second.add.bind(first.add.bind(inc.bind(inp))))
    # first: 100 + 2 = 102, then 104; second: 1000 + 102 = 1102, then 1102 + 104 = 1206.
    assert [sluice.get(dag.execute(1)) for _ in range(2)] == [1103, 1207]


@sluice.remote
class Relay:
    def step(self, x: int) -> int:
        if x == 100:
            raise ValueError("relay refuses 100")
        if x == 200:
            os._exit(3)
        return x + 1


def relay_chain(hops: int):
    relays = [Relay.bind(), Relay.bind()]
    with InputNode() as inp:
        node = inp
        for i in range(hops):
            node = relays[i % 2].step.bind(node)
    return node.compile()


def test_a_compiled_actor_chain_is_forwarded_actor_to_actor() -> None:
    plan = relay_chain(6)
    # The first executes run hop by hop until the actors acknowledge the chain's set-up
    # (later on a busy machine): execute until one is forwarded, or 60 s pass.
    deadline = time.monotonic() + 60
    while True:
        ids = context.current().scheduler.task_ids
        before = next(ids)  # task ids are consecutive: taking one costs nothing
        assert sluice.get(plan.execute(10), timeout=30) == 16
        tasks = next(ids) - before - 1
        if tasks == 1 or time.monotonic() > deadline:
            break
    assert tasks == 1, "six hops should be one driver-side task"


def test_an_error_inside_a_forwarded_chain_reaches_get() -> None:
    plan = relay_chain(4)
    assert sluice.get(plan.execute(0), timeout=30) == 4
    with pytest.raises(ValueError, match="relay refuses 100") as info:
        sluice.get(plan.execute(99), timeout=30)  # the second hop gets 100
    assert isinstance(info.value, TaskError)
    assert sluice.get(plan.execute(1), timeout=30) == 5  # the actors live on


def test_an_actor_dying_inside_a_forwarded_chain_fails_the_execute() -> None:
    plan = relay_chain(4)
    assert sluice.get(plan.execute(0), timeout=30) == 4
    with pytest.raises(sluice.exceptions.ActorDiedError):
        sluice.get(plan.execute(199), timeout=30)  # the second hop's actor exits


@sluice.remote
class Doubler:
    def grow(self, x: np.ndarray) -> np.ndarray:
        return np.concatenate([x, x])


def test_a_forwarded_chain_carries_large_values_and_many_executes_in_flight() -> None:
    a, b = Doubler.bind(), Doubler.bind()
    with InputNode() as inp:
        node = inp
        for i in range(6):
            node = (a if i % 2 == 0 else b).grow.bind(node)
    plan = node.compile()
    start = np.arange(1000.0)
    for _ in range(3):
        out = sluice.get(plan.execute(start), timeout=30)
    assert out.shape == (64_000,) and np.array_equal(out[-1000:], start)  # 512 KB at the end
    # Many chains at once: actors write hops to each other, which must never deadlock.
    refs = [plan.execute(np.full(10, float(i))) for i in range(300)]
    results = sluice.get(refs, timeout=60)
    assert [float(r[0]) for r in results] == [float(i) for i in range(300)]


# -- pickling ----------------------------------------------------------------------------------

def test_an_unpickled_plan_runs_and_gives_the_same_results() -> None:
    with InputNode() as inp:
        top = inc.bind(inp[0])
        dag = MultiOutputNode([add.bind(scale.bind(top), inc.bind(top)), scale.bind(inp[1], by=top)])
    plan = dag.compile()
    expected = sluice.get(plan.execute(3, 4))
    copy = pickle.loads(pickle.dumps(plan))
    assert copy == plan
    assert sluice.get(copy.execute(3, 4)) == expected == [8 + 5, 16]


def test_an_unpickled_plan_starts_its_own_actors() -> None:
    with InputNode() as inp:
        counter = Counter.bind()
        dag = MultiOutputNode([counter.add.bind(inp), counter.pid.bind()])
    plan = dag.compile()
    original = [sluice.get(plan.execute(1)) for _ in range(2)]
    copy = pickle.loads(pickle.dumps(plan))
    copied = [sluice.get(copy.execute(1)) for _ in range(2)]
    assert [n for n, _ in copied] == [n for n, _ in original] == [1, 2]
    assert copied[0][1] != original[0][1]


def test_an_unpickled_dag_node_executes() -> None:
    with InputNode() as inp:
        dag = add.bind(scale.bind(inp.a, 3), inp.b)
    expected = sluice.get(dag.execute(a=2, b=1))
    copy = pickle.loads(pickle.dumps(dag))
    assert sluice.get(copy.execute(a=2, b=1)) == expected == 7


# -- errors ------------------------------------------------------------------------------------

def test_a_failing_task_raises_its_own_error_type_naming_the_stage() -> None:
    with InputNode() as inp:
        dag = inc.bind(boom.bind(inc.bind(inp)))
    ref = dag.execute(1)
    with pytest.raises(ValueError, match=r"task inc\+boom\+inc failed:(.|\n)*bad input 2") as info:
        sluice.get(ref)
    assert isinstance(info.value, TaskError)


def test_an_error_propagates_to_the_stages_downstream() -> None:
    with InputNode() as inp:
        dag = add.bind(boom.bind(inp), inc.bind(inp))
    with pytest.raises(ValueError, match=r"boom(.|\n)*bad input 7") as info:
        sluice.get(dag.execute(7))
    assert isinstance(info.value, TaskError)
    with InputNode() as inp:  # the runtime is fine afterwards
        assert sluice.get(inc.bind(inp).execute(7)) == 8


@pytest.mark.parametrize(("options", "hint"), [
    ({"num_cpus": 4}, r"num_cpus=4 requested but this sluice runtime has 2 CPUs"),
    ({"num_gpus": 2}, r"num_gpus=2 requested but this sluice runtime has 1 GPUs"),
    ({"resources": {"TPU": 1}}, r"resources=\{'TPU': 1\} requested but this sluice runtime has 0 of 'TPU'"),
])
def test_a_node_asking_for_what_the_runtime_lacks_fails_to_compile(options: dict, hint: str) -> None:
    with InputNode() as inp:
        dag = inc.bind(inc.options(**options).bind(inp))
    with pytest.raises(InfeasibleResourceError, match=rf"graph node inc \(inc-[0-9a-f]{{12}}\): {hint}"):
        dag.execute(1)


# -- GPUs (logical) ----------------------------------------------------------------------------

def test_a_gpu_stage_runs_with_its_gpu_visible() -> None:
    with InputNode() as inp:
        dag = visible_gpus.bind(inc.bind(inp))
    plan = dag.compile()
    gpu_stage = next(s for s in plan.stages if any(op.name == "visible_gpus" for op in s.ops))
    assert ("GPU", 1.0) in gpu_stage.resources and gpu_stage.device == "gpu"
    assert sluice.get(plan.execute(1)) == ("0", [0], 2)


# -- scale -------------------------------------------------------------------------------------

def settled(rt: Any, at_most: int, deadline_s: float = 60.0) -> tuple[int, int]:
    """(objects the driver tracks, store bytes used) once dead refs are counted, polling
    until the table holds at most ``at_most`` objects or the deadline passes."""
    deadline = time.monotonic() + deadline_s
    while True:
        gc.collect()
        with rt.scheduler.locked():
            rt.scheduler.apply_ref_events()
            count, used = len(rt.scheduler.objects), rt.store.used_bytes
        if count <= at_most or time.monotonic() > deadline:
            return count, used
        time.sleep(0.05)


def test_many_executes_leak_no_objects_and_no_store_bytes() -> None:
    with InputNode() as inp:
        dag = payload.bind(inc.bind(inp))
    assert float(sluice.get(dag.execute(0))[0]) == 1.0
    rt = context.current()
    base_count, base_used = settled(rt, at_most=0, deadline_s=1.0)
    for batch in range(20):
        refs = [dag.execute(i) for i in range(100)]
        values = sluice.get(refs)
        assert float(values[-1][0]) == 100.0 and values[-1].nbytes == 128_000
        del refs, values
    count, used = settled(rt, at_most=base_count + 3)
    assert count <= base_count + 3
    assert used == base_used


def test_ten_thousand_executes_grow_neither_the_object_table_nor_driver_memory() -> None:
    import tracemalloc

    with InputNode() as inp:
        dag = MultiOutputNode([inc.bind(inc.bind(inp)), add.bind(inp, 1)])
    assert sluice.get(dag.execute(0)) == [2, 1]
    rt = context.current()
    base_count, _ = settled(rt, at_most=0, deadline_s=1.0)
    tracemalloc.start()
    try:
        before = None
        for batch in range(20):
            refs = [dag.execute(i) for i in range(500)]
            assert sluice.get(refs[-1]) == [501, 500]
            sluice.get([r for pair in refs for r in pair])
            del refs
            if batch == 1:  # after warm-up: caches filled, pools at size
                gc.collect()
                before = tracemalloc.get_traced_memory()[0]
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    count, _ = settled(rt, at_most=base_count + 3)
    assert count <= base_count + 3
    assert after - before < 1_000_000, f"driver memory grew by {after - before} bytes"


def test_a_10000_node_chain_compiles_to_one_stage_and_runs() -> None:
    assert sys.getrecursionlimit() < 10_000
    with InputNode() as inp:
        node: DAGNode = inp
        for _ in range(10_000):
            node = inc.bind(node)
    plan = node.compile()
    (stage,) = [s for s in plan.stages if s.kind is OpKind.CALL]
    assert len(stage.ops) == 10_000
    assert sluice.get(plan.execute(5)) == 10_005


# -- random graphs -----------------------------------------------------------------------------

@settings(max_examples=12, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(dag_specs(max_nodes=6), st.integers(-3, 3))
def test_a_random_dag_computes_what_it_means(spec: DagSpec, x: int) -> None:
    dag = spec.build()
    for optimize in (True, False):
        refs = dag.compile(optimize=optimize).execute(x)
        got = sluice.get(refs) if spec.multi_output else [sluice.get(refs)]
        assert got == spec.evaluate(x)


@sluice.remote
class SelfAware:
    def __init__(self) -> None:
        self.calls = 0

    def count_on(self, me: Any) -> int:
        if not isinstance(me, sluice.ActorHandle):
            raise TypeError(f"expected this actor's handle, got {me!r}")
        self.calls += 1
        return self.calls

    def peek(self) -> int:
        return self.calls


def test_an_actor_node_may_be_passed_to_its_own_method() -> None:
    actor = SelfAware.bind()
    with InputNode() as inp:
        dag = MultiOutputNode([actor.count_on.bind(actor), inc.bind(inp)])
    refs = dag.execute(1)
    assert sluice.get(refs, timeout=30) == [1, 2]


def test_a_graph_whose_output_is_the_input_still_returns_refs() -> None:
    with InputNode() as inp:
        dag = MultiOutputNode([inp[0], inc.bind(inp[1])])
    refs = dag.execute(5, 6)
    assert all(isinstance(r, sluice.ObjectRef) for r in refs)
    assert sluice.get(refs, timeout=30) == [5, 7]
    only = inp[1]
    assert sluice.get(only.execute(3, 4), timeout=30) == 4


# -- bound objects and placement --------------------------------------------------------------

@sluice.remote
def kinds(*args: Any, **kwargs: Any) -> tuple:
    """The type names of what the task got, positional then keyword."""
    return [type(a).__name__ for a in args], {k: type(v).__name__ for k, v in kwargs.items()}


@sluice.remote
class Holder:
    def __init__(self, value: Any) -> None:
        self.value = value

    def read(self, extra: Any = None) -> tuple:
        return type(self.value).__name__, float(self.value.sum()), type(extra).__name__


def test_a_bound_object_reaches_the_task_as_its_value_and_a_nested_one_as_a_ref() -> None:
    array = sluice.put(np.arange(100_000, dtype=np.float64))
    for optimize in (True, False):
        plan = kinds.bind(array, [array], k=array).compile(optimize=optimize)
        assert [st.kind for st in plan.stages] == [OpKind.CONSTANT, OpKind.CALL]
        assert sluice.get(plan.execute()) == (["ndarray", "list"], {"k": "ndarray"})
    # As .remote() gives it: whole arguments are values.
    assert sluice.get(kinds.remote(array, [array], k=array)) == (["ndarray", "list"], {"k": "ndarray"})


def test_an_actor_constructor_and_its_calls_get_bound_objects_as_values() -> None:
    array = sluice.put(np.ones(50_000))
    holder = Holder.bind(array)
    assert sluice.get(holder.read.bind(array).execute()) == ("ndarray", 50_000.0, "ndarray")


def placed_stage(*ops_options: tuple, placement: str = "n2", kind: OpKind = OpKind.CALL) -> Stage:
    ops = tuple(make_op(kind, f"op{i}", i, fn_id=1, options=options)
                for i, options in enumerate(ops_options))
    return Stage(id=stage_id(ops), kind=kind, ops=ops, inputs=(), output=ops[-1].id,
                 placement=placement)


def test_a_stage_placed_on_a_node_asks_for_that_node_softly() -> None:
    stage = placed_stage((), ())
    assert task_options(stage)["scheduling_strategy"] == NodeAffinitySchedulingStrategy("n2", soft=True)
    assert task_options(placed_stage((), placement="local"))["scheduling_strategy"] is None
    actor = placed_stage((), kind=OpKind.ACTOR)
    assert actor_options(actor)["scheduling_strategy"] == NodeAffinitySchedulingStrategy("n2", soft=True)


def test_the_users_own_strategy_wins_over_the_plans_placement() -> None:
    theirs = NodeAffinitySchedulingStrategy("n1", soft=False)
    stage = placed_stage((), (("scheduling_strategy", theirs),))  # any op of the stage
    assert task_options(stage)["scheduling_strategy"] is theirs
    local = placed_stage((("scheduling_strategy", theirs),), placement="local")
    assert task_options(local)["scheduling_strategy"] is theirs
    actor = placed_stage((("scheduling_strategy", theirs),), kind=OpKind.ACTOR)
    assert actor_options(actor)["scheduling_strategy"] is theirs
