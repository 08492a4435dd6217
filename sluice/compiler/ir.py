"""The compiler's intermediate representation: one frozen ``Op`` type and a kind enum.

A logical graph is a ``networkx.DiGraph`` whose nodes are op ids, each with the
attribute ``op`` (an :class:`Op`); an edge ``u -> v`` means ``v`` reads ``u``'s
value. Graph-level facts live in ``graph.graph`` (see :data:`GRAPH_KEYS`).
Passes never mutate their input: they return a new graph.
"""

from __future__ import annotations

import enum
import hashlib
import pickle
from dataclasses import dataclass, field, replace
from typing import Any

import networkx as nx


class OpKind(enum.Enum):
    """What an op does."""

    INPUT = "input"        # the arguments of execute(): the DAG's input
    SELECT = "select"      # a part of the input: inp[0], inp["k"], inp.attr
    CALL = "call"          # a remote function
    ACTOR = "actor"        # an actor, created once per Plan
    METHOD = "method"      # a method call on an ACTOR op (inputs[0] is the actor)
    TRANSFER = "transfer"  # an explicit copy between host and device memory
    OUTPUT = "output"      # MultiOutputNode: its inputs are the DAG's outputs
    BLOCKS = "blocks"      # an op over a whole stream of blocks (sluice.data: limit, union,
                           # shuffles); ``method`` names which. Never fused: it needs the stream.


@dataclass(frozen=True)
class Slot:
    """Marks where the value of ``Op.inputs[index]`` goes in an op's argument template."""

    index: int


@dataclass(frozen=True, slots=True)
class Op:
    """One logical operation. Identity is content: see :func:`content_hash`.

    ``template`` is the pickled ``(args, kwargs)`` of the call with :class:`Slot`
    markers where the values of ``inputs`` go (``b""`` means: call with the input
    values positionally). Placement (``resources``, ``device``) is an attribute of
    the op that every rewrite preserves.
    """

    id: str
    kind: OpKind
    name: str
    inputs: tuple[str, ...] = ()
    template: bytes = b""
    fn_id: int = 0                     # CALL: function id; ACTOR: class id (Plan.functions)
    fn_digest: str = ""                # a stable digest of the function's code (identity across runs)
    method: str = ""                   # METHOD: method name; TRANSFER: "to_device" | "to_host"
    key: tuple = ()                    # SELECT: ("item", k) or ("attr", name)
    resources: tuple[tuple[str, float], ...] = ()
    device: str = "cpu"                # "cpu" or "gpu"
    pure: bool = True                  # same inputs, same output, no side effects
    jit: bool = False                  # compile with numba on the worker
    num_returns: int = 1
    options: tuple[tuple[str, Any], ...] = ()   # the other options (max_retries, ...), sorted
    content: str = field(default="", compare=False)  # hash of everything but the ordinal

    def with_inputs(self, inputs: tuple[str, ...]) -> Op:
        """The same op reading ``inputs`` (its content hash recomputed)."""
        op = replace(self, inputs=inputs)
        return replace(op, content=content_hash(op))

    @property
    def is_actor_op(self) -> bool:
        return self.kind in (OpKind.ACTOR, OpKind.METHOD)


@dataclass(frozen=True, slots=True)
class ActorChain:
    """Method calls forwarded actor to actor (``passes/actor_chains.py``).

    ``ops``: the METHOD op ids in call order; ``ops[0]`` takes the value of op
    ``source``, each later call the value of the call before it. ``slots``: where
    each call takes that value (an argument position, or a keyword).
    """

    source: str
    ops: tuple[str, ...]
    slots: tuple[int | str, ...]


GRAPH_KEYS = {
    "functions": "dict fn_id -> pickled function or class (calls.dumps_function bytes)",
    "signatures": "dict fn_id -> inspect.Signature, for validation",
    "outputs": "tuple of op ids whose values execute() returns",
    "multi_output": "bool: execute() returns a list (MultiOutputNode)",
    "passes": "tuple of the names of the passes that changed the graph",
    "stages": "dict op id -> stage name, set by fusion (ops of one stage run in one task)",
    "blocked": "dict (u, v) -> the rule that kept edge u -> v from being fused",
    "placement": "dict op id -> where the op runs ('local' on one node)",
    "actor_chains": "tuple of ActorChain: method calls forwarded actor to actor, set by actor_chains",
    "not_chained": "dict (u, v) -> the rule that kept method call v from following u in a chain",
}


def content_hash(op: Op) -> str:
    """A stable hash of what ``op`` computes (kind, function, arguments, inputs, options)."""
    h = hashlib.blake2b(digest_size=8)
    for part in (op.kind.value, op.name, op.fn_digest or str(op.fn_id), op.method, repr(op.key),
                 repr(op.inputs), repr(op.resources), op.device, repr(op.pure), repr(op.jit),
                 str(op.num_returns), repr(op.options)):
        h.update(part.encode())
        h.update(b"\0")
    h.update(op.template)
    return h.hexdigest()


def code_digest(obj: Any) -> str:
    """A digest of a function's or class's code that is equal in every run.

    (Pickles of classes carry a random tracker id, so their bytes cannot be the
    identity; the compiled code and constants can.)
    """
    h = hashlib.blake2b(digest_size=8)
    h.update(f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}".encode())
    if isinstance(obj, type):
        members = sorted((k, v) for k, v in vars(obj).items() if hasattr(getattr(v, "__func__", v), "__code__"))
        for name, member in members:
            h.update(name.encode())
            _hash_code(h, getattr(member, "__func__", member).__code__)
    elif hasattr(obj, "__code__"):
        _hash_code(h, obj.__code__)
        # Equal code over other captured values or defaults is another function.
        cells = tuple(c.cell_contents for c in (obj.__closure__ or ()) if _cell_set(c))
        for value in (obj.__defaults__, obj.__kwdefaults__, cells):
            h.update(_value_digest(value))
    return h.hexdigest()


def _cell_set(cell: Any) -> bool:
    try:
        cell.cell_contents
    except ValueError:  # an empty cell (the function itself, before assignment)
        return False
    return True


def _value_digest(value: Any) -> bytes:
    import cloudpickle

    try:
        return hashlib.blake2b(cloudpickle.dumps(value, protocol=5), digest_size=8).digest()
    except Exception:
        return repr(value).encode()


def _hash_code(h: Any, code: Any) -> None:
    stack = [code]
    while stack:
        c = stack.pop()
        h.update(c.co_code)
        h.update(repr(c.co_names).encode())
        for const in c.co_consts:
            if hasattr(const, "co_code"):
                stack.append(const)
            else:
                h.update(repr(const).encode())


def make_op(kind: OpKind, name: str, ordinal: int = 0, **fields: Any) -> Op:
    """Build an op with its content hash and id ``{name}-{hash}``.

    ``ordinal`` tells apart ops of equal content (two ``f.bind(x)`` nodes);
    CSE merges pure ones. Ids are deterministic: equal graphs built in the same
    order get equal ids in every run.
    """
    op = Op(id="", kind=kind, name=name, **fields)
    content = content_hash(op)
    suffix = content if ordinal == 0 else hashlib.blake2b(
        f"{content}/{ordinal}".encode(), digest_size=8).hexdigest()
    return replace(op, id=f"{_short(name)}-{suffix[:12]}", content=content)


def _short(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_." else "_" for c in name)[:40] or "op"


def pack_template(args: tuple, kwargs: dict) -> bytes:
    """Pickle an argument template (constants by value, Slot markers for inputs)."""
    import cloudpickle

    return cloudpickle.dumps((tuple(args), dict(kwargs)), protocol=5)


def unpack_template(template: bytes) -> tuple[tuple, dict]:
    """The ``(args, kwargs)`` of a template, Slot markers still in place."""
    if not template:
        return (), {}
    return pickle.loads(template)


def fill_slots(value: Any, inputs: list) -> Any:
    """Replace every Slot in ``value`` (nested in lists, tuples, dicts) by its input value."""
    if type(value) is Slot:
        return inputs[value.index]
    if type(value) in (list, tuple):
        filled = [fill_slots(v, inputs) for v in value]
        return filled if type(value) is list else tuple(filled)
    if type(value) is dict:
        return {k: fill_slots(v, inputs) for k, v in value.items()}
    return value


def ops_of(graph: nx.DiGraph) -> dict[str, Op]:
    """Every op of ``graph`` by id."""
    return {n: d["op"] for n, d in graph.nodes(data=True)}


def topological_ops(graph: nx.DiGraph) -> list[Op]:
    """The ops of ``graph`` in a deterministic topological order (ties broken by id)."""
    return [graph.nodes[n]["op"] for n in nx.lexicographical_topological_sort(graph)]


def new_graph(ops: list[Op], graph_attrs: dict) -> nx.DiGraph:
    """A logical graph of ``ops`` with edges from their inputs."""
    g = nx.DiGraph()
    g.graph.update(graph_attrs)
    for op in ops:
        g.add_node(op.id, op=op)
    for op in ops:
        for src in op.inputs:
            g.add_edge(src, op.id)
    return g
