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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import networkx as nx  # imported where a graph is built or walked: a worker that only
    #                        runs a stage's ops (plain data) never loads it


LOCAL = "local"
"""A stage's placement where the Plan pins it to no node (see ``passes/locality.py``)."""


class OpKind(enum.Enum):
    """What an op does (and who makes it: the front end ``sluice.dsl.to_graph``, the
    ``sluice.data`` planner, or a pass)."""

    INPUT = "input"        # the arguments of execute(): the DAG's input (front end)
    CONSTANT = "constant"  # an ObjectRef bound as a whole argument of .bind(): its value is
                           # read where the reader runs. ``key`` is ("object", object id),
                           # ``template`` the pickled ref; or a running actor whose method
                           # is bound (``handle.m.bind()``): ("actor", actor id), the pickled
                           # handle (front end)
    SELECT = "select"      # a part of the input: inp[0], inp["k"], inp.attr (front end)
    CALL = "call"          # a remote function (front end; data: a read or a map over blocks)
    ACTOR = "actor"        # an actor, created once per Plan (front end; data: an actor pool)
    METHOD = "method"      # a method call on an ACTOR op, inputs[0] is the actor (front end;
                           # data: the pool's map)
    TRANSFER = "transfer"  # an explicit copy between host and device memory; ``method`` is
                           # "to_device" or "to_host" (the gpu_placement pass)
    OUTPUT = "output"      # MultiOutputNode. No graph holds one: the front end records the
                           # DAG's outputs in graph["outputs"] and graph["multi_output"]
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
class PlacementReason:
    """Why the locality pass put a stage on a node (``passes/locality.py``), for ``explain()``.

    ``rule``: ``"largest_input"`` (``op`` is the input, ``size`` its bytes, held on
    that node), ``"holds"`` (a bound object: the node holds ``op``'s value of
    ``size`` bytes), ``"actor"`` (a method call: ``op`` is its actor, placed there)
    or ``"scheduling_strategy"`` (``op`` carries the user's own strategy naming it).
    """

    rule: str
    op: str
    size: int | None = None


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


# Every key of a logical graph's ``graph.graph``: what it holds, who sets it, who reads it.
# "The front end" is ``sluice.dsl.to_graph.build_graph`` and, for datasets, the
# ``sluice.data`` planner. tests/compiler/test_ir.py fails on a key missing here.
GRAPH_KEYS: dict[str, str] = {
    "functions": "dict fn_id -> the pickled function or class (calls.dumps_function bytes). "
                 "Set by the front end; lower keeps in Plan.functions those the ops use.",
    "signatures": "dict op id -> the Arity (sluice.executor.arity) its .bind() arguments must fit. Set by "
                  "the front end for .bind() graphs; cse drops the entries of merged ops; "
                  "validate reads it.",
    "outputs": "tuple of the op ids whose values execute() returns. Set by the front end; cse "
               "points merged ops at their survivor, gpu_placement a GPU output at its to_host "
               "copy; fusion, numba_fusion and lower (Plan.outputs) read it.",
    "multi_output": "bool: execute() returns a list (the DAG ends in a MultiOutputNode). Set by "
                    "the front end; lower reads it (Plan.multi_output).",
    "passes": "tuple of the names of the rewrites that changed the graph, in order. Started by "
              "the front end (empty; for datasets, the logical optimizer's rules that applied); "
              "cse, gpu_placement, fusion, numba_fusion and locality each add their name when "
              "they change something; lower copies it (Plan.passes).",
    "stages": "dict op id -> stage name: ops sharing a name run as one task, an op without an "
              "entry is a stage of its own. Empty from the front end; set by fusion; "
              "numba_fusion, locality and lower read it.",
    "blocked": "dict (u, v) -> the rule that kept edge u -> v from fusing. Empty from the front "
               "end; set by fusion; lower copies it (Plan.blocked, shown by explain()).",
    "jit_stages": "dict stage name -> the op ids of a stage numba compiles, in chain order. Set "
                  "by numba_fusion; lower marks those stages (Plan.jit_stages).",
    "jit_blocked": "dict stage name -> why a stage holding a jit=True op does not compile. Set "
                   "by numba_fusion, for whoever reads the graph; the Plan does not keep it.",
    "sizes": "dict op id -> the bytes of its value, where known: the CONSTANT ops' objects, "
             "as the backend measured them when the DAG was compiled (a stage's own output "
             "has no known size before it runs). Given by compile_graph's caller with the "
             "cluster view (sluice.dsl.placement asks the backend); locality reads it, placing a "
             "stage by its largest input of known size (without sizes every stage stays local); "
             "lower copies it (Plan.sizes, edge sizes in visualize()).",
    "placement": "dict op id -> the node its stage runs on ('local': the backend chooses, as "
                 "on one node). Empty from the dsl front end; set by locality; lower copies it "
                 "(Stage.placement), the runner turns a node into a soft node affinity.",
    "placement_reasons": "dict op id -> the PlacementReason of an op placed on a node (ops "
                         "left 'local' have none). Set by locality; lower copies it "
                         "(Stage.placement_reason, shown by explain()).",
    "actor_chains": "tuple of ActorChain: method calls forwarded actor to actor. Set by "
                    "actor_chains; lower copies it (Plan.actor_chains), the runner forwards "
                    "exactly those.",
    "not_chained": "dict (u, v) -> the rule that kept method call v from following u in a "
                   "chain. Set by actor_chains; lower copies it (Plan.not_chained, shown by "
                   "explain()).",
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
    import networkx as nx

    return [graph.nodes[n]["op"] for n in nx.lexicographical_topological_sort(graph)]


def new_graph(ops: list[Op], graph_attrs: dict) -> nx.DiGraph:
    """A logical graph of ``ops`` with edges from their inputs."""
    import networkx as nx

    g: nx.DiGraph[str] = nx.DiGraph()
    g.graph.update(graph_attrs)
    for op in ops:
        g.add_node(op.id, op=op)
    for op in ops:
        for src in op.inputs:
            g.add_edge(src, op.id)
    return g


def op_label(op: Op) -> str:
    """What a reader calls the op: ``inc``, ``Counter.add``, ``input[0]``, ``to_device``."""
    if op.kind is OpKind.SELECT and len(op.key) == 2:
        how, what = op.key
        return f"input.{what}" if how == "attr" else f"input[{what!r}]"
    if op.kind is OpKind.METHOD and op.method and not op.name.endswith(op.method):
        return f"{op.name}.{op.method}"
    if op.kind is OpKind.TRANSFER and op.method:
        return op.method
    return op.name
