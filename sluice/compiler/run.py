"""Running a Plan on the current runtime: one task per stage, actors once per Plan.

``execute_plan`` does no planning: the first call registers one function per
call stage (a :class:`StageFunction`, content-addressed like every function)
and creates the Plan's actors; every call after that only submits. What that
leaves behind lives in the Plan's :class:`~sluice.compiler.plan_run.PlanRun`,
never in the Plan, so many threads may execute one Plan.
"""

from __future__ import annotations

from typing import Any

from sluice.compiler.ir import ActorChain, Op, OpKind, fill_slots, unpack_template
from sluice.compiler.plan import Plan, Stage
from sluice.compiler.plan_run import PlanRun, plan_run
from sluice.executor.actor_handle import ActorHandle
from sluice.executor import api
from sluice.executor.calls import dumps_function, load_function
from sluice.executor.chains import pack_hop_args


class StageFunction:
    """The ops of one call stage, run in order inside one worker call.

    Picklable plain data: the member ops and the pickled functions they call.
    Functions are unpickled (and numba-compiled for ``jit=True`` ops) once per
    worker process, since the worker keeps this object between tasks.
    """

    def __init__(self, ops: tuple[Op, ...], inputs: tuple[str, ...], functions: dict[int, bytes],
                 jit_chain: bool):
        self.ops = ops
        self.inputs = inputs
        self.functions = functions
        self.jit_chain = jit_chain
        self._ready: list | None = None

    def __getstate__(self) -> dict:
        return {"ops": self.ops, "inputs": self.inputs, "functions": self.functions,
                "jit_chain": self.jit_chain}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._ready = None

    def _prepare(self) -> list:
        steps = []
        for op in self.ops:
            if op.kind is OpKind.TRANSFER:
                from sluice.compiler import devices

                fn = devices.to_device if op.method == "to_device" else devices.to_host
            else:
                fn = load_function(self.functions[op.fn_id])
                if op.jit and not self.jit_chain:
                    from sluice.compiler import jit

                    fn = jit.jit_function(fn)
            args, kwargs = unpack_template(op.template) if op.template else ((), {})
            steps.append((op, fn, args, kwargs))
        if self.jit_chain:
            steps = self._compile_chain(steps)
        return steps

    def _compile_chain(self, steps: list) -> list:
        """A jit stage: one numba function for the chain; the first op's arguments feed it."""
        from sluice.compiler import jit

        first_op, _, first_args, first_kwargs = steps[0]
        loaded = {op.fn_id: fn for op, fn, _, _ in steps}
        compiled = jit.compile_chain(jit.chain_steps([op for op, _, _, _ in steps], loaded))
        return [(first_op, compiled, first_args, first_kwargs)]

    def __call__(self, *input_values: Any) -> Any:
        steps = self._ready
        if steps is None:
            steps = self._ready = self._prepare()
        env = dict(zip(self.inputs, input_values))
        value = None
        for op, fn, args, kwargs in steps:
            values = [env[i] for i in op.inputs]
            if op.kind is OpKind.TRANSFER:
                value = fn(values[0])
            elif op.template:
                value = fn(*fill_slots(args, values), **fill_slots(kwargs, values))
            else:
                value = fn(*values)
            env[op.id] = value
        return value


class DAGInput:
    """The value an InputNode takes: the positional and keyword arguments of execute()."""

    __slots__ = ("args", "kwargs")

    def __init__(self, args: tuple, kwargs: dict):
        self.args = args
        self.kwargs = kwargs

    def value(self) -> Any:
        """The InputNode itself: the single positional argument, or this object."""
        if len(self.args) == 1 and not self.kwargs:
            return self.args[0]
        return self

    def select(self, key: tuple) -> Any:
        """Resolve ``inp[k]`` / ``inp.k`` against the execute() arguments.

        An int selects a positional argument (or, past the last one, an item of a
        single argument); a string selects a keyword argument, else an item of a
        single positional argument; an attribute likewise.
        """
        kind, k = key
        args, kwargs = self.args, self.kwargs
        if kind == "item":
            if isinstance(k, int) and not isinstance(k, bool) and -len(args) <= k < len(args):
                return args[k]
            if isinstance(k, str) and k in kwargs:
                return kwargs[k]
            if len(args) == 1:
                return args[0][k]
            raise KeyError(f"the graph reads input[{k!r}] but execute() got {len(args)} "
                           f"positional and {sorted(kwargs)} keyword arguments")
        if k in kwargs:
            return kwargs[k]
        if len(args) == 1:
            return getattr(args[0], k)
        raise AttributeError(f"the graph reads input.{k} but execute() got no keyword argument "
                             f"{k!r}; call execute({k}=...)")


def execute_plan(plan: Plan, args: tuple, kwargs: dict) -> Any:
    """Run ``plan`` once; returns its output ObjectRef (a list for several outputs)."""
    rt = api.runtime()
    state = plan_run(plan, rt)
    actions = state.prepared.get("actions")
    if actions is None:
        actions = state.once(state.prepared, "actions", lambda: _prepare(plan, state))
    dag_input = DAGInput(args, kwargs)
    values: dict[str, Any] = {}
    for stage, action in actions:
        action(stage, values, dag_input, rt, state)
    outs = [_as_ref(values[o], rt) for o in plan.outputs]
    return outs if plan.multi_output else outs[0]


def _as_ref(value: Any, rt: Any) -> Any:
    """execute() always returns refs, even for an output that is the input itself."""
    from sluice.executor.object_ref import ObjectRef

    if isinstance(value, ObjectRef) or (isinstance(value, list) and value
                                        and all(isinstance(v, ObjectRef) for v in value)):
        return value
    return rt.put(value)


def _prepare(plan: Plan, state: PlanRun) -> list:
    """Register stage functions and pick each stage's action, once per runtime."""
    functions = dict(plan.functions)
    actions: list = []
    for stage in plan.stages:
        kind = stage.kind
        if kind is OpKind.INPUT:
            actions.append((stage, _run_input))
        elif kind is OpKind.SELECT:
            actions.append((stage, _run_select))
        elif kind is OpKind.ACTOR:
            actions.append((stage, _run_actor))
        elif kind is OpKind.METHOD:
            actions.append((stage, _run_method))
        else:
            needed = {op.fn_id: functions[op.fn_id] for op in stage.ops if op.fn_id}
            fn = StageFunction(stage.ops, stage.inputs, needed, stage.id in plan.jit_stages)
            fn_id, data = dumps_function(fn, f"stage {stage.name}")
            state.tasks[stage.id] = (fn_id, data, _task_options(stage))
            actions.append((stage, _run_call))
    state.prepared["functions"] = functions
    return _with_actor_chains(plan, actions)


def _task_options(stage: Stage) -> dict:
    head = stage.ops[0]
    opts = dict(head.options)
    resources = dict(stage.resources)
    return {
        "num_returns": stage.ops[-1].num_returns, "num_cpus": resources.pop("CPU", 0),
        "num_gpus": resources.pop("GPU", 0), "resources": resources or None,
        "max_retries": opts.get("max_retries", 3), "retry_exceptions": opts.get("retry_exceptions", False),
        "name": stage.name, "_key": stage.resources,
    }


def _run_input(stage: Stage, values: dict, dag_input: DAGInput, rt: Any, state: PlanRun) -> None:
    values[stage.output] = dag_input.value()


def _run_select(stage: Stage, values: dict, dag_input: DAGInput, rt: Any, state: PlanRun) -> None:
    values[stage.output] = dag_input.select(stage.ops[0].key)


def _run_call(stage: Stage, values: dict, dag_input: DAGInput, rt: Any, state: PlanRun) -> None:
    fn_id, data, options = state.tasks[stage.id]
    refs = rt.submit_task(fn_id, data, options["name"], tuple(values[i] for i in stage.inputs), {},
                          options)
    values[stage.output] = refs[0] if options["num_returns"] == 1 else refs


def _run_actor(stage: Stage, values: dict, dag_input: DAGInput, rt: Any, state: PlanRun) -> None:
    op = stage.ops[0]
    # The first execute creates the actor (once, whichever thread gets there first);
    # later ones reuse it.
    values[op.id] = state.once(state.actors, op.id, lambda: _create_actor(op, values, rt, state))


def _create_actor(op: Op, values: dict, rt: Any, state: PlanRun) -> ActorHandle:
    opts = dict(op.options)
    args, kwargs = unpack_template(op.template)
    inputs = [values[i] for i in op.inputs]
    actor_id = rt.new_actor_id()
    resources = dict(op.resources)
    rt.create_actor(actor_id, op.fn_id, state.prepared["functions"][op.fn_id], op.name,
                    tuple(fill_slots(args, inputs)), fill_slots(kwargs, inputs), {
                        "num_cpus": resources.pop("CPU", 0), "num_gpus": resources.pop("GPU", 0),
                        "resources": resources or None, "max_restarts": opts.get("max_restarts", 0),
                        "max_concurrency": opts.get("max_concurrency"), "name": opts.get("name"),
                        "class_name": op.name, "_methods": {}})
    methods = opts.get("_methods", ())
    return ActorHandle(actor_id, op.name, {m: {"num_returns": n} for m, n in methods})


def _run_method(stage: Stage, values: dict, dag_input: DAGInput, rt: Any, state: PlanRun) -> None:
    op = stage.ops[0]
    actor_id = values[op.inputs[0]]._actor_id
    args, kwargs = state.once(state.prepared, ("template", op.id), lambda: unpack_template(op.template))
    inputs = [None] + [values[i] for i in op.inputs[1:]]
    refs = rt.submit_actor_task(actor_id, op.method, op.name, tuple(fill_slots(args, inputs)),
                                fill_slots(kwargs, inputs), {"num_returns": op.num_returns})
    values[op.id] = refs[0] if op.num_returns == 1 else refs



def _with_actor_chains(plan: Plan, actions: list) -> list:
    """Each chain the Plan lists runs where its first call stands; its other calls go."""
    if not plan.actor_chains:
        return actions
    stages = {st.output: st for st in plan.stages}
    chains = {chain.ops[0]: chain for chain in plan.actor_chains}
    in_chain = {op_id for chain in plan.actor_chains for op_id in chain.ops}
    result = []
    for stage, action in actions:
        chain = chains.get(stage.output)
        if chain is not None:
            result.append((stage, ChainCall(chain, [stages[o] for o in chain.ops])))
        elif stage.output not in in_chain:
            result.append((stage, action))
    return result


class ChainCall:
    """Run one of the Plan's actor chains through ``submit_actor_chain`` (or call by call).

    A hop whose arguments are only constants and the chained value packs the
    same bytes every time: those are packed once.
    """

    def __init__(self, chain: ActorChain, members: list[Stage]):
        self.members = members
        chained = (chain.source, *chain.ops[:-1])  # the value each call takes
        self.links = list(zip(chained, chain.slots))
        self.templates = [unpack_template(st.ops[0].template) for st in members]
        self.fixed: list[bytes | None] = [
            pack_hop_args(*_filled(st.ops[0], tpl, value, {}), slot)
            if all(i == value for i in st.ops[0].inputs[1:]) else None
            for st, tpl, (value, slot) in zip(members, self.templates, self.links)]

    def __call__(self, stage: Stage, values: dict, dag_input: DAGInput, rt: Any, state: PlanRun) -> None:
        hops = []
        for st, tpl, (chained, slot), blob in zip(self.members, self.templates, self.links, self.fixed):
            op = st.ops[0]
            if blob is None:
                blob = pack_hop_args(*_filled(op, tpl, chained, values), slot)
            hops.append((values[op.inputs[0]]._actor_id, op.method, op.name, blob))
        first = values[self.links[0][0]]
        ref = rt.submit_actor_chain(hops, first) if hasattr(rt, "submit_actor_chain") else None
        if ref is not None:
            values[self.members[-1].output] = ref
            return
        for st in self.members:  # actors still starting: ordinary calls this time
            _run_method(st, values, dag_input, rt, state)


def _filled(op: Op, template: tuple, chained: str, values: dict) -> tuple[tuple, dict]:
    """A hop's arguments with every input but the chained one filled in."""
    args, kwargs = template
    inputs = [None] + [None if i == chained else values[i] for i in op.inputs[1:]]
    return tuple(fill_slots(args, inputs)), fill_slots(kwargs, inputs)
