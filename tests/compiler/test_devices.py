"""Host<->device copies: pass-through without a GPU, real round trips with one."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from sluice.compiler import devices

needs_gpu = pytest.mark.skipif(not devices.gpu_available(),
                               reason="needs cupy and a CUDA device")


def test_gpu_available_is_false_without_cupy() -> None:
    if importlib.util.find_spec("cupy") is None:
        assert devices.gpu_available() is False
    else:
        assert isinstance(devices.gpu_available(), bool)


@pytest.mark.skipif(devices.gpu_available(), reason="checks the no-GPU pass-through")
def test_values_pass_through_unchanged_without_a_gpu() -> None:
    array = np.arange(6.0).reshape(2, 3)
    nested = {"a": [array, (array, 3)], "b": "text"}
    assert devices.to_device(array) is array
    assert devices.to_host(array) is array
    assert devices.to_device(nested) is nested
    assert devices.to_host(devices.to_device(nested)) is nested


@needs_gpu
def test_array_round_trips_through_the_device() -> None:
    import cupy

    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    on_device = devices.to_device(array)
    assert isinstance(on_device, cupy.ndarray)
    back = devices.to_host(on_device)
    assert isinstance(back, np.ndarray)
    np.testing.assert_array_equal(back, array)


@needs_gpu
def test_containers_round_trip_through_the_device() -> None:
    import cupy

    a, b = np.arange(4), np.ones((2, 2))
    on_device = devices.to_device({"xs": [a, (b, "label")], "n": 3})
    assert isinstance(on_device["xs"][0], cupy.ndarray)
    assert isinstance(on_device["xs"][1][0], cupy.ndarray)
    assert on_device["xs"][1][1] == "label" and on_device["n"] == 3
    back = devices.to_host(on_device)
    np.testing.assert_array_equal(back["xs"][0], a)
    np.testing.assert_array_equal(back["xs"][1][0], b)
    assert type(back["xs"]) is list and type(back["xs"][1]) is tuple
