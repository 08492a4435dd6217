"""What the ``dask`` backend asks of the Dask cluster: its workers as nodes, their
resources and memory, feasibility of a demand, the worker a ``scheduling_strategy``
names, and the crash limit ``max_retries`` is held to. A mixin of
:class:`~sluice.executor.dask_backend.DaskRuntime` (``client``, ``is_driver`` and
the caches live there).
"""

from __future__ import annotations

from typing import Any

import dask
from distributed import Client

from sluice.exceptions import InfeasibleResourceError, UnsupportedOnBackendError
from sluice.executor.backend import NodeInfo
from sluice.executor.dask_tasks import allowed_failures, fits, infeasible_hint, used_resources
from sluice.executor.resources import ResourceKey, demand_key
from sluice.executor.strategies import PlacementGroupSchedulingStrategy, affinity_node

UNLIMITED_WORKER_BYTES = 1 << 30
"""What ``store_capacity`` counts for a Dask worker started without a memory limit."""


def describe_limit(n: int) -> str:
    """An option's count as the user wrote it (-1 was stored as a huge number)."""
    return "-1 (no limit)" if n >= 1 << 30 else str(n)


class DaskClusterInfo:
    """The cluster queries and option checks of the dask backend. See the module docstring."""

    client: Client
    is_driver: bool
    _feasible: dict[tuple, dict | None]
    _crash_policy: tuple[int, bool] | None

    def crash_policy(self) -> tuple[int, bool]:
        """(the scheduler's ``allowed-failures``, whether a task can ask it how often its
        workers died): the limits ``max_retries`` is held to."""
        if self._crash_policy is None:
            try:
                self._crash_policy = (int(self.client.run_on_scheduler(allowed_failures)), True)
            except Exception:  # the scheduler runs no functions for clients
                self._crash_policy = (int(dask.config.get("distributed.scheduler.allowed-failures")),
                                      False)
        return self._crash_policy

    def _retry(self, options: dict, name: str) -> tuple[int, Any, bool]:
        """A task's ``(max_retries, retry_exceptions, whether it counts its crashes)``.

        Dask reruns a task whose worker died until the scheduler's allowed-failures
        are spent. A task allowed fewer asks the scheduler how often it crashed when it
        starts; one allowed more cannot be served.
        """
        n = options["max_retries"]
        allowed, can_count = self.crash_policy()
        if n > allowed or (n < allowed and not can_count):
            why = "" if can_count else (", and this scheduler runs no functions for clients "
                                        "(run_on_scheduler failed), so no task can stop sooner")
            use = f"max_retries<={allowed}" if can_count else f"max_retries={allowed}"
            raise UnsupportedOnBackendError(
                f"task {name}: max_retries={describe_limit(n)} on the dask backend: Dask reruns a "
                f"task whose worker died up to distributed.scheduler.allowed-failures={allowed} "
                f"times, the same for every task{why}; use {use}, set allowed-failures on the Dask "
                "scheduler, or use the local or cluster backend")
        return n, options["retry_exceptions"], n < allowed

    def check_feasible(self, demand: ResourceKey, what: str) -> None:
        """Raise InfeasibleResourceError when no Dask worker declares what ``demand`` asks."""
        self._restrictions(demand, what)

    def _resources(self, options: dict, what: str) -> dict | None:
        key = demand_key(options["num_cpus"], options["num_gpus"], options["resources"])
        return self._restrictions(key, what)

    def _restrictions(self, key: ResourceKey, what: str) -> dict | None:
        """The Dask resource restrictions of a demand; raises if no worker could ever meet it.

        CPUs are reserved only where the workers declare a CPU resource (else a Dask
        thread is a task's CPU), and not for tasks submitted from tasks: their parent,
        blocked in get, holds its own (as the local runtime lends a blocked task's CPUs).
        ``memory=`` is reserved only where the workers declare a ``memory`` resource.
        """
        if key not in self._feasible:
            declared = self._declared_resources()
            demand = dict(key)
            if not self.is_driver or not any("CPU" in w for w in declared):
                demand.pop("CPU", None)
            if not any("memory" in w for w in declared):  # as Dask, memory= is then a hint only
                demand.pop("memory", None)
            if demand and not fits(demand, declared):
                declared = self._declared_resources()  # workers may have joined since
                if declared and not fits(demand, declared):  # no workers yet: Dask waits for them
                    raise InfeasibleResourceError(f"{what}: {infeasible_hint(demand, declared)}")
            self._feasible[key] = demand or None
        return self._feasible[key]

    def _placement(self, options: dict, what: str) -> dict[str, Any]:
        """Dask's ``workers``/``allow_other_workers`` for the ``scheduling_strategy`` option.

        A node id is a worker address. A soft affinity needs no check: Dask runs the
        task on that worker while it lives and anywhere once it does not. A hard one
        naming no live worker would wait for ever in Dask, so it fails here.
        """
        if isinstance(options.get("scheduling_strategy"), PlacementGroupSchedulingStrategy):
            raise UnsupportedOnBackendError(placement_groups_unsupported(what))
        node, soft = affinity_node(options.get("scheduling_strategy"))
        if node is None:
            return {}
        if not soft:
            workers = sorted(self._workers())
            if node not in workers:
                raise ValueError(
                    f"{what}: NodeAffinitySchedulingStrategy(node_id={node!r}, soft=False) names no "
                    f"live Dask worker; give one of {', '.join(workers) or '(none)'} (the node_id of "
                    "an entry of the backend's nodes()), or soft=True to run elsewhere when it is gone")
        return {"workers": [node], "allow_other_workers": soft}

    def placement_group_op(self, op: str, arg: Any) -> Any:
        """Placement groups are not run on Dask: see :func:`placement_groups_unsupported`."""
        raise UnsupportedOnBackendError(placement_groups_unsupported("placement groups"))

    def placement_group_ready(self, group_id: str) -> Any:
        raise UnsupportedOnBackendError(placement_groups_unsupported("placement groups"))

    def _declared_resources(self) -> list[dict]:
        return [dict(w.get("resources") or {}) for w in self._workers().values()]

    def _workers(self) -> dict[str, dict]:
        return self.client.scheduler_info(n_workers=-1)["workers"]

    def nodes(self) -> list[NodeInfo]:
        """One node per Dask worker: its threads are its CPUs unless it declares CPU."""
        return [NodeInfo(address, address, True,
                         {"CPU": float(w.get("nthreads", 0)), "GPU": 0.0,
                          **{k: float(v) for k, v in (w.get("resources") or {}).items()}},
                         int(w.get("memory_limit") or 0))
                for address, w in self._workers().items()]

    def store_capacity(self) -> int:
        """The memory limits of the Dask workers, together (:data:`UNLIMITED_WORKER_BYTES`
        for a worker without one)."""
        return sum(n.store_capacity or UNLIMITED_WORKER_BYTES for n in self.nodes())

    def state(self, kind: str) -> list[dict[str, Any]]:
        """Only nodes: Dask's own scheduler keeps its tasks (its dashboard shows them)."""
        if kind == "nodes":
            return [{"node_id": n.node_id, "node_ip": n.address, "is_head_node": False,
                     "state": "ALIVE", "node_name": n.address,
                     "resources_total": dict(n.resources), "store_capacity": n.store_capacity}
                    for n in self.nodes()]
        raise UnsupportedOnBackendError(
            f"listing {kind} on the dask backend: Dask's scheduler keeps them, not sluice; "
            f"open the Dask dashboard (client.dashboard_link), or use the local or cluster "
            f"backend")

    def record_metric(self, update: tuple) -> None:
        """Dask has its own metrics (its dashboard's Prometheus endpoint)."""
        raise UnsupportedOnBackendError(
            "sluice.util.metrics on the dask backend: Dask exports its own metrics (its "
            "scheduler's /metrics); use the local or cluster backend")

    def worker_logs(self, filename: str | None = None, tail: int = -1) -> Any:
        """Dask's workers keep their own logs (client.get_worker_logs())."""
        raise UnsupportedOnBackendError(
            "worker logs on the dask backend: Dask's workers keep them; read them with "
            "client.get_worker_logs(), or use the local or cluster backend")

    def cluster_resources(self) -> dict[str, float]:
        total: dict[str, float] = {}
        for node in self.nodes():
            for name, amount in node.resources.items():
                total[name] = total.get(name, 0.0) + amount
        return total

    def available_resources(self) -> dict[str, float]:
        total = self.cluster_resources()
        try:
            busy, used, cpu_declared = self.client.run_on_scheduler(used_resources)
        except Exception:  # the scheduler does not run functions: report the totals
            return total
        available = {name: amount - used.get(name, 0.0) for name, amount in total.items()}
        if not cpu_declared:  # CPUs are threads: one per running task
            available["CPU"] = max(0.0, total["CPU"] - busy)
        return available


def placement_groups_unsupported(what: str) -> str:
    """Why the Dask backend runs no placement group."""
    return (f"{what}: the dask backend has no placement groups: Dask cannot reserve resources on "
            "workers ahead of the tasks that use them (its resources are only per-task "
            "restrictions), so a group's bundles could not be held together; use the local or "
            "cluster backend, or give tasks resources= directly")
