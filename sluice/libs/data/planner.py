"""Lower a Dataset's optimized logical plan through the compiler into a physical Plan.

Each logical op becomes one compiler ``Op`` that carries its function, like any
graph's op (in ``Plan.functions``): a read is a CALL of
:func:`~sluice.libs.data.block_tasks.read_block`, a block map a CALL of its
block function, an actor-pool map an ACTOR (of
:class:`~sluice.libs.data.block_tasks.ActorPoolWorker`, built from the pool's
spec) plus its METHOD ``process``; a limit, union or shuffle is a BLOCKS op,
which the executor's hooks run over the whole stream. The compiler's own passes
decide the stages (linear fusion: consecutive maps with equal resources run as
one task per block), so ``explain()`` and ``visualize()`` are the compiler's
views of the same Plan the Plan runner runs.
"""

from __future__ import annotations

from dataclasses import dataclass


from sluice.compiler.ir import Op, OpKind, make_op, new_graph, pack_template
from sluice.compiler.lower import lower
from sluice.compiler.passes.fusion import fuse_linear_chains
from sluice.compiler.passes.locality import place_stages
from sluice.compiler.plan import Plan, Stage
from sluice.executor.calls import dumps_function
from sluice.executor.resources import demand_key
from sluice.libs.data.block_tasks import ActorPoolWorker, read_block
from sluice.libs.data.columns import check_plan
from sluice.libs.data.logical import Kind, LogicalOp, topological
from sluice.libs.data.optimizer import optimize


@dataclass(frozen=True)
class DataPlan:
    """A physical Plan plus, for each of its ops, the logical op it runs."""

    plan: Plan
    logical: dict[str, LogicalOp]     # compiler op id -> logical op
    root: LogicalOp                   # the optimized logical plan
    op_ids: dict[int, str]            # id(logical op) -> the compiler op giving its output

    def stage_inputs(self, stage: Stage) -> list[str]:
        """Ids of the ops outside ``stage`` that it reads, once per read (a union may read
        one dataset twice; the Plan's ``Stage.inputs`` lists it once)."""
        inside = {op.id for op in stage.ops}
        reads: list[str] = []
        for lop in dict.fromkeys(self.logical[op.id] for op in stage.ops if op.kind is not OpKind.ACTOR):
            reads += [self.op_ids[id(i)] for i in lop.inputs if self.op_ids[id(i)] not in inside]
        return reads

    def stage_ops(self, stage: Stage) -> list[LogicalOp]:
        """The logical ops of ``stage`` in order (an actor pool stage: its map op only)."""
        return [self.logical[op.id] for op in stage.ops if op.kind is not OpKind.ACTOR]


def plan_dataset(root: LogicalOp, optimize_plan: bool = True) -> DataPlan:
    """The DataPlan of a Dataset's logical plan (a ColumnNotFoundError first when an op
    names a column its input does not have)."""
    check_plan(root)
    applied: tuple[str, ...] = ()
    if optimize_plan:
        root, applied = optimize(root)
    ops: list[Op] = []
    logical: dict[str, LogicalOp] = {}
    op_of: dict[int, str] = {}
    functions: dict[int, bytes] = {}
    for ordinal, lop in enumerate(topological(root), start=1):
        inputs = tuple(op_of[id(i)] for i in lop.inputs)
        for op in _ops_for(lop, inputs, ordinal, functions):
            ops.append(op)
            logical[op.id] = lop
            op_of[id(lop)] = op.id
    graph = new_graph(ops, {"functions": functions, "outputs": (op_of[id(root)],),
                            "multi_output": False, "passes": applied})
    if optimize_plan:
        graph = fuse_linear_chains(graph)
    graph = place_stages(graph)
    return DataPlan(lower(graph, optimized=optimize_plan), logical, root, op_of)


def _ops_for(lop: LogicalOp, inputs: tuple[str, ...], ordinal: int,
             functions: dict[int, bytes]) -> list[Op]:
    """The compiler ops of one logical op; the functions they call go into ``functions``."""
    resources = _demand(lop)
    retries = (("max_retries", dict(lop.resources).get("max_retries", 0)),)
    if lop.kind in (Kind.READ, Kind.MAP):
        fn = read_block if lop.kind is Kind.READ else lop.fn
        return [make_op(OpKind.CALL, lop.name, ordinal, inputs=inputs, resources=resources,
                        device="gpu" if dict(lop.resources).get("num_gpus") else "cpu",
                        options=retries, **_carried(fn, lop.name, functions))]
    if lop.kind is Kind.ACTOR_MAP:
        spec = lop.fn
        pool = make_op(OpKind.ACTOR, f"ActorPool({spec.class_name}, size={spec.size})", ordinal,
                       resources=demand_key(spec.num_cpus, spec.num_gpus, None), pure=False,
                       template=pack_template((spec,), {}), options=(("_methods", (("process", 2),)),),
                       **_carried(ActorPoolWorker, lop.name, functions))
        call = make_op(OpKind.METHOD, lop.name, ordinal, inputs=(pool.id, *inputs), method="process",
                       num_returns=2, pure=False)
        return [pool, call]
    how = lop.kind.value if lop.kind is not Kind.SHUFFLE else lop.fn.how
    return [make_op(OpKind.BLOCKS, lop.name, ordinal, inputs=inputs, method=how)]


def _carried(fn: object, name: str, functions: dict[int, bytes]) -> dict[str, int]:
    """The op field of a function the op carries (its id; its pickle goes into ``functions``)."""
    fn_id, data = dumps_function(fn, f"sluice.data stage {name}")
    functions[fn_id] = data
    return {"fn_id": fn_id}


def _demand(lop: LogicalOp) -> tuple:
    opts = dict(lop.resources)
    return demand_key(opts.get("num_cpus", 1), opts.get("num_gpus", 0), opts.get("resources"))
