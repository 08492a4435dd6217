"""The physical Plan: stages of fused ops, ready to run many times.

A Plan is immutable, picklable data; ids are content hashes, so a Plan built
from the same graph is equal in every run. It holds no run state: what
executing it leaves behind (registered functions, actors) is a ``PlanRun``
kept outside it (``sluice.compiler.plan_run``), so one Plan is safe to execute
from many threads. ``execute`` is the runner's (``sluice.compiler.runner``); ``explain`` and ``visualize`` read only the Plan
(through :meth:`Plan.to_json`), so every view of it is the truth.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from sluice.compiler.ir import ActorChain, Op, OpKind, PlacementReason
from sluice.compiler.pass_log import PassChange


@dataclass(frozen=True, slots=True)
class Stage:
    """Ops that run as one unit: one task, one actor creation, or one actor call.

    ``inputs`` are the ids of ops in *other* stages whose values the stage reads
    (its input slots, in order); ``output`` is the op whose value it produces.
    ``placement`` is the node the locality pass put it on (``"local"``: the
    backend chooses), ``placement_reason`` why, for a stage placed on a node.
    """

    id: str
    kind: OpKind
    ops: tuple[Op, ...]
    inputs: tuple[str, ...]
    output: str
    resources: tuple[tuple[str, float], ...] = ()
    device: str = "cpu"
    placement: str = "local"
    placement_reason: PlacementReason | None = None

    @property
    def name(self) -> str:
        """Readable: the member op names joined by ``+``."""
        return "+".join(op.name for op in self.ops)

    @property
    def fused(self) -> bool:
        return len(self.ops) > 1


def stage_id(ops: tuple[Op, ...]) -> str:
    """A content id for a stage: a hash of its member op ids."""
    h = hashlib.blake2b("|".join(op.id for op in ops).encode(), digest_size=6).hexdigest()
    return f"stage-{h}"


@dataclass(frozen=True)
class Plan:
    """What runs when a DAG executes. Build with ``dag.compile()`` or ``sluice.compile(dag)``.

    Attributes are plain data: ``stages`` in a topological order, ``outputs`` (op
    ids returned by ``execute``), ``functions`` ((fn id, pickled function)
    pairs), ``passes`` (the passes that changed the graph), ``blocked`` ((src op,
    dst op, rule) for every edge not fused), ``logical_edges`` (every op-level
    edge, for the logical view), ``actor_chains`` (method calls the runner
    forwards actor to actor), ``not_chained`` ((src op, dst op, rule) for every
    method-to-method edge that is not forwarded) and ``sizes`` ((op id, bytes) of the
    values whose size the backend knew at compile: the bound objects), ``pass_log``
    (each pass that fired with the graph before and after it: ``sluice.compiler.pass_log``).
    """

    stages: tuple[Stage, ...]
    outputs: tuple[str, ...]
    multi_output: bool
    functions: tuple[tuple[int, bytes], ...]
    passes: tuple[str, ...] = ()
    blocked: tuple[tuple[str, str, str], ...] = ()
    logical_edges: tuple[tuple[str, str], ...] = ()
    optimized: bool = True
    jit_stages: tuple[str, ...] = ()   # ids of stages whose calls compile into one numba function
    actor_chains: tuple[ActorChain, ...] = ()
    not_chained: tuple[tuple[str, str, str], ...] = ()
    sizes: tuple[tuple[str, int], ...] = ()
    pass_log: tuple[PassChange, ...] = field(default=(), compare=False, repr=False)

    def function(self, fn_id: int) -> bytes:
        """The pickled function or class with id ``fn_id``."""
        for fid, data in self.functions:
            if fid == fn_id:
                return data
        raise KeyError(f"function {fn_id:x} is not in this plan")

    def stage_of(self, op_id: str) -> Stage:
        """The stage that contains op ``op_id``."""
        for stage in self.stages:
            if any(op.id == op_id for op in stage.ops):
                return stage
        raise KeyError(f"no stage holds op {op_id!r}")

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        """Run the plan once on ``args``/``kwargs``; returns ObjectRef(s) at once.

        Actors of the plan are created on the first call (once, even when
        several threads make it together) and keep their state across calls;
        nothing is re-planned.
        """
        from sluice.compiler.runner import execute_plan

        return execute_plan(self, args, kwargs)

    def teardown(self) -> None:
        """Accepted for Ray's compiled graphs (``compiled.teardown()``); does nothing.

        A Plan keeps no loop running on its actors between executes, so there is nothing
        to stop: the actors it created stop when the Plan is garbage collected, and
        running actors bound into it (``handle.method.bind()``) are the caller's.
        """

    def to_json(self) -> dict:
        """The plan as plain JSON-able data: the one description every view draws from."""
        from sluice.compiler.views import plan_to_json

        return plan_to_json(self)

    def explain(self, verbose: bool = False) -> str:
        """Text in the spirit of Spark's ``explain()``: one line per stage, fused ops
        inside, resources and device, the passes that fired, and the rule that
        blocked each edge that was not fused."""
        from sluice.compiler.views import explain

        return explain(self, verbose=verbose)

    def visualize(self, path: str | None = None, level: str = "physical") -> Any:
        """A ``graphviz.Digraph`` of the plan (``level="logical"`` for ops before fusion);
        rendered to ``path`` (svg/png/pdf by suffix) when given."""
        from sluice.compiler.views import visualize

        return visualize(self, path=path, level=level)

    def _repr_svg_(self) -> str:  # Jupyter shows a Plan as its drawing
        return self.visualize()._repr_image_svg_xml()
