"""A library's template run with the Plan runner, its actor stages turned into factories.

sluice.tune and sluice.train describe a run as a ``.bind()`` graph (trial actors, a gang of
ranks) that compiles to a Plan like any other; :class:`ActorFactoryHooks` runs that Plan so
that each actor stage becomes a factory, ``make(resources, scheduling_strategy=None) ->
ActorHandle``, of actors of that stage's class and constructor arguments: the library then
starts, reuses, replaces and stops them itself (a trial per actor, a gang per attempt). A
call stage starts nothing.
"""

from __future__ import annotations

from typing import Any, Callable

from sluice.compiler.ir import OpKind
from sluice.compiler.plan import Stage
from sluice.compiler.run import actor_options, call_arguments
from sluice.compiler.runner import Execution, StageHooks, UseValue
from sluice.dsl.actor import ActorHandle


class ActorFactoryHooks(StageHooks):
    """Plan-runner hooks: each actor stage becomes a factory (see the module's docstring).
    :attr:`factories` holds ``(constructor args, make)`` in the order the stages ran."""

    def __init__(self) -> None:
        self.factories: list[tuple[tuple, Callable[..., ActorHandle]]] = []

    @property
    def factory(self) -> Callable[..., ActorHandle]:
        """The factory of the last actor stage (the only one, for a one-actor template)."""
        return self.factories[-1][1]

    def before_stage(self, run: Execution, stage: Stage) -> UseValue | None:
        # A call stage of a template describes what the library does itself (a dataset
        # split over ranks): it is drawn, not run.
        return UseValue(None) if stage.kind is OpKind.CALL else None

    def create_actor(self, run: Execution, stage: Stage) -> Any:
        op = stage.ops[0]
        args, kwargs = call_arguments(op, run._template(op.id, op.template), run.values)
        cls_bytes = run.functions[op.fn_id]
        rt = run.rt
        methods = {m: {"num_returns": n} for m, n in dict(op.options).get("_methods", ())}

        def make(resources: dict[str, float], scheduling_strategy: Any = None) -> ActorHandle:
            options = actor_options(stage)
            rest = dict(resources)
            options["num_cpus"] = rest.pop("CPU", 0.0)
            options["num_gpus"] = rest.pop("GPU", 0.0)
            options["resources"] = rest or None
            if scheduling_strategy is not None:
                options["scheduling_strategy"] = scheduling_strategy
            actor_id = rt.new_actor_id()
            rt.create_actor(actor_id, op.fn_id, cls_bytes, op.name, args, kwargs, options)
            return ActorHandle(actor_id, op.name, methods)

        self.factories.append((tuple(args), make))
        return make

    def call_method(self, run: Execution, stage: Stage, actor: Any) -> Any:
        return None
