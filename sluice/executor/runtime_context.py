"""``sluice.get_runtime_context()``: who and where the calling code runs, as Ray's.

In the driver, a task or an actor it reports the job (the driver's), the node
(the id ``sluice.nodes()`` lists as ``NodeID``), the worker process, the task
or actor call running now (None in the driver, as Ray), the actor (None
outside one), the resources granted, the placement group (None outside one)
and the namespace named actors are looked up in. Ids are hex strings, as Ray
prints them. The values are read once, when the context is made: inside a
task that is one round trip to the driver (or the cluster head).
"""

from __future__ import annotations

from typing import Any


class RuntimeContext:
    """The runtime context of the calling driver, task or actor (see the module docstring)."""

    def __init__(self, info: dict[str, Any]):
        self._info = info

    def get_job_id(self) -> str:
        """The id of the job (its driver) the calling code belongs to, in hex."""
        return self._info["job_id"]

    def get_node_id(self) -> str:
        """The id of the node this process runs on: a ``NodeID`` of ``sluice.nodes()``."""
        return self._info["node_id"]

    def get_worker_id(self) -> str:
        """The id of this process (the driver's, or the worker running the task or actor)."""
        return self._info["worker_id"]

    def get_task_id(self) -> str | None:
        """The id of the task or actor call running now; None in the driver."""
        return self._info["task_id"]

    def is_canceled(self) -> bool:
        """Whether the actor call running now was cancelled (``sluice.cancel``) while it runs.

        An async actor's call is cancelled at its next ``await``; a sync or threaded actor's
        call keeps running (actors have state), so a long method can check this and stop
        early, as in Ray. False in the driver and in tasks."""
        from sluice.executor.worker_api import CANCELLED_CALLS, CURRENT_TASK

        return bool(CANCELLED_CALLS) and CURRENT_TASK.get() in CANCELLED_CALLS

    def get_actor_id(self) -> str | None:
        """The id of the actor this code runs in; None outside an actor."""
        return self._info["actor_id"]

    def get_actor_name(self) -> str | None:
        """The name the current actor was given (``options(name=...)``), else None."""
        return self._info["actor_name"]

    def get_assigned_resources(self) -> dict[str, float]:
        """The resources granted to the current task or actor, e.g. ``{"CPU": 1.0}``
        (an actor's own, for its method calls); ``{}`` in the driver."""
        return dict(self._info["resources"])

    def get_placement_group_id(self) -> str | None:
        """The id of the placement group the current task or actor runs in, else None."""
        return self._info["placement_group_id"]

    def get_accelerator_ids(self) -> dict[str, list[str]]:
        """The accelerator ids visible to the current task or actor, as Ray gives them:
        ``{"GPU": ["0", ...]}`` (an empty list without GPUs)."""
        return {"GPU": [str(g) for g in self._info["gpu_ids"]]}

    @property
    def namespace(self) -> str:
        """The namespace of the current job: where ``get_actor`` and ``options(name=)``
        look when no namespace is given."""
        return self._info["namespace"]

    @property
    def was_current_actor_reconstructed(self) -> bool:
        """True in an actor whose process was started again after a crash (``max_restarts``)."""
        return bool(self._info["reconstructed"])

    def get(self) -> dict[str, Any]:
        """The context as a dict (Ray's older form): job, node, namespace, task, actor."""
        out = {"job_id": self.get_job_id(), "node_id": self.get_node_id(),
               "namespace": self.namespace}
        if self.get_task_id() is not None:
            out["task_id"] = self.get_task_id()
        if self.get_actor_id() is not None:
            out["actor_id"] = self.get_actor_id()
        return out

    def __repr__(self) -> str:
        return (f"RuntimeContext(job_id={self.get_job_id()!r}, node_id={self.get_node_id()!r}, "
                f"task_id={self.get_task_id()!r}, actor_id={self.get_actor_id()!r})")


def get_runtime_context() -> RuntimeContext:
    """The runtime context of the calling driver, task or actor (starts the default runtime
    in a driver that has none, as every other call does).

    >>> import sluice
    >>> sluice.init(num_cpus=1, namespace="docs")
    >>> ctx = sluice.get_runtime_context()
    >>> ctx.namespace, ctx.get_task_id(), ctx.get_node_id() == sluice.nodes()[0]["NodeID"]
    ('docs', None, True)
    >>> sluice.shutdown()
    """
    from sluice.executor.api import runtime

    return RuntimeContext(runtime().context_info())


def current_namespace() -> str:
    """The namespace of the calling job (what a name is looked up in when none is given)."""
    from sluice.executor.api import runtime

    return runtime().context_info()["namespace"] or ""
