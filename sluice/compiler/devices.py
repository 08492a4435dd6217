"""Moving values between host and GPU memory: what a TRANSFER op does on a worker.

The GPU placement pass (``passes/gpu.py``) makes every host<->device copy an
explicit op; a worker runs ``to_device`` or ``to_host`` for it. With cupy
importable and a CUDA device present, numpy arrays (also inside lists, tuples
and dicts) move with ``cupy.asarray`` and come back with ``.get()``. Without
cupy or a device both functions return the value unchanged: GPUs are then
logical (a resource the scheduler counts), and plans that place ops on them
still run and stay testable on any machine.

cupy is imported lazily, on a worker's first transfer: the compiler and the
driver never touch CUDA, so worker processes forked from the driver start with
a clean CUDA state.

>>> import numpy as np
>>> a = np.arange(3)
>>> gpu_available() or to_host(to_device(a)) is a
True
"""

from __future__ import annotations

import functools
from typing import Any


def gpu_available() -> bool:
    """True when cupy imports and sees at least one CUDA device (probed once per process)."""
    return _cupy() is not None


def to_device(value: Any) -> Any:
    """``value`` with its numpy arrays copied into GPU memory (cupy arrays).

    Lists, tuples and dicts are walked; any other value (and every value when no
    GPU is available) is returned unchanged.
    """
    cupy = _cupy()
    if cupy is None:
        return value
    import numpy

    return _map_arrays(value, numpy.ndarray, cupy.asarray)


def to_host(value: Any) -> Any:
    """``value`` with its cupy arrays copied back into host memory (numpy arrays).

    Lists, tuples and dicts are walked; any other value (and every value when no
    GPU is available) is returned unchanged.
    """
    cupy = _cupy()
    if cupy is None:
        return value
    return _map_arrays(value, cupy.ndarray, lambda array: array.get())


def _map_arrays(value: Any, array_type: type, move: Any) -> Any:
    # Values nest shallowly (a tuple of arrays, a dict of columns): recursion is safe here.
    if isinstance(value, array_type):
        return move(value)
    if type(value) is list:
        return [_map_arrays(v, array_type, move) for v in value]
    if type(value) is tuple:
        return tuple(_map_arrays(v, array_type, move) for v in value)
    if type(value) is dict:
        return {k: _map_arrays(v, array_type, move) for k, v in value.items()}
    return value


@functools.cache
def _cupy() -> Any:
    """The cupy module when it imports and a CUDA device is present, else None."""
    try:
        import cupy
    except Exception:  # not installed, or installed without a usable CUDA toolkit
        return None
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
    except Exception:  # cupy present but no driver or device: CUDARuntimeError and kin
        return None
    return cupy
