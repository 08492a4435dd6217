"""The public API is an explicit list; changing it is a deliberate act."""

from __future__ import annotations

import sluice

EXPECTED = {
    "ActorClass", "ActorHandle", "DAGNode", "InputNode", "MultiOutputNode", "Plan", "compile",
    "ObjectRef", "ObjectRefGenerator", "RemoteFunction", "available_resources", "cancel",
    "cluster_resources", "exceptions", "get", "get_actor", "get_gpu_ids", "init",
    "is_initialized", "kill", "method", "nodes", "put", "remote", "shutdown", "wait",
    "RuntimeContext", "get_runtime_context", "timeline",
}


def test_public_names_are_exactly_the_documented_ones() -> None:
    assert set(sluice.__all__) == EXPECTED
    for name in sluice.__all__:
        assert getattr(sluice, name) is not None


def test_public_callables_have_docstrings() -> None:
    for name in sluice.__all__:
        obj = getattr(sluice, name)
        assert obj.__doc__, f"sluice.{name} has no docstring"


def test_exceptions_listed_in_the_design_exist() -> None:
    from sluice import exceptions as ex

    for name in ("TaskError", "GetTimeoutError", "WorkerCrashedError", "ActorDiedError",
                 "ObjectLostError", "TaskCancelledError"):
        assert issubclass(getattr(ex, name), ex.SluiceError)


UTIL_EXPECTED = {"ActorPool", "PlacementGroup", "get_current_placement_group", "get_node_ip_address",
                 "get_placement_group", "inspect_serializability", "list_named_actors", "placement_group",
                 "placement_group_table", "remove_placement_group"}
STRATEGIES_EXPECTED = {"NodeAffinitySchedulingStrategy", "PlacementGroupSchedulingStrategy"}


def test_util_names_are_exactly_the_documented_ones() -> None:
    from sluice.util import scheduling_strategies

    assert set(sluice.util.__all__) == UTIL_EXPECTED
    assert set(scheduling_strategies.__all__) == STRATEGIES_EXPECTED
    for module, names in ((sluice.util, UTIL_EXPECTED), (scheduling_strategies, STRATEGIES_EXPECTED)):
        for name in names:
            assert getattr(module, name).__doc__, f"{module.__name__}.{name} has no docstring"


def test_rays_util_and_dag_names_are_there_and_documented() -> None:
    import sluice.dag
    import sluice.util
    import sluice.util.queue

    for module, names in ((sluice.util, ("ActorPool", "get_node_ip_address")),
                          (sluice.util.queue, ("Queue", "Empty", "Full")),
                          (sluice.dag, ("InputNode", "MultiOutputNode", "DAGNode"))):
        for name in names:
            assert name in getattr(module, "__all__", names), f"{module.__name__}.{name}"
            assert getattr(module, name).__doc__, f"{module.__name__}.{name} has no docstring"
