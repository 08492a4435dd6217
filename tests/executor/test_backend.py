"""Every backend class implements the Backend protocol, member for member.

Three checks, from cheap to strict: each member exists with a call signature the
Protocol's callers can use (``inspect.signature``); a running local runtime and a
worker's API are ``isinstance`` of the ``runtime_checkable`` Protocol (the
conformance suite checks the cluster and Dask drivers the same way); and mypy
finds each class assignable to ``Backend``, argument and return types included.
"""

from __future__ import annotations

import inspect
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import sluice
from sluice.executor import api
from sluice.executor.backend import ActorInfo, Backend, NodeInfo, ObjectLocation
from sluice.executor.cluster.client import ClusterClient
from sluice.executor.runtime import Runtime
from sluice.executor.worker import Worker
from sluice.executor.worker_api import WorkerAPI

REPO_ROOT = Path(__file__).resolve().parents[2]


def backend_classes() -> list[type]:
    classes: list[type] = [Runtime, WorkerAPI, Worker, ClusterClient]
    try:
        from sluice.executor.dask_backend import DaskRuntime
    except ImportError:  # the [dask] extra is not installed
        return classes
    return [*classes, DaskRuntime]


def protocol_members() -> dict[str, object]:
    return {name: value for name, value in vars(Backend).items()
            if not name.startswith("_") and (callable(value) or isinstance(value, property))}


def test_the_protocol_names_every_operation_the_api_needs() -> None:
    assert set(protocol_members()) == {
        "is_driver", "new_object_id", "new_actor_id", "add_local_ref", "remove_local_ref",
        "actor_handle_event", "submit_task", "create_actor", "submit_actor_task",
        "submit_actor_chain", "check_feasible", "put", "get", "wait", "cancel", "kill",
        "object_locations", "get_actor", "cluster_resources", "available_resources", "nodes",
        "store_capacity", "shutdown", "named_actors", "context_info", "state",
        "worker_logs", "record_metric",
    }
    for name, member in protocol_members().items():
        doc = member.fget.__doc__ if isinstance(member, property) else member.__doc__
        assert doc and len(doc.split()) >= 5, f"Backend.{name} does not state its contract"


def call_shape_problems(proto: inspect.Signature, impl: inspect.Signature) -> list[str]:
    """Why a call that fits ``proto`` might not fit ``impl`` (empty: every call fits)."""
    want = [p for p in proto.parameters.values() if p.name != "self"]
    have = [p for p in impl.parameters.values() if p.name != "self"]
    problems = []
    for i, p in enumerate(want):
        if i >= len(have):
            problems.append(f"lacks parameter {p.name}")
            continue
        q = have[i]
        if (q.name, q.kind) != (p.name, p.kind):
            problems.append(f"parameter {i} is {q.name} ({q.kind}), not {p.name} ({p.kind})")
        if p.default is not p.empty and q.default != p.default:
            problems.append(f"{p.name} defaults to {q.default!r}, not {p.default!r}")
    problems += [f"extra parameter {q.name} has no default" for q in have[len(want):]
                 if q.default is q.empty and q.kind not in (q.VAR_POSITIONAL, q.VAR_KEYWORD)]
    return problems


@pytest.mark.parametrize("cls", backend_classes(), ids=lambda c: c.__name__)
def test_each_backend_class_has_every_member_with_a_compatible_signature(cls: type) -> None:
    for name, member in protocol_members().items():
        assert hasattr(cls, name), f"{cls.__name__} lacks Backend.{name}"
        if isinstance(member, property):
            assert isinstance(getattr(cls, name), (bool, property)), f"{cls.__name__}.{name}"
            continue
        impl = getattr(cls, name)
        assert callable(impl), f"{cls.__name__}.{name} is not a method"
        problems = call_shape_problems(inspect.signature(member), inspect.signature(impl))
        assert not problems, f"{cls.__name__}.{name}: {'; '.join(problems)}"


def test_the_signature_check_catches_a_mismatch() -> None:
    def wait(self, refs, timeout, num_returns):
        pass

    def cancel(self, ref, force=True, recursive=True):
        pass

    assert call_shape_problems(inspect.signature(Backend.wait), inspect.signature(wait)) == [
        "parameter 1 is timeout (POSITIONAL_OR_KEYWORD), not num_returns (POSITIONAL_OR_KEYWORD)",
        "parameter 2 is num_returns (POSITIONAL_OR_KEYWORD), not timeout (POSITIONAL_OR_KEYWORD)",
    ]
    assert call_shape_problems(inspect.signature(Backend.cancel), inspect.signature(cancel)) == [
        "force defaults to True, not False"]


def test_mypy_finds_every_backend_class_assignable_to_the_protocol(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    names = [cls.__name__ for cls in backend_classes()]
    imports = "\n".join(f"from {cls.__module__} import {cls.__name__}" for cls in backend_classes())
    params = ", ".join(f"a{i}: {name}" for i, name in enumerate(names))
    items = ", ".join(f"a{i}" for i in range(len(names)))
    check = tmp_path / "check_backends.py"
    check.write_text(f"from sluice.executor.backend import Backend\n{imports}\n\n\n"
                     f"def every_backend({params}) -> list[Backend]:\n    return [{items}]\n")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--ignore-missing-imports", "--follow-imports=silent",
         "--cache-dir", str(tmp_path / "cache"), str(check)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_local_runtime_is_a_backend_and_answers_as_one_node() -> None:
    sluice.init(num_cpus=1, object_store_memory=200 << 20)
    try:
        rt = api.runtime()
        assert isinstance(rt, Backend) and rt.is_driver
        [node] = rt.nodes()
        assert node == NodeInfo("local", node.address, True, {"CPU": 1.0, "GPU": node.resources["GPU"],
                                "memory": node.resources["memory"]}, 200 << 20)
        assert node.resources["memory"] > 0  # 70% of the memory available at start, as in Ray
        assert rt.store_capacity() == 200 << 20
        assert sluice.nodes() == [{"NodeID": "local", "Alive": True, "alive": True,
                                   "NodeManagerAddress": node.address, "NodeName": node.address,
                                   "Resources": node.resources}]
    finally:
        sluice.shutdown()


@sluice.remote
def backend_inside() -> tuple[bool, bool, str]:
    rt = api.runtime()
    return isinstance(rt, Backend), rt.is_driver, type(rt).__name__


def test_a_workers_api_is_a_backend_that_is_not_the_driver() -> None:
    sluice.init(num_cpus=1)
    try:
        assert sluice.get(backend_inside.remote(), timeout=60) == (True, False, "Worker")
    finally:
        sluice.shutdown()


def test_records_are_plain_picklable_values() -> None:
    records = [NodeInfo("1", "10.0.0.1", True, {"CPU": 2.0}, 1 << 30),
               ObjectLocation(7, ("1", "2"), 4096), ObjectLocation(8),
               ActorInfo(3, "Counter", {"add": {"num_returns": 1}})]
    assert [pickle.loads(pickle.dumps(r)) for r in records] == records
    assert ObjectLocation(8) == ObjectLocation(8, (), None)
