"""Tests of sluice.executor.resources: demands, feasibility, GPU ids (no processes)."""

from __future__ import annotations

import pytest

from sluice.exceptions import InfeasibleResourceError
from sluice.executor.resources import NodeResources, demand_key


def test_demand_key_is_canonical_and_drops_zeros() -> None:
    assert demand_key(1, 0, None) == (("CPU", 1.0),)
    assert demand_key(0, 1, {"b": 2, "a": 1, "z": 0}) == (("GPU", 1.0), ("a", 1.0), ("b", 2.0))
    assert demand_key(2, 0, {"x": 1}) == demand_key(2.0, 0.0, {"x": 1.0})


def test_demand_key_rejects_cpu_in_resources() -> None:
    with pytest.raises(ValueError, match="use num_cpus/num_gpus for CPU"):
        demand_key(1, 0, {"CPU": 2})


def test_infeasible_demands_name_the_resource_and_the_remedy() -> None:
    node = NodeResources({"CPU": 2, "GPU": 0})
    with pytest.raises(InfeasibleResourceError, match=r"task f: num_gpus=1 requested but .* 0 GPUs"):
        node.check_feasible(demand_key(1, 1, None), "task f")
    with pytest.raises(InfeasibleResourceError, match=r"num_cpus=3 requested but .* 2 CPUs"):
        node.check_feasible(demand_key(3, 0, None), "task f")
    with pytest.raises(InfeasibleResourceError, match=r"resources=\{'disk': 1\}.*init\(resources="):
        node.check_feasible(demand_key(1, 0, {"disk": 1}), "task f")
    node.check_feasible(demand_key(2, 0, None), "task f")  # exactly what it has: fine


def test_acquire_and_release_balance() -> None:
    node = NodeResources({"CPU": 2, "GPU": 0})
    key = demand_key(1, 0, None)
    assert node.try_acquire(key) == []
    assert node.try_acquire(key) == []
    assert node.try_acquire(key) is None  # both CPUs are taken
    node.release(key, [])
    assert node.try_acquire(key) == []
    node.release(key, [])
    node.release(key, [])
    assert node.available == {"CPU": 2.0, "GPU": 0.0}


def test_gpus_are_handed_out_by_id() -> None:
    node = NodeResources({"CPU": 4, "GPU": 2})
    one = demand_key(0, 1, None)
    first, second = node.try_acquire(one), node.try_acquire(one)
    assert sorted(first + second) == [0, 1]
    assert node.try_acquire(one) is None
    node.release(one, first)
    assert node.try_acquire(one) == first


def test_fractional_gpus_share_an_id() -> None:
    node = NodeResources({"CPU": 4, "GPU": 1})
    half = demand_key(0, 0.5, None)
    assert node.try_acquire(half) == [0]
    assert node.try_acquire(half) == [0]
    assert node.try_acquire(half) is None
    node.release(half, [0])
    assert node.try_acquire(half) == [0]


def test_a_blocked_worker_lends_its_cpu_but_keeps_its_gpu() -> None:
    node = NodeResources({"CPU": 1, "GPU": 1})
    key = demand_key(1, 1, None)
    gpus = node.try_acquire(key)
    node.lend(key)
    assert node.available["CPU"] == 1.0 and node.available["GPU"] == 0.0
    node.force_acquire(key)
    node.release(key, gpus)
    assert node.available == {"CPU": 1.0, "GPU": 1.0}


def test_a_blocked_worker_keeps_its_custom_resources() -> None:
    # As in Ray, only CPUs are lent: a custom resource still caps how many tasks run at
    # once when they block in nested gets.
    node = NodeResources({"CPU": 4, "slot": 1})
    key = demand_key(1, 0, {"slot": 1})
    gpus = node.try_acquire(key)
    node.lend(key)
    assert node.available == {"CPU": 4.0, "slot": 0.0}
    assert node.try_acquire(key) is None
    node.force_acquire(key)
    node.release(key, gpus)
    assert node.available == {"CPU": 4.0, "slot": 1.0}
