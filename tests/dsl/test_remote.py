"""``@sluice.remote`` and options, checked without starting a runtime.

Decorating, validating options and misusing remote objects must all fail (or
succeed) in the driver, before any worker exists.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import sluice


@pytest.fixture(autouse=True)
def no_runtime_started() -> Iterator[None]:
    yield
    assert not sluice.is_initialized(), "a DSL-only test must not start a runtime"


def documented(x: int) -> int:
    """Doubles x."""
    return 2 * x


class Plain:
    """A class to make an actor of."""

    def f(self) -> int:
        return 1


def test_bare_decorator_makes_a_remote_function_that_keeps_its_metadata() -> None:
    rf = sluice.remote(documented)
    assert isinstance(rf, sluice.RemoteFunction)
    assert rf.__name__ == "documented" and rf.__doc__ == "Doubles x."


def test_decorator_with_options_makes_a_remote_function_and_an_actor_class() -> None:
    rf = sluice.remote(num_cpus=2, max_retries=0, retry_exceptions=[KeyError], num_returns=2)(documented)
    assert isinstance(rf, sluice.RemoteFunction)
    actor_class = sluice.remote(max_restarts=1, max_concurrency=3, name="p")(Plain)
    assert isinstance(actor_class, sluice.ActorClass)
    assert actor_class.__doc__ == "A class to make an actor of."


def test_calling_a_remote_function_directly_says_to_use_remote() -> None:
    with pytest.raises(TypeError, match=r"remote function documented cannot be called directly; "
                                        r"use documented\.remote\(\.\.\.\)"):
        sluice.remote(documented)(3)


def test_instantiating_an_actor_class_directly_says_to_use_remote() -> None:
    with pytest.raises(TypeError, match=r"actor class Plain cannot be instantiated directly; "
                                        r"use Plain\.remote\(\.\.\.\)"):
        sluice.remote(Plain)()


@pytest.mark.parametrize("option", ["num_cpu", "gpus", "max_restarts", "max_concurrency"])
def test_unknown_task_options_are_named(option: str) -> None:
    with pytest.raises(ValueError, match=rf"unknown option\(s\) {option} for a remote function"):
        sluice.remote(**{option: 1})(documented)
    with pytest.raises(ValueError, match=rf"unknown option\(s\) {option}"):
        sluice.remote(documented).options(**{option: 1})


@pytest.mark.parametrize("option", ["max_retries", "retry_exceptions", "num_returns", "jit"])
def test_unknown_actor_options_are_named(option: str) -> None:
    with pytest.raises(ValueError, match=rf"unknown option\(s\) {option}\b"):
        sluice.remote(**{option: 1})(Plain)
    with pytest.raises(ValueError, match=rf"unknown option\(s\) {option}"):
        sluice.remote(Plain).options(**{option: 1})


@pytest.mark.parametrize(("options", "message"), [
    ({"num_cpus": -1}, r"num_cpus=-1 must be a number >= 0"),
    ({"num_gpus": "one"}, r"num_gpus='one' must be a number"),
    ({"num_cpus": True}, r"num_cpus=True must be a number"),
    ({"num_returns": 0}, r"num_returns=0 must be an int >= 1"),
    ({"max_retries": 1.5}, r"max_retries=1.5 must be an int"),
    ({"retry_exceptions": "ValueError"}, r"retry_exceptions='ValueError' must be True, False, or a list"),
    ({"resources": ["slot"]}, r"resources=\['slot'\] must be a dict"),
    ({"resources": {"CPU": 1}}, r"use num_cpus/num_gpus for CPU"),
])
def test_bad_task_option_values_are_refused_naming_the_option(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sluice.remote(**options)(documented)


def test_bad_actor_option_values_are_refused_naming_the_option() -> None:
    with pytest.raises(ValueError, match=r"max_concurrency=0 must be an int >= 1"):
        sluice.remote(max_concurrency=0)(Plain)
    with pytest.raises(ValueError, match=r"max_restarts=-2"):
        sluice.remote(Plain).options(max_restarts=-2)


WORKFLOW_STEP_OPTIONS = {"retry_delay_s": 0.5, "backoff": 2.0, "catch_exceptions": True, "cache": True}
"""Options only sluice.workflow reads, each with a valid value."""
STEPS_ONLY = (r"applies only to workflow steps \(@remote functions bound with \.bind\(\) and run by "
              r"sluice\.workflow\.run\)")


@pytest.mark.parametrize("option", sorted(WORKFLOW_STEP_OPTIONS))
def test_a_workflow_step_option_on_an_eager_task_is_an_error_naming_it(option: str) -> None:
    value = WORKFLOW_STEP_OPTIONS[option]
    expected = (rf"^documented\.remote\(\): {option} {STEPS_ONLY}, not to tasks started with "
                r"\.remote\(\); drop it here$")
    with pytest.raises(ValueError, match=expected):
        sluice.remote(documented).options(**{option: value}).remote(1)
    with pytest.raises(ValueError, match=expected):
        sluice.remote(**{option: value})(documented).remote(1)


def test_several_workflow_step_options_are_all_named() -> None:
    step = sluice.remote(documented).options(cache=True, retry_delay_s=1.0)
    with pytest.raises(ValueError, match=r"^documented\.remote\(\): retry_delay_s, cache apply only to "
                                         r"workflow steps .*; drop them here$"):
        step.remote(1)


def test_a_pickled_remote_function_keeps_refusing_workflow_options_in_remote() -> None:
    import cloudpickle

    step = sluice.remote(documented).options(catch_exceptions=True)
    step._pickle()  # as a task's argument travels: rebuilt from its pickle
    rebuilt = cloudpickle.loads(cloudpickle.dumps(step))
    with pytest.raises(ValueError, match=rf"^documented\.remote\(\): catch_exceptions {STEPS_ONLY}"):
        rebuilt.remote(1)


def test_options_then_bind_keeps_accepting_workflow_step_options() -> None:
    step = sluice.remote(documented).options(**WORKFLOW_STEP_OPTIONS)
    plan = step.bind(3).compile()
    [op] = [op for stage in plan.stages for op in stage.ops if op.name == "documented"]
    assert {k: v for k, v in op.options if k in WORKFLOW_STEP_OPTIONS} == WORKFLOW_STEP_OPTIONS


@pytest.mark.parametrize("option", sorted(WORKFLOW_STEP_OPTIONS))
def test_a_workflow_step_option_on_an_actor_class_is_an_error_naming_it(option: str) -> None:
    value = WORKFLOW_STEP_OPTIONS[option]
    expected = rf"^@remote class Plain: {option} {STEPS_ONLY}, not to actors; drop it here$"
    with pytest.raises(ValueError, match=expected):
        sluice.remote(**{option: value})(Plain)
    with pytest.raises(ValueError, match=expected):
        sluice.remote(Plain).options(**{option: value})


def test_remote_takes_keyword_options_only() -> None:
    with pytest.raises(TypeError, match="keyword options only"):
        sluice.remote(1, num_cpus=1)
    with pytest.raises(TypeError, match="decorates functions and classes, not int"):
        sluice.remote(num_cpus=1)(5)


def test_the_documented_errors_live_in_sluice_exceptions() -> None:
    from sluice import exceptions as e

    for name in ("TaskError", "GetTimeoutError", "WorkerCrashedError", "ActorDiedError",
                 "ObjectLostError", "TaskCancelledError", "InfeasibleResourceError"):
        assert issubclass(getattr(e, name), e.SluiceError), name
    assert issubclass(e.GetTimeoutError, TimeoutError)
    assert issubclass(e.InfeasibleResourceError, ValueError)


def test_a_task_error_is_also_an_instance_of_the_original_type() -> None:
    from sluice.exceptions import TaskError

    err = TaskError("f", "Traceback ...\nKeyError: 'k'", KeyError("k")).as_instanceof_cause()
    assert isinstance(err, TaskError) and isinstance(err, KeyError)
    assert str(err) == "task f failed: KeyError: 'k'\n\nTraceback ...\nKeyError: 'k'"
    import pickle

    again = pickle.loads(pickle.dumps(err))
    assert isinstance(again, KeyError) and isinstance(again, TaskError)


def test_a_task_error_says_what_went_wrong_before_its_traceback() -> None:
    from sluice.exceptions import TaskError

    cause = ValueError("bad row")
    cause.add_note("in stage Parse, block 3")
    inner = TaskError("parse", "Traceback ...\nValueError: bad row", cause).as_instanceof_cause()
    assert str(inner).startswith("task parse failed: ValueError: bad row\nin stage Parse, block 3\n\nTraceback")
    # A task that got a failed task's value: both headlines, before its own traceback.
    outer = TaskError("load", "Traceback ...\nTaskError: ...", inner).as_instanceof_cause()
    assert str(outer).startswith("task load failed: task parse failed: ValueError: bad row\n")
    # A trace with no remote frame is the message again: said once.
    bare = TaskError("f", "KeyError: 'k'\n", KeyError("k"))
    assert str(bare) == "task f failed: KeyError: 'k'"
    # Without its cause (it did not unpickle) the traceback says it all, as before.
    assert str(TaskError("f", "Traceback ...\nX: y", None)) == "task f failed:\nTraceback ...\nX: y"


def test_scheduling_strategy_is_checked_and_kept():
    from sluice.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @sluice.remote
    def f():
        return 1

    strategy = NodeAffinitySchedulingStrategy("node-a", soft=True)
    assert f.options(scheduling_strategy=strategy)._options["scheduling_strategy"] == strategy
    assert f.options(scheduling_strategy="DEFAULT")._options["scheduling_strategy"] is None
    with pytest.raises(ValueError, match="scheduling_strategy='SPREADISH'"):
        f.options(scheduling_strategy="SPREADISH")
    with pytest.raises(ValueError, match="node_id=''"):
        NodeAffinitySchedulingStrategy("", soft=True)


# -- arguments are checked against the signature at .bind(), as at .remote() ------------------

def fits(a, b=2, *, k=0):
    return a + b + k


class Model:
    def __init__(self, weights, *, bias=0):
        self.weights = weights

    def predict(self, x, *, scale=1):
        return x * scale

    @staticmethod
    def norm(x):
        return abs(x)

    @classmethod
    def make(cls, weights):
        return cls(weights)


def bind_message(call: str, signature: str, why: str) -> str:
    return (rf"^{call}: the arguments do not fit {signature}: {why} \(the call passed .*\); "
            r"fix the call$")


@pytest.mark.parametrize(("args", "kwargs", "why"), [
    ((1, 2, 3), {}, "too many positional arguments"),
    ((), {}, "missing a required argument: 'a'"),
    ((1,), {"c": 3}, "got an unexpected keyword argument 'c'"),
    ((1,), {"a": 1}, "multiple values for argument 'a'"),
])
def test_a_function_bound_with_arguments_that_do_not_fit_fails_at_bind(args: tuple, kwargs: dict,
                                                                       why: str) -> None:
    with pytest.raises(TypeError, match=bind_message(r"fits\.bind\(\)", r"fits\(a, b=2, \*, k=0\)",
                                                     why)):
        sluice.remote(fits).bind(*args, **kwargs)


def test_options_and_graph_nodes_as_arguments_keep_the_check() -> None:
    rf = sluice.remote(fits)
    node = rf.bind(1, k=2)  # a node is one argument like any other
    rf.options(num_cpus=2).bind(node, node)
    with pytest.raises(TypeError, match=bind_message(r"fits\.bind\(\)", r"fits\(a, b=2, \*, k=0\)",
                                                     "too many positional arguments")):
        rf.options(num_cpus=2).bind(node, node, node)


@pytest.mark.parametrize(("args", "kwargs", "why"), [
    ((), {}, "missing a required argument: 'weights'"),
    ((1, 2), {}, "too many positional arguments"),
    ((1,), {"scale": 2}, "got an unexpected keyword argument 'scale'"),
])
def test_an_actor_constructed_with_arguments_that_do_not_fit_fails_at_bind(args: tuple, kwargs: dict,
                                                                           why: str) -> None:
    with pytest.raises(TypeError, match=bind_message(r"Model\.bind\(\)",
                                                     r"Model\(weights, \*, bias=0\)", why)):
        sluice.remote(Model).bind(*args, **kwargs)
    with pytest.raises(TypeError, match=bind_message(r"Model\.bind\(\)",
                                                     r"Model\(weights, \*, bias=0\)", why)):
        sluice.remote(Model).options(max_restarts=1).bind(*args, **kwargs)


@pytest.mark.parametrize(("method", "args", "kwargs", "signature", "why"), [
    ("predict", (), {}, r"Model\.predict\(x, \*, scale=1\)", "missing a required argument: 'x'"),
    ("predict", (1, 2), {}, r"Model\.predict\(x, \*, scale=1\)", "too many positional arguments"),
    ("norm", (1, 2), {}, r"Model\.norm\(x\)", "too many positional arguments"),
    ("make", (), {}, r"Model\.make\(weights\)", "missing a required argument: 'weights'"),
])
def test_an_actor_method_bound_with_arguments_that_do_not_fit_fails_at_bind(
        method: str, args: tuple, kwargs: dict, signature: str, why: str) -> None:
    actor = sluice.remote(Model).bind([1.0])
    with pytest.raises(TypeError, match=bind_message(rf"Model\.{method}\.bind\(\)", signature, why)):
        getattr(actor, method).bind(*args, **kwargs)


def test_methods_bind_with_arguments_that_fit_whatever_their_kind() -> None:
    actor = sluice.remote(Model).bind([1.0], bias=1)
    actor.predict.bind(1, scale=2)
    actor.norm.bind(-1)  # a staticmethod: x is the caller's, not self
    actor.make.bind([2.0])  # a classmethod: cls is bound already


def test_a_function_without_a_readable_signature_binds_anything() -> None:
    sluice.remote(max).bind(1, 2, 3)
    sluice.remote(max).bind()
