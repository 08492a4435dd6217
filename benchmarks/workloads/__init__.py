"""The side-by-side workloads, one module each.

A workload module has ``TITLE``, ``TARGET_VS_RAY`` (the sluice/Ray ratio of medians to
reach, or None) and ``run_sluice``, ``run_ray``, ``run_dask``: each ``(reps, quick) ->
Timings`` or None where that system has no idiom for the workload. An optional
``skip_reason()`` returning a string makes the runner skip the whole workload.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType

NAMES = ("tasks", "chain", "objects", "actor", "dag", "compiled", "fanin", "etl")
SYSTEMS = ("sluice", "ray", "dask")


def load(name: str) -> ModuleType:
    """The workload module called ``name``."""
    if name not in NAMES:
        raise ValueError(f"unknown workload {name!r}; choose from {', '.join(NAMES)}")
    return importlib.import_module(f"benchmarks.workloads.{name}")


def runner_for(module: ModuleType, system: str) -> Callable | None:
    """The module's ``run_<system>``, or None when the system has no idiom for it."""
    if system not in SYSTEMS:
        raise ValueError(f"unknown system {system!r}; choose from {', '.join(SYSTEMS)}")
    return getattr(module, f"run_{system}", None)
