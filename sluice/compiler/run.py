"""What one stage of a Plan runs, and how a stage becomes a task: the one translation.

Every way of running a Plan (plain ``execute()``, sluice.workflow's durable
steps, sluice.data's streams, any hook set of :mod:`sluice.compiler.runner`)
turns stages into runtime calls through the functions here:

- :func:`stage_function`: a call stage's ops as one :class:`StageFunction`, run
  in one worker call; :func:`task_options`: the stage's task options.
- :func:`placement_strategy`: where the Plan says a stage runs, as the
  ``scheduling_strategy`` option a backend honours.
- :func:`actor_options` and :func:`start_actor`: an ACTOR stage's actor.
- :func:`call_arguments`: a call's arguments, its template filled with values.
- :class:`DAGInput`: the execute() arguments, as the InputNode and its
  selectors read them; :func:`check_input`: every read of them, before a run starts.
- :class:`ChainCall`: one of the Plan's actor chains, forwarded actor to actor.

``execute_plan`` (plain ``execute()``) is the runner with no hooks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sluice.compiler.ir import LOCAL, ActorChain, Op, OpKind, fill_slots, unpack_template
from sluice.compiler.plan import Plan, Stage
from sluice.executor.actor_handle import ActorHandle
from sluice.executor.calls import load_function
from sluice.executor.chains import pack_hop_args
from sluice.executor.strategies import NodeAffinitySchedulingStrategy

if TYPE_CHECKING:
    from sluice.compiler.runner import Execution


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
    """The value an InputNode takes: the positional and keyword arguments of execute().

    Reading it raises, naming what execute() was given and what the graph reads, where
    the arguments cannot give what is read (:func:`check_input` does every read of a
    Plan before any of its tasks starts). ``selected``: the values of the selectors
    read so far, so each is resolved once per run.
    """

    __slots__ = ("args", "kwargs", "selected")

    def __init__(self, args: tuple, kwargs: dict):
        self.args = args
        self.kwargs = kwargs
        self.selected: dict[tuple, Any] = {}

    def value(self) -> Any:
        """The InputNode itself: the one positional argument execute() was given."""
        args, kwargs = self.args, self.kwargs
        if len(args) == 1 and not kwargs:
            return args[0]
        if not args and not kwargs:
            raise TypeError("the graph reads its InputNode but execute() was given no arguments; "
                            "call dag.execute(value)")
        reads = [f"inp[{i}]" for i in range(min(len(args), 2))] + (["..."] if len(args) > 2 else [])
        reads += [f"inp.{k}" for k in kwargs]
        raise TypeError(f"execute() was given {_given(args, kwargs)} and the graph uses the bare "
                        f"InputNode; read them as {', '.join(reads)} or pass one value")

    def stage_value(self) -> Any:
        """What the INPUT stage holds: the one value execute() was given, else None (then no
        stage reads the bare InputNode: :func:`check_input` saw to that; selectors read
        this object itself)."""
        return self.args[0] if len(self.args) == 1 and not self.kwargs else None

    def select(self, key: tuple) -> Any:
        """Resolve ``inp[k]`` / ``inp.k`` against the execute() arguments, as Ray does.

        Given one positional argument and nothing else, the InputNode *is* that value:
        ``inp[k]`` is ``value[k]`` and ``inp.k`` is ``value.k``. Given several (or keyword
        arguments), an int selects a positional argument and a string (or an attribute) a
        keyword argument.
        """
        found = self.selected.get(key, _UNSET)
        if found is _UNSET:
            found = self.selected[key] = self._select(key)
        return found

    def _select(self, key: tuple) -> Any:
        kind, k = key
        args, kwargs = self.args, self.kwargs
        single = len(args) == 1 and not kwargs
        if kind == "item":
            if single:
                try:
                    return args[0][k]
                except (LookupError, TypeError):
                    pass
            elif isinstance(k, int) and not isinstance(k, bool) and -len(args) <= k < len(args):
                return args[k]
            elif isinstance(k, str) and k in kwargs:
                return kwargs[k]
            error = IndexError if isinstance(k, int) else KeyError
            raise error(f"the graph reads inp[{k!r}] but execute() was given {_given(args, kwargs)}"
                        f"{_single(args, kwargs, f'item {k!r}')}; {_remedy_item(k, single)}")
        if single:
            try:
                return getattr(args[0], k)
            except AttributeError:
                pass
        elif k in kwargs:
            return kwargs[k]
        raise AttributeError(f"the graph reads inp.{k} but execute() was given "
                             f"{_given(args, kwargs)}{_single(args, kwargs, f'attribute {k!r}')}; "
                             f"call execute({k}=...) or pass one value that has an attribute {k!r}")


_UNSET = object()


def _given(args: tuple, kwargs: dict) -> str:
    """What execute() was given, in words: ``2 arguments``, ``no arguments``, ``the keyword
    arguments a, b``, ``1 argument and the keyword argument a``."""
    parts = []
    if args or not kwargs:
        parts.append(f"{len(args) or 'no'} argument{'' if len(args) == 1 else 's'}")
    if kwargs:
        names = ", ".join(kwargs)
        parts.append(f"the keyword argument{'' if len(kwargs) == 1 else 's'} {names}")
    return " and ".join(parts)


def _single(args: tuple, kwargs: dict, what: str) -> str:
    """Why the one positional argument did not give ``what`` either."""
    if len(args) != 1:
        return ""
    value = args[0]
    size = f" of {len(value)} items" if hasattr(value, "__len__") else ""
    name = type(value).__name__
    article = "an" if name[:1].lower() in "aeiou" else "a"
    return f" ({article} {name}{size}, which has no {what})"


def _remedy_item(k: Any, single: bool = False) -> str:
    if isinstance(k, int) and not isinstance(k, bool):
        count = k + 1 if k >= 0 else -k
        if single:  # the one argument is the input itself (as in Ray): it is indexed
            return (f"pass one value that has an item {k!r}, or at least {count} positional "
                    f"arguments")
        return (f"pass at least {count} positional argument{'' if count == 1 else 's'}, or one "
                f"value that has an item {k!r}")
    if isinstance(k, str) and k.isidentifier():
        return f"call execute({k}=...) or pass one value that has an item {k!r}"
    return f"pass one value that has an item {k!r}"


@dataclass(frozen=True, slots=True)
class InputReads:
    """What a Plan reads of its execute() arguments: whether some stage reads the bare
    InputNode, and the selectors it reads."""

    bare: bool
    selectors: tuple[tuple, ...]


def input_reads(plan: Plan) -> InputReads:
    """What ``plan`` reads of its execute() arguments (see :class:`InputReads`)."""
    inputs = {st.output for st in plan.stages if st.kind is OpKind.INPUT}
    selectors = tuple(dict.fromkeys(st.ops[0].key for st in plan.stages if st.kind is OpKind.SELECT))
    bare = any(o in inputs for o in plan.outputs) or any(
        i in inputs for st in plan.stages if st.kind is not OpKind.SELECT for i in st.inputs)
    return InputReads(bare, selectors)


def check_input(reads: InputReads, dag_input: DAGInput) -> None:
    """Raise (naming what execute() was given and what the graph reads) unless every read
    of the input succeeds: run before any stage, so nothing starts on a bad input."""
    # A graph without an InputNode ignores what execute() is given, as in Ray.
    if reads.bare:
        dag_input.value()
    for key in reads.selectors:
        dag_input.select(key)


def execute_plan(plan: Plan, args: tuple, kwargs: dict) -> Any:
    """Run ``plan`` once; returns its output ObjectRef (a list for several outputs)."""
    from sluice.compiler.runner import execute_plan as execute

    return execute(plan, args, kwargs)


def stage_function(plan: Plan, stage: Stage, functions: dict[int, bytes]) -> StageFunction:
    """What a worker runs for one call of ``stage``: its ops, the functions they call."""
    needed = {op.fn_id: functions[op.fn_id] for op in stage.ops if op.fn_id}
    return StageFunction(stage.ops, stage.inputs, needed, stage.id in plan.jit_stages)


def task_options(stage: Stage) -> dict[str, Any]:
    """The runtime's task options for one call of ``stage`` (resources, retries, returns,
    and where it runs: :func:`placement_strategy`)."""
    head = stage.ops[0]
    opts = dict(head.options)
    resources = dict(stage.resources)
    return {
        "num_returns": stage.ops[-1].num_returns, "num_cpus": resources.pop("CPU", 0),
        "num_gpus": resources.pop("GPU", 0), "resources": resources or None,
        "max_retries": opts.get("max_retries", 3), "retry_exceptions": opts.get("retry_exceptions", False),
        "name": stage.name, "_key": stage.resources,
        "scheduling_strategy": placement_strategy(stage),
    }


def actor_options(stage: Stage) -> dict[str, Any]:
    """The runtime's actor options for the actor of ACTOR ``stage`` (placed as it is)."""
    op = stage.ops[0]
    opts = dict(op.options)
    resources = dict(op.resources)
    return {"num_cpus": resources.pop("CPU", 0), "num_gpus": resources.pop("GPU", 0),
            "resources": resources or None, "max_restarts": opts.get("max_restarts", 0),
            "max_concurrency": opts.get("max_concurrency"), "name": opts.get("name"),
            "class_name": op.name, "_methods": {},
            "scheduling_strategy": placement_strategy(stage)}


def placement_strategy(stage: Stage) -> Any:
    """The ``scheduling_strategy`` option of a task or actor of ``stage``.

    The user's own strategy (given with ``.options(scheduling_strategy=...)``) wins;
    otherwise a stage the locality pass placed on a node asks for that node softly
    (the backend runs it elsewhere when the node is gone or full); a ``"local"``
    stage leaves the choice to the backend (None).
    """
    for op in stage.ops:
        given = dict(op.options).get("scheduling_strategy")
        if given is not None:
            return given
    if stage.placement == LOCAL:
        return None
    return NodeAffinitySchedulingStrategy(stage.placement, soft=True)


def start_actor(rt: Any, stage: Stage, cls_bytes: bytes, args: tuple, kwargs: dict) -> ActorHandle:
    """Create the actor of ACTOR ``stage`` with these constructor arguments; its handle."""
    op = stage.ops[0]
    actor_id = rt.new_actor_id()
    rt.create_actor(actor_id, op.fn_id, cls_bytes, op.name, args, kwargs, actor_options(stage))
    methods = dict(op.options).get("_methods", ())
    return ActorHandle(actor_id, op.name, {m: {"num_returns": n} for m, n in methods})


def call_arguments(op: Op, template: tuple[tuple, dict], values: dict[str, Any],
                   skip_first: bool = False) -> tuple[tuple, dict]:
    """``op``'s arguments: its template with the values of its inputs in their slots.

    ``skip_first``: a method call's first input is its actor, not an argument.
    """
    args, kwargs = template
    inputs = [values[i] for i in op.inputs]
    if skip_first:
        inputs[0] = None
    return tuple(fill_slots(args, inputs)), fill_slots(kwargs, inputs)


def chain_steps(plan: Plan) -> dict[str, ChainCall]:
    """Id of the last stage of each of the Plan's actor chains -> the ChainCall that runs it.

    A chain runs where its last call stands: every call of the chain, and every
    actor and value they read, comes before it in plan order; nothing but the
    next call reads the calls before it.
    """
    stages = {st.output: st for st in plan.stages}
    return {stages[chain.ops[-1]].id: ChainCall(chain, [stages[o] for o in chain.ops])
            for chain in plan.actor_chains}


class ChainCall:
    """Run one of the Plan's actor chains through ``submit_actor_chain`` (or call by call).

    A hop whose arguments are only constants and the chained value packs the
    same bytes every time: those are packed once. The chain's value is its last
    call's; the other calls' values never come back (the chain pass made sure
    nothing else reads them).
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

    def __call__(self, run: Execution, stage: Stage) -> Any:
        values, rt = run.values, run.rt
        hops = []
        for st, tpl, (chained, slot), blob in zip(self.members, self.templates, self.links, self.fixed):
            op = st.ops[0]
            if blob is None:
                blob = pack_hop_args(*_filled(op, tpl, chained, values), slot)
            hops.append((values[op.inputs[0]]._actor_id, op.method, op.name, blob))
        first = values[self.links[0][0]]
        ref = rt.submit_actor_chain(hops, first)
        if ref is not None:
            return ref
        for st in self.members:  # actors still starting: ordinary calls this time
            refs = run.call(st)
            values[st.output] = refs[0] if len(refs) == 1 else refs
        return values[stage.output]


def _filled(op: Op, template: tuple, chained: str, values: dict) -> tuple[tuple, dict]:
    """A hop's arguments with every input but the chained one filled in."""
    args, kwargs = template
    inputs = [None] + [None if i == chained else values[i] for i in op.inputs[1:]]
    return tuple(fill_slots(args, inputs)), fill_slots(kwargs, inputs)
