"""``ray.util.placement_group`` for sluice programs: bundles of resources reserved together.

>>> import sluice
>>> from sluice.util import placement_group, remove_placement_group
>>> sluice.init(num_cpus=2)
>>> pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="PACK")
>>> pg.wait(timeout_seconds=30)
True
>>> remove_placement_group(pg)
>>> sluice.shutdown()

How bundles are placed, and what removal and a node's death do, is in
:mod:`sluice.executor.placement_groups`.
"""

from __future__ import annotations

import math
import numbers
import uuid
from typing import Any

from sluice.executor.api import get, runtime
from sluice.executor.object_ref import ObjectRef
from sluice.executor.placement_groups import STRATEGIES
from sluice.store import serialization


class PlacementGroupID(str):
    """A placement group's id: its hex text, with Ray's ``hex()`` and ``binary()``.

    >>> PlacementGroupID("0a1b").hex(), PlacementGroupID("0a1b").binary()
    ('0a1b', b'\\n\\x1b')
    """

    __slots__ = ()

    def hex(self) -> str:
        """The id as hex text (as Ray's ``PlacementGroupID.hex()``)."""
        return str(self)

    def binary(self) -> bytes:
        """The id's bytes (as Ray's ``PlacementGroupID.binary()``)."""
        return bytes.fromhex(self)


class PlacementGroup:
    """A handle to a placement group: its ``id`` and ``bundle_specs`` (one dict of resources
    per bundle). Plain data: it pickles into tasks and compares by id."""

    def __init__(self, id: str, bundle_specs: list[dict[str, float]]):
        self.id = PlacementGroupID(id)
        self.bundle_specs = bundle_specs

    @property
    def bundle_count(self) -> int:
        """How many bundles the group has."""
        return len(self.bundle_specs)

    def ready(self) -> ObjectRef:
        """An ObjectRef that resolves to this group once every bundle is reserved; ``get`` of it
        raises :class:`~sluice.exceptions.UnschedulableError` when the group can never be
        (no node could hold it, it was removed, or its node died with no room left elsewhere)."""
        return runtime().placement_group_ready(self.id)

    def wait(self, timeout_seconds: float = 30) -> bool:
        """Whether every bundle is reserved within ``timeout_seconds`` (False when not yet);
        raises as :meth:`ready` does when the group can never be reserved."""
        ref = self.ready()
        if not runtime().wait([ref], 1, timeout_seconds):
            return False
        get(ref)
        return True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PlacementGroup) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"PlacementGroup(id={self.id!r}, bundle_specs={self.bundle_specs!r})"


def check_bundles(bundles: Any) -> list[dict[str, float]]:
    """``bundles`` as a list of ``{resource: amount}``; ``ValueError`` naming the bad one.

    >>> check_bundles([{"CPU": 1}])
    [{'CPU': 1.0}]
    >>> check_bundles([{"CPU": 0}])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: placement_group: bundle 0 {'CPU': 0} asks for no resources; ...
    """
    if not isinstance(bundles, (list, tuple)) or not bundles:
        raise ValueError(f"placement_group: bundles={bundles!r} must be a non-empty list of dicts "
                         "such as [{'CPU': 1}, {'CPU': 1, 'GPU': 1}]")
    out = []
    for i, b in enumerate(bundles):
        if not isinstance(b, dict):
            raise ValueError(f"placement_group: bundle {i} {b!r} must be a dict of resource -> amount")
        for name, amount in b.items():
            if not isinstance(name, str) or not name or "_group_" in name:
                raise ValueError(f"placement_group: bundle {i} {b!r}: resource name {name!r} must be "
                                 "a non-empty str without '_group_' (placement groups name theirs so)")
            if isinstance(amount, bool) or not isinstance(amount, numbers.Real) \
                    or not math.isfinite(amount) or amount < 0:
                raise ValueError(f"placement_group: bundle {i} {b!r}: {name}={amount!r} must be a "
                                 "number >= 0")
        if not any(amount > 0 for amount in b.values()):
            raise ValueError(f"placement_group: bundle {i} {b!r} asks for no resources; give each "
                             "bundle at least one amount above 0")
        out.append({name: float(amount) for name, amount in b.items() if amount > 0})
    return out


def placement_group(bundles: list[dict[str, float]], strategy: str = "PACK", name: str = "",
                    lifetime: str | None = None) -> PlacementGroup:
    """Reserve ``bundles`` (``[{"CPU": 1}, ...]``) together, placed by ``strategy``: ``"PACK"``
    (as few nodes as room allows), ``"SPREAD"`` (distinct nodes where room allows),
    ``"STRICT_PACK"`` (one node) or ``"STRICT_SPREAD"`` (each bundle on its own node).

    Returns at once; :meth:`PlacementGroup.ready` / :meth:`PlacementGroup.wait` tell when the
    bundles are reserved. ``name`` makes it reachable with :func:`get_placement_group`;
    ``lifetime`` is None (on a cluster, removed when the driver that made it disconnects) or
    ``"detached"`` (lives until removed or the cluster stops).
    """
    specs = check_bundles(bundles)
    if strategy not in STRATEGIES:
        raise ValueError(f"placement_group: strategy={strategy!r} is not one of "
                         f"{', '.join(STRATEGIES)}")
    if not isinstance(name, str):
        raise ValueError(f"placement_group: name={name!r} must be a str ('' for none)")
    if lifetime not in (None, "detached"):
        raise ValueError(f"placement_group: lifetime={lifetime!r} must be None or 'detached'")
    pg = PlacementGroup(uuid.uuid4().hex[:20], specs)
    problem = runtime().placement_group_op(
        "create", (pg.id, name, specs, strategy, lifetime, serialization.dumps(pg)))
    if problem is not None:
        raise ValueError(f"placement_group: {problem}")
    return pg


def remove_placement_group(placement_group: PlacementGroup) -> None:
    """Free ``placement_group``'s reservation; its tasks and actors are stopped (their results
    raise :class:`~sluice.exceptions.UnschedulableError`), and ``ready()`` of a pending one fails."""
    if not isinstance(placement_group, PlacementGroup):
        raise TypeError(f"remove_placement_group: {placement_group!r} is not a PlacementGroup")
    runtime().placement_group_op("remove", placement_group.id)


def get_placement_group(placement_group_name: str) -> PlacementGroup:
    """The live group created with ``name=placement_group_name``; ``ValueError`` if none."""
    found = runtime().placement_group_op("get", placement_group_name)
    if found is None:
        raise ValueError(f"get_placement_group: no placement group named {placement_group_name!r} "
                         "(it was never made, or was removed); create it with "
                         f"placement_group(bundles, name={placement_group_name!r})")
    return PlacementGroup(found[0], found[1])


def placement_group_table(placement_group: PlacementGroup | None = None) -> dict[str, Any]:
    """The state of one group (a dict with Ray's keys: ``placement_group_id``, ``name``,
    ``bundles``, ``bundles_to_node_id``, ``strategy``, ``state``), or of every group by id."""
    if placement_group is None:
        return runtime().placement_group_op("table", None)
    row = runtime().placement_group_op("table", placement_group.id)
    if row is None:
        raise ValueError(f"placement_group_table: {placement_group!r} is not in this runtime")
    return row


def get_current_placement_group() -> PlacementGroup | None:
    """The placement group the calling task or actor runs in; None in the driver or outside
    any group."""
    rt = runtime()
    ask = getattr(rt, "_ask", None)  # a worker's backend asks its driver; others run in none
    if rt.is_driver or ask is None:
        return None
    found = ask("current_pg", None)
    return None if found is None else PlacementGroup(found[0], found[1])
