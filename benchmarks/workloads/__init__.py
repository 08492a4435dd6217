"""The side-by-side workloads, one module each.

A workload module has ``TITLE``, ``TARGET_VS_RAY`` (the sluice/Ray ratio of medians to
reach, or None) and ``run_sluice``, ``run_ray``, ``run_dask``: each ``(reps, quick) ->
Timings`` or None where that system has no idiom for the workload. Optional:
``TARGET_VS_DASK`` (the sluice/Dask ratio to reach, where it is stricter than the
report's "faster than Dask"), ``run_pyarrow`` with ``TARGET_VS_PYARROW`` (a baseline
that only some workloads have, see ``BASELINES``), and ``skip_reason()`` returning a
string that makes the runner skip the whole workload.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType

NAMES = ("tasks", "chain", "objects", "actor", "dag", "compiled", "fanin", "fib", "nested", "etl",
         "etl_rows", "pool")
SYSTEMS = ("sluice", "ray", "dask", "pyarrow")
# Systems that only the workloads with a run_<system> have: a single-process script doing
# the same steps. The runner does not note their absence from the other workloads.
BASELINES = ("pyarrow",)


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


def has_system(module: ModuleType, system: str) -> bool:
    """Whether the workload's results have a place for ``system``: every workload has
    one for each system it compares (a '-' where that system has no idiom), but only
    the workloads that define a baseline have one for it."""
    return system not in BASELINES or runner_for(module, system) is not None
