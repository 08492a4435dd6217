"""validate: bad ``.bind()`` arity, infeasible resources and cycles fail at compile time.

Rule (``sluice/compiler/passes/validate.py``): every call's bound arguments fit
its signature (a TypeError names the node); every resource a node asks for
exists in the running runtime, when one runs; the graph is acyclic. No worker
is started here: the resource check meets a stand-in driver runtime.
"""

from __future__ import annotations

import networkx as nx
import pytest

import sluice
from sluice.compiler.ir import OpKind, make_op, new_graph
from sluice.compiler.passes.validate import validate
from sluice.dsl.nodes import ClassMethodNode, ClassNode, FunctionNode, InputNode, MultiOutputNode
from sluice.dsl.to_graph import build_graph
from sluice.exceptions import InfeasibleResourceError, InternalError
from sluice.executor import context
from sluice.executor.resources import NodeResources

pytestmark = pytest.mark.usefixtures("no_runtime_started")
NODE_ID = r"\([\w.]+-[0-9a-f]{12}\)"


# Unannotated on purpose: the signatures appear verbatim in the pinned messages.
@sluice.remote
def two(a, b):
    return a + b


@sluice.remote
def anything(*args, **kwargs):
    return len(args) + len(kwargs)


@sluice.remote
class Counter:
    def __init__(self, start=0):
        self.n = start

    def add(self, k, *, times=1):
        self.n += k * times
        return self.n


@sluice.remote
class WithStatic:
    @staticmethod
    def twice(x):
        return 2 * x


def arity_message(node: str, signature: str, why: str, constructor: bool = False) -> str:
    what = "constructor of " if constructor else ""
    return (rf"graph node {node} {NODE_ID}: the arguments given to \.bind\(\) do not fit the "
            rf"{what}signature {signature}: {why}; fix the \.bind\(\.\.\.\) call")


# .bind() refuses such calls itself (tests/dsl/test_arity.py); these nodes are made without
# it, as a graph built some other way could be, to show validate still names them.

@pytest.mark.parametrize(("args", "kwargs", "why"), [
    (lambda inp: (inp, 1, 2), {}, "too many positional arguments"),
    (lambda inp: (inp,), {}, "missing a required argument: 'b'"),
    (lambda inp: (inp, 1), {"c": 3}, "got an unexpected keyword argument 'c'"),
    (lambda inp: (inp,), {"a": 1}, "multiple values for argument 'a'"),
])
def test_a_function_bound_with_the_wrong_arguments_is_named(args, kwargs: dict, why: str) -> None:
    with InputNode() as inp:
        dag = FunctionNode(two, args(inp), kwargs)
    with pytest.raises(TypeError, match=arity_message("two", r"two\(a, b\)", why)):
        dag.compile()


@pytest.mark.parametrize(("args", "kwargs", "why"), [
    ((1, 2), {}, "too many positional arguments"),
    ((), {"begin": 1}, "got an unexpected keyword argument 'begin'"),
])
def test_an_actor_constructed_with_the_wrong_arguments_is_named(args: tuple, kwargs: dict,
                                                                why: str) -> None:
    with InputNode() as inp:
        dag = ClassNode(Counter, args, kwargs).add.bind(inp)
    with pytest.raises(TypeError, match=arity_message("Counter", r"Counter\(start=0\)", why,
                                                      constructor=True)):
        dag.compile()


@pytest.mark.parametrize(("args", "kwargs", "why"), [
    (lambda inp: (), {}, "missing a required argument: 'k'"),
    (lambda inp: (inp, 2), {}, "too many positional arguments"),
    (lambda inp: (inp,), {"twice": 2}, "got an unexpected keyword argument 'twice'"),
])
def test_an_actor_method_bound_with_the_wrong_arguments_is_named(args, kwargs: dict,
                                                                 why: str) -> None:
    with InputNode() as inp:
        dag = ClassMethodNode(Counter.bind(), "add", args(inp), kwargs)
    signature = r"Counter\.add\(k, \*, times=1\)"
    with pytest.raises(TypeError, match=arity_message("Counter.add", signature, why)):
        dag.compile()


def test_the_arity_check_runs_without_optimization_too() -> None:
    with pytest.raises(TypeError, match=arity_message("two", r"two\(a, b\)",
                                                      "too many positional arguments")):
        FunctionNode(two, (1, 2, 3), {}).compile(optimize=False)


def test_a_bad_call_deep_in_the_graph_is_found() -> None:
    with InputNode() as inp:
        good = two.bind(inp, 1)
        bad = FunctionNode(two, (good, good, good), {})
        dag = MultiOutputNode([good, two.bind(bad, 1)])
    with pytest.raises(TypeError, match="too many positional arguments"):
        dag.compile()


def test_a_static_method_keeps_its_first_parameter() -> None:
    # Its parameters are all the caller's: none is dropped as self.
    with InputNode() as inp:
        dag = WithStatic.bind().twice.bind(inp)
    graph = build_graph(dag)
    assert validate(graph) is graph


def test_arguments_that_fit_pass_whatever_they_are() -> None:
    with InputNode() as inp:
        counter = Counter.bind(start=inp[0])
        dag = MultiOutputNode([
            two.bind(inp[0], b=inp[1]),
            two.bind([inp], {"k": inp}),
            anything.bind(1, inp, k=[inp]),
            anything.bind(),
            counter.add.bind(inp[1], times=2),
        ])
    graph = build_graph(dag)
    assert validate(graph) is graph  # validation changes nothing


def test_a_cycle_is_an_internal_error() -> None:
    a = make_op(OpKind.CALL, "a", inputs=("b-000000000000",))
    b = make_op(OpKind.CALL, "b", inputs=(a.id,))
    graph = new_graph([a], {"outputs": (a.id,), "signatures": {}})
    graph.add_node("b-000000000000", op=b)
    graph.add_edge(a.id, "b-000000000000")
    graph.add_edge("b-000000000000", a.id)
    assert not nx.is_directed_acyclic_graph(graph)
    with pytest.raises(InternalError, match=r"^the logical graph has a cycle: a \(a-\w+\) -> b "
                                            r"\(b-0+\) -> a \(a-\w+\); graphs built with \.bind\(\) "
                                            r"cannot \(building them refuses one\), so this is a "
                                            r"sluice bug$"):
        validate(graph)


class StandInDriver:
    """What validate asks of a running driver's Backend: ``is_driver`` and ``check_feasible``."""

    is_driver = True

    def __init__(self, **total: float):
        self.resources = NodeResources(total)

    def check_feasible(self, demand: tuple, what: str) -> None:
        self.resources.check_feasible(demand, what)


@pytest.fixture()
def two_cpu_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(context, "_current", StandInDriver(CPU=2, GPU=0, disk=1))


@pytest.mark.parametrize(("options", "hint"), [
    ({"num_cpus": 4}, (r"num_cpus=4 requested but this sluice runtime has 2 CPUs; lower num_cpus or "
                       r"start it with sluice\.init\(num_cpus=\.\.\.\)")),
    ({"num_gpus": 1}, (r"num_gpus=1 requested but this sluice runtime has 0 GPUs; start it with "
                       r"sluice\.init\(num_gpus=\.\.\.\) or drop the request")),
    ({"resources": {"TPU": 1}}, (r"resources=\{'TPU': 1\} requested but this sluice runtime has 0 of "
                                 r"'TPU'; start it with sluice\.init\(resources=\{'TPU': \.\.\.\}\)")),
])
def test_a_node_asking_for_what_the_runtime_lacks_is_infeasible(two_cpu_driver: None, options: dict,
                                                                hint: str) -> None:
    with InputNode() as inp:
        dag = two.bind(inp, 1)
        dag = two.options(**options).bind(dag, 2)
    with pytest.raises(InfeasibleResourceError, match=rf"graph node two {NODE_ID}: {hint}"):
        dag.compile()


def test_an_actor_asking_for_what_the_runtime_lacks_is_infeasible(two_cpu_driver: None) -> None:
    with InputNode() as inp:
        dag = Counter.options(num_gpus=1).bind().add.bind(inp)
    with pytest.raises(InfeasibleResourceError, match=rf"graph node Counter {NODE_ID}: num_gpus=1"):
        dag.compile()


def test_feasible_resources_pass(two_cpu_driver: None) -> None:
    with InputNode() as inp:
        dag = two.options(num_cpus=2, resources={"disk": 1}).bind(inp, 1)
    dag.compile()


def test_without_a_runtime_resources_are_not_checked() -> None:
    # Nothing to check against: the runtime that executes the plan checks it then.
    with InputNode() as inp:
        plan = two.options(num_cpus=64, num_gpus=8).bind(inp, 1).compile()
    call = next(s for s in plan.stages if "two" in s.name)
    assert dict(call.resources) == {"CPU": 64.0, "GPU": 8.0}
