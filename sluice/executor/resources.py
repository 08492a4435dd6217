"""Resource accounting for one node: CPUs, logical GPUs and custom resources."""

from __future__ import annotations

import math
import os

from sluice.exceptions import InfeasibleResourceError

ResourceKey = tuple[tuple[str, float], ...]
"""A demand in canonical form: sorted (name, amount) pairs with amount > 0."""


def demand_key(num_cpus: float, num_gpus: float, resources: dict[str, float] | None) -> ResourceKey:
    """The canonical, hashable form of a task's resource demand."""
    items: dict[str, float] = {}
    if num_cpus:
        items["CPU"] = float(num_cpus)
    if num_gpus:
        items["GPU"] = float(num_gpus)
    for name, amount in (resources or {}).items():
        if name in ("CPU", "GPU"):
            raise ValueError(f"resources={{{name!r}: ...}}: use num_cpus/num_gpus for {name}")
        if amount < 0:
            raise ValueError(f"resources[{name!r}]={amount} must not be negative")
        if amount:
            items[name] = float(amount)
    return tuple(sorted(items.items()))


# The share of the memory available at start a node offers as its "memory" resource (Ray's
# rule: 70% of available memory; the object store is sized apart, from /dev/shm).
DEFAULT_MEMORY_FRACTION = 0.7


def default_node_memory() -> float:
    """A node's ``"memory"`` resource when none is given: 70% of the memory available now
    (``MemAvailable`` of /proc/meminfo, else free physical pages), in bytes."""
    available = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            available = 1 << 30
    return float(int(available * DEFAULT_MEMORY_FRACTION))


def with_default_memory(total: dict[str, float]) -> dict[str, float]:
    """``total`` with a ``"memory"`` resource (:func:`default_node_memory`) unless it has one."""
    return total if "memory" in total else {**total, "memory": default_node_memory()}


def gpu_need(key: ResourceKey) -> float:
    """The GPUs ``key`` asks for, also as a placement group's (``GPU_group_...``): those get
    GPU ids too (a group's bundle takes a count of GPUs; its tasks take the ids).

    >>> gpu_need((("CPU", 1.0), ("GPU", 0.5))), gpu_need((("GPU_group_0_ab", 1.0),))
    (0.5, 1.0)
    """
    for name, amount in key:
        if name == "GPU" or name.startswith("GPU_group_"):
            return amount
    return 0.0


class NodeResources:
    """What a node has, and what is free now. GPUs are also handed out by id."""

    def __init__(self, total: dict[str, float]):
        self.total = {k: float(v) for k, v in total.items()}
        self.available = dict(self.total)
        # Remaining capacity of each GPU id (fractional requests share an id, as in Ray).
        self.gpu_free = [1.0] * int(self.total.get("GPU", 0))

    def check_feasible(self, key: ResourceKey, what: str) -> None:
        """Raise at once for a demand no amount of waiting could meet."""
        for name, amount in key:
            have = self.total.get(name, 0.0)
            if amount > have:
                if name == "CPU":
                    hint = f"num_cpus={amount:g} requested but this sluice runtime has {have:g} CPUs; " \
                           f"lower num_cpus or start it with sluice.init(num_cpus=...)"
                elif name == "GPU":
                    hint = f"num_gpus={amount:g} requested but this sluice runtime has {have:g} GPUs; " \
                           f"start it with sluice.init(num_gpus=...) or drop the request"
                else:
                    hint = f"resources={{{name!r}: {amount:g}}} requested but this sluice runtime has " \
                           f"{have:g} of {name!r}; start it with sluice.init(resources={{{name!r}: ...}})"
                raise InfeasibleResourceError(f"{what}: {hint}")
            if name == "GPU" and amount > 1 and amount != int(amount):
                raise InfeasibleResourceError(
                    f"{what}: num_gpus={amount:g}; ask for a fraction below 1 or a whole number of GPUs")

    def try_acquire(self, key: ResourceKey) -> list[int] | None:
        """Take ``key`` if it fits now; returns the GPU ids granted ([] for none), else None."""
        avail = self.available
        for name, amount in key:
            if avail.get(name, 0.0) < amount - 1e-9:
                return None
        gpus = self._pick_gpus(gpu_need(key))
        if gpus is None:
            return None
        for name, amount in key:
            avail[name] -= amount
        return gpus

    def release(self, key: ResourceKey, gpu_ids: list[int]) -> None:
        """Give back what :meth:`try_acquire` took."""
        for name, amount in key:
            self.available[name] += amount
        need = gpu_need(key)
        share = need if need < 1 else 1.0
        for g in gpu_ids:
            self.gpu_free[g] = min(1.0, self.gpu_free[g] + share)

    def force_acquire(self, key: ResourceKey) -> None:
        """Take back the CPUs :meth:`lend` returned, even if that oversubscribes (a worker
        resuming after a get)."""
        for name, amount in key:
            if name == "CPU":
                self.available[name] -= amount

    def lend(self, key: ResourceKey) -> None:
        """Return a blocked worker's CPUs to the pool while it waits, as Ray does; its GPUs
        and custom resources stay held (they limit how many such tasks run at once)."""
        for name, amount in key:
            if name == "CPU":
                self.available[name] += amount

    def _pick_gpus(self, need: float) -> list[int] | None:
        if need <= 0:
            return []
        free = self.gpu_free
        if need < 1:
            for g, cap in enumerate(free):
                if cap >= need - 1e-9:
                    free[g] = cap - need
                    return [g]
            return None
        whole = [g for g, cap in enumerate(free) if cap >= 1.0 - 1e-9][: math.ceil(need)]
        if len(whole) < need:
            return None
        for g in whole:
            free[g] = 0.0
        return whole
