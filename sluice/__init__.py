"""sluice: parallel Python over a shared-memory object store.

The public API, re-exported; nothing else lives here. ``Plan`` is imported on
first use: the compiler (and networkx) is not needed to run tasks, and every
worker imports this package.
"""

from typing import TYPE_CHECKING

from sluice import actor, exceptions  # noqa: F401  (actor: Ray's ray.actor module)
from sluice.dsl.actor import ActorClass, ActorHandle, get_actor
from sluice.dsl.nodes import DAGNode, InputNode, MultiOutputNode, compile
from sluice.dsl.options import method
from sluice.dsl.remote import RemoteFunction, remote
from sluice.executor.api import (
    available_resources,
    cancel,
    cluster_resources,
    get,
    get_gpu_ids,
    init,
    is_initialized,
    kill,
    nodes,
    put,
    shutdown,
    wait,
)
from sluice.executor.generators import ObjectRefGenerator
from sluice.executor.object_ref import ObjectRef
from sluice.executor.runtime_context import RuntimeContext, get_runtime_context

# ``sluice.util.ActorPool`` and ``sluice.dag.InputNode`` work after a bare ``import sluice``,
# as ``ray.util`` and ``ray.dag`` do after ``import ray`` (submodules, not public names here).
from sluice import dag, util  # noqa: E402,F401  (isort: skip)

if TYPE_CHECKING:
    from sluice.compiler.plan import Plan


def __getattr__(name: str) -> object:
    if name == "Plan":
        from sluice.compiler.plan import Plan

        return Plan
    if name == "timeline":  # Ray's ray.timeline
        from sluice.util.timeline import timeline

        return timeline
    if name == "util":  # Ray's ray.util, reachable after a plain ``import sluice`` as there
        import sluice.util

        return sluice.util
    raise AttributeError(f"module 'sluice' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), "Plan", "timeline"})


__version__ = "0.1.0"

__all__ = [
    "ActorClass",
    "ActorHandle",
    "DAGNode",
    "InputNode",
    "MultiOutputNode",
    "Plan",
    "ObjectRef",
    "ObjectRefGenerator",
    "RemoteFunction",
    "RuntimeContext",
    "available_resources",
    "cancel",
    "cluster_resources",
    "compile",
    "exceptions",
    "get",
    "get_actor",
    "get_gpu_ids",
    "get_runtime_context",
    "init",
    "is_initialized",
    "timeline",
    "kill",
    "method",
    "nodes",
    "put",
    "remote",
    "shutdown",
    "wait",
]
