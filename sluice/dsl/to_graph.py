"""From DAG nodes to the compiler's logical graph: one Op per node, iteratively.

Every node gets a deterministic id (its content hash and its position in a
post-order walk), so the same DAG builds the same graph in every run. Equal
pure nodes stay separate here; the CSE pass merges them.

An ObjectRef bound as a whole argument (``f.bind(ref)``, ``f.bind(x=ref)``)
becomes a CONSTANT op the call reads, one per object in the graph: its value
reaches the call as a value (as ``f.remote(ref)`` gives it), and the locality
pass sees which node holds it and how big it is. A ref nested in a list, tuple
or dict argument stays inside the call's template and arrives as a ref.
"""

from __future__ import annotations

from typing import Any

import networkx as nx

from sluice.compiler.ir import Op, OpKind, Slot, code_digest, make_op, new_graph, pack_template
from sluice.dsl.nodes import (
    ActorHandleNode,
    ClassMethodNode,
    ClassNode,
    DAGNode,
    FunctionNode,
    InputAttributeNode,
    InputNode,
    MultiOutputNode,
)
from sluice.dsl.options import TASK_DEFAULTS, WORKFLOW_OPTIONS
from sluice.executor.arity import Arity
from sluice.executor.object_ref import ObjectRef

_OPTION_KEYS = ("max_retries", "retry_exceptions", "max_restarts", "max_concurrency")
# Options that join an op's identity only when set: graphs without them keep their ids.
_OPTION_KEYS_WHEN_SET = ("scheduling_strategy",)


def build_graph(root: DAGNode) -> nx.DiGraph:
    """The logical graph of the DAG that ends at ``root``."""
    if not isinstance(root, DAGNode):
        raise TypeError(f"compile() takes a graph node (from .bind()), got {type(root).__name__}")
    order = _post_order(root)
    inputs = [n for n in order if type(n) is InputNode]
    if len(inputs) > 1:
        raise ValueError(f"the graph has {len(inputs)} InputNodes; use one InputNode and select "
                         "parts of it with inp[0], inp['k'] or inp.k")
    ids: dict[int, str] = {}
    ops: list[Op] = []
    functions: dict[int, bytes] = {}
    signatures: dict[str, Arity] = {}
    constants: dict[int, Op] = {}  # object id -> its CONSTANT op
    for ordinal, node in enumerate(order, start=1):
        if type(node) is MultiOutputNode:
            continue
        for ref in _bound_refs(node):
            if ref.id not in constants:
                constants[ref.id] = _constant_op(ref)
                ops.append(constants[ref.id])
        op = _op_for(node, ordinal, ids, functions, signatures, constants)
        ids[id(node)] = op.id
        ops.append(op)
    if type(root) is MultiOutputNode:
        outputs = tuple(ids[id(n)] for n in root._bound_args)
    else:
        outputs = (ids[id(root)],)
    return new_graph(ops, {
        "functions": functions, "signatures": signatures, "outputs": outputs,
        "multi_output": type(root) is MultiOutputNode, "passes": (), "stages": {},
        "blocked": {}, "placement": {},
    })


def _post_order(root: DAGNode) -> list[DAGNode]:
    """Every node reachable from ``root``, each after the nodes it reads.

    Raises ValueError naming the nodes of a cycle, should the graph have one: ``.bind()``
    cannot make one, but a list or dict bound as an argument and changed afterwards can.
    A node is *open* from its expansion until it is done; an open node met again from
    below reads itself. ``reader[id(n)]``: the node that ``n`` was expanded from.
    """
    order: list[DAGNode] = []
    done: set[int] = set()
    open_: set[int] = set()
    reader: dict[int, DAGNode | None] = {}
    stack: list[tuple[DAGNode, bool, DAGNode | None]] = [(root, False, None)]
    while stack:
        node, expanded, parent = stack.pop()
        if id(node) in done:
            continue
        if expanded:
            done.add(id(node))
            open_.discard(id(node))
            order.append(node)
            continue
        if id(node) in open_:
            raise _cycle_error(node, parent, reader)
        open_.add(id(node))
        reader[id(node)] = parent
        stack.append((node, True, parent))
        for child in reversed(node.children()):
            if id(child) not in done:
                stack.append((child, False, node))
    return order


def _cycle_error(node: DAGNode, parent: DAGNode | None, reader: dict[int, DAGNode | None]
                 ) -> ValueError:
    """The error for a graph where ``parent`` reads ``node``, which reads ``parent`` through
    the chain of open nodes."""
    flow = [node]
    current = parent
    while current is not None and current is not node:
        flow.append(current)
        current = reader[id(current)]
    flow.append(node)
    return ValueError(
        f"the graph has a cycle: {' -> '.join(repr(n) for n in flow)} (each node reads the one "
        "before it), so no node of it can ever run. A list or dict bound as an argument was "
        "changed after .bind() to hold a node that reads that call; bind each value once it is "
        "made, and do not change arguments after .bind()")


def _bound_refs(node: DAGNode) -> list[ObjectRef]:
    """The ObjectRefs bound as whole arguments of ``node`` (not nested), each once, in order."""
    found: dict[int, ObjectRef] = {}
    for value in (*node._bound_args, *node._bound_kwargs.values()):
        if isinstance(value, ObjectRef):
            found.setdefault(value.id, value)
    return list(found.values())


def _constant_op(ref: ObjectRef) -> Op:
    """The CONSTANT op of a bound ObjectRef: the object id in ``key``, the ref pickled."""
    return make_op(OpKind.CONSTANT, repr(ref), key=("object", ref.id),
                   template=pack_template((ref,), {}))


def _read_values(node: DAGNode, ids: dict[int, str], constants: dict[int, Op]) -> tuple[str, ...]:
    """The op ids a node reads besides an actor: its child nodes, then its bound objects."""
    return (tuple(ids[id(c)] for c in _value_children(node))
            + tuple(constants[ref.id].id for ref in _bound_refs(node)))


def _template(node: DAGNode, input_ids: list[str], ids: dict[int, str],
              constants: dict[int, Op], offset: int = 0) -> bytes:
    """The node's (args, kwargs) with each child node and bound object replaced by its Slot.

    ``input_ids``: the node's :func:`_read_values`, which the caller has already computed.
    """
    position = {op_id: i + offset for i, op_id in enumerate(input_ids)}

    def swap_whole(value: Any) -> Any:
        if isinstance(value, ObjectRef):
            return Slot(position[constants[value.id].id])
        return swap(value)

    inside: set[int] = set()  # the containers being swapped: met again, one holds itself

    def swap(value: Any) -> Any:
        if isinstance(value, DAGNode):
            return Slot(position[ids[id(value)]])
        if type(value) not in (list, tuple, dict):
            return value
        if id(value) in inside:
            raise ValueError(f"an argument of {node!r} is a {type(value).__name__} that holds "
                             "itself; a graph's arguments are copied into its tasks, which cannot "
                             "copy that: pass a value without the loop")
        inside.add(id(value))
        if type(value) is dict:
            swapped: Any = {k: swap(v) for k, v in value.items()}
        else:
            items = [swap(v) for v in value]
            swapped = items if type(value) is list else tuple(items)
        inside.discard(id(value))
        return swapped

    return pack_template(tuple(swap_whole(v) for v in node._bound_args),
                         {k: swap_whole(v) for k, v in node._bound_kwargs.items()})


def _value_children(node: DAGNode) -> list[DAGNode]:
    """The nodes inside a node's arguments (for a method: not its actor, unless passed too)."""
    return DAGNode.children(node)


def _op_for(node: DAGNode, ordinal: int, ids: dict[int, str], functions: dict[int, bytes],
            signatures: dict[str, Arity], constants: dict[int, Op]) -> Op:
    if type(node) is InputNode:
        return make_op(OpKind.INPUT, "input", ordinal)
    if type(node) is InputAttributeNode:
        return make_op(OpKind.SELECT, node.label, ordinal, inputs=(ids[id(node._bound_args[0])],),
                       key=node._key)
    if type(node) is FunctionNode:
        rf = node._remote_function
        fn_id, data = rf._pickle()
        functions[fn_id] = data
        opts = rf._options
        inputs = _read_values(node, ids, constants)
        op = make_op(OpKind.CALL, opts["name"], ordinal, inputs=inputs,
                     template=_template(node, list(inputs), ids, constants), fn_id=fn_id,
                     fn_digest=rf._code_digest(),
                     resources=opts["_key"], pure=bool(opts["pure"]), jit=bool(opts["jit"]),
                     num_returns=opts["num_returns"], options=_options(opts))
        _set_arity(signatures, op.id, rf._read_arity())
        return op
    if type(node) is ClassNode:
        ac = node._actor_class
        cls_id, data = ac._pickle()
        functions[cls_id] = data
        opts = ac._options
        inputs = _read_values(node, ids, constants)
        op = make_op(OpKind.ACTOR, ac._name, ordinal, inputs=inputs,
                     template=_template(node, list(inputs), ids, constants), fn_id=cls_id,
                     fn_digest=code_digest(ac._cls), resources=opts["_key"], pure=False,
                     options=_options(opts) + (("_methods", tuple(sorted(
                         (m, o["num_returns"]) for m, o in ac._methods.items()))),
                                               ("name", opts.get("name"))))
        _set_arity(signatures, op.id, ac._read_arity())
        return op
    if type(node) is ActorHandleNode:  # a running actor: its handle is the op's value
        handle = node._handle
        return make_op(OpKind.CONSTANT, repr(handle), key=("actor", handle._actor_id),
                       template=pack_template((handle,), {}))
    if type(node) is ClassMethodNode:
        cls_node = node._class_node
        methods, actor_name = ((cls_node._methods, cls_node._name)
                               if type(cls_node) is ActorHandleNode
                               else (cls_node._actor_class._methods, cls_node._actor_class._name))
        actor_id = ids[id(cls_node)]
        rest = _read_values(node, ids, constants)
        method_opts = methods[node._method]
        op = make_op(OpKind.METHOD, f"{actor_name}.{node._method}", ordinal,
                     inputs=(actor_id,) + rest,
                     template=_template(node, list(rest), ids, constants, offset=1),
                     fn_id=0, method=node._method, pure=False,
                     num_returns=method_opts["num_returns"])
        _set_arity(signatures, op.id, method_opts.get("_arity"))
        return op
    raise TypeError(f"cannot compile {node!r}: not a graph node sluice knows")


def _options(opts: dict) -> tuple:
    if opts.get("runtime_env") is not None:
        raise ValueError(f"{opts.get('name') or opts.get('class_name') or 'a node'}: runtime_env "
                         f"on a .bind() node: compiled Plans do not carry a per-node runtime_env "
                         f"yet; give it to the whole job with sluice.init(runtime_env=...) (Plans "
                         f"run in it), or call the function with .remote()")
    # Workflow step options join an op's identity only when set: other graphs keep their ids.
    steps = tuple((k, opts[k]) for k in WORKFLOW_OPTIONS if k in opts and opts[k] != TASK_DEFAULTS[k])
    given = tuple((k, opts[k]) for k in _OPTION_KEYS_WHEN_SET if opts.get(k) is not None)
    return tuple((k, opts[k]) for k in _OPTION_KEYS if k in opts) + steps + given


def _set_arity(signatures: dict[str, Arity], op_id: str, arity: Arity | None) -> None:
    if arity is not None:  # None: a builtin without a signature, not checked
        signatures[op_id] = arity
