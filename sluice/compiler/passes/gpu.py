"""GPU placement: ops that ask for a GPU run on the device, and every copy between
host and device memory becomes an explicit TRANSFER op.

Legality rule: placement never changes what the graph computes. An op whose
resources ask for a GPU gets ``device="gpu"`` (its id and resources stay; only
``content`` is recomputed). A value crosses between host and device memory only
through a TRANSFER op that copies it (``sluice.compiler.devices``), so every op
reads its inputs in the memory it runs in, and the driver always gets host
values back.

Which ops hold values where:

- a CALL op with ``device="gpu"`` reads and returns device values;
- INPUT, SELECT, ACTOR and METHOD ops read and return host values (an actor is a
  process of its own: its calls exchange host values, as in Ray, and a copy
  could never share its task); the edge from an ACTOR to its METHOD calls is a
  handle, never data;
- ``to_device`` reads a host value and returns a device one, ``to_host`` the reverse.

Where the copies go, chosen so that linear fusion merges each copy into the
GPU task beside it (a copy in a task of its own would only be pickled back to
host memory on its way to the next task):

- ``to_device``: one per crossing edge, with the resources and device of its GPU
  *consumer*, so its only reader is that consumer and it fuses into its stage.
- ``to_host``: one per GPU producer, shared by all its host readers (the value is
  copied once), with the resources and device of that *producer*, so it fuses
  into the producer's stage when the producer has no other reader. A GPU op in
  ``graph.graph["outputs"]`` is replaced there by its ``to_host`` op.

Run it after CSE (its per-edge ``to_device`` ops are equal computations that
CSE would merge) and before fusion. It is idempotent.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import networkx as nx

from sluice.compiler.ir import Op, OpKind, make_op, topological_ops

TO_DEVICE = "to_device"
TO_HOST = "to_host"
PASS_NAME = "gpu_placement"


def place_gpus(graph: nx.DiGraph) -> nx.DiGraph:
    """A copy of ``graph`` with GPU ops on the device and host<->device copies made explicit.

    Records ``"gpu_placement"`` in ``graph.graph["passes"]`` when anything changed.
    """
    g = graph.copy()
    changed = _set_devices(g)
    order = topological_ops(g)
    changed |= _insert_to_host(g, order)
    changed |= _insert_to_device(g, order)
    if changed:
        g.graph["passes"] = (*g.graph.get("passes", ()), PASS_NAME)
    return g


_HOST_VALUES = (OpKind.INPUT, OpKind.SELECT, OpKind.CONSTANT)


def asks_for_gpu(op: Op) -> bool:
    """True when ``op``'s resources request any amount of GPU."""
    return dict(op.resources).get("GPU", 0) > 0


def input_device(op: Op) -> str:
    """The memory (``"cpu"`` or ``"gpu"``) ``op`` reads its inputs from."""
    if op.kind is OpKind.TRANSFER:
        return "gpu" if op.method == TO_HOST else "cpu"
    return "gpu" if op.kind is OpKind.CALL and op.device == "gpu" else "cpu"


def output_device(op: Op) -> str:
    """The memory (``"cpu"`` or ``"gpu"``) ``op``'s value lives in."""
    if op.kind is OpKind.TRANSFER:
        return "gpu" if op.method == TO_DEVICE else "cpu"
    return "gpu" if op.kind is OpKind.CALL and op.device == "gpu" else "cpu"


def _set_devices(g: nx.DiGraph) -> bool:
    """Put every op that asks for a GPU on the device (in place on the copy ``g``)."""
    changed = False
    for node, data in g.nodes(data=True):
        op: Op = data["op"]
        if op.kind in _HOST_VALUES or op.device == "gpu" or not asks_for_gpu(op):
            continue  # inputs and bound objects are host values whatever they were given
        placed = replace(op, device="gpu")
        data["op"] = placed.with_inputs(placed.inputs)
        changed = True
    return changed


def _insert_to_host(g: nx.DiGraph, order: list[Op]) -> bool:
    """One ``to_host`` per GPU producer that a host op or the driver reads."""
    outputs = tuple(g.graph.get("outputs", ()))
    changed = False
    for producer in order:
        if output_device(producer) != "gpu":
            continue
        readers = [r for r in sorted(g.successors(producer.id))
                   if input_device(g.nodes[r]["op"]) == "cpu"]
        if not readers and producer.id not in outputs:
            continue
        copy = make_op(OpKind.TRANSFER, TO_HOST, inputs=(producer.id,), method=TO_HOST,
                       resources=producer.resources, device="gpu")
        g.add_node(copy.id, op=copy)
        g.add_edge(producer.id, copy.id)
        for reader in readers:
            _reroute(g, reader, producer.id, copy.id)
        outputs = tuple(copy.id if o == producer.id else o for o in outputs)
        changed = True
    if changed:
        g.graph["outputs"] = outputs
    return changed


def _insert_to_device(g: nx.DiGraph, order: list[Op]) -> bool:
    """One ``to_device`` per edge from a host value into a GPU consumer."""
    crossing: dict[str, list[str]] = defaultdict(list)  # host producer -> GPU consumers
    for consumer in order:
        if input_device(g.nodes[consumer.id]["op"]) != "gpu":
            continue
        for src in sorted(g.predecessors(consumer.id)):
            if output_device(g.nodes[src]["op"]) == "cpu":
                crossing[src].append(consumer.id)
    for src, consumers in crossing.items():
        for ordinal, consumer_id in enumerate(sorted(consumers)):
            consumer = g.nodes[consumer_id]["op"]
            # Equal content for each consumer of one source: the ordinal keeps them apart.
            copy = make_op(OpKind.TRANSFER, TO_DEVICE, ordinal, inputs=(src,), method=TO_DEVICE,
                           resources=consumer.resources, device="gpu")
            g.add_node(copy.id, op=copy)
            g.add_edge(src, copy.id)
            _reroute(g, consumer_id, src, copy.id)
    return bool(crossing)


def _reroute(g: nx.DiGraph, reader: str, old: str, new: str) -> None:
    """Make ``reader`` read ``new`` wherever it read ``old`` (its id stays)."""
    op: Op = g.nodes[reader]["op"]
    g.nodes[reader]["op"] = op.with_inputs(tuple(new if i == old else i for i in op.inputs))
    g.remove_edge(old, reader)
    g.add_edge(new, reader)
