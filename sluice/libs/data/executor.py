"""The streaming executor: sluice.data's hooks on the Plan runner, block by block, in bounded memory.

A Data plan is a compiler Plan whose ops carry their functions (``planner.py``);
the Plan runner walks its stages and :class:`StreamingHooks` makes each stage's
value a stream of finished blocks (``BlockRef``: the block's ObjectRef and its
metadata). A call stage runs once per block through the runner's
``Execution.submit`` (the same stage-to-task translation as any Plan; the task
runs a :class:`~sluice.libs.data.block_tasks.BlockStageFunction`). A stage pulls
blocks from the stage before it and keeps at most ``window`` of its own tasks
unfinished; it yields its oldest block only once that is done, so a stage runs
ahead of its reader by at most its window. That is the backpressure: nothing is
submitted that no reader has room for, and the bytes alive are bounded by the
windows times the block size (the window shrinks when blocks are big:
``DataContext.memory_fraction`` of the store over the mean block). An actor-pool
stage is a replica set: the hooks' ``create_actor`` starts the pool and each
block's call goes to one of its actors. Barriers (shuffles) drain their input
first: that is what a barrier is.

Order is kept: blocks come out in the order of the source's read tasks.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

import sluice
from sluice.compiler import runner
from sluice.compiler.ir import OpKind
from sluice.compiler.plan import Stage
from sluice.libs.data import block_tasks, shuffle
from sluice.libs.data.block_tasks import BlockMeta
from sluice.libs.data.context import DataContext
from sluice.libs.data.logical import Kind, LogicalOp
from sluice.libs.data.planner import DataPlan
from sluice.libs.data import dashboard_page
from sluice.libs.data.progress import ExecutionStats, ProgressBars, StageStats


@dataclass
class BlockRef:
    """A block in the store (``parts``: a shuffle map side's pieces instead) and its metadata."""

    meta_ref: Any
    block: Any = None
    parts: list = field(default_factory=list)
    label: str | None = None  # what the read task that made it read (files), when one did
    _meta: BlockMeta | None = None

    def meta(self) -> BlockMeta:
        """The block's :class:`BlockMeta` (rows, bytes, columns, ...); waits for the task that makes it."""
        if self._meta is None:
            self._meta = sluice.get(self.meta_ref)
        return self._meta

    @property
    def num_rows(self) -> int:
        return self.meta()[0]


class MaterializedSource:
    """A source over blocks already in the store (``Dataset.materialize()``)."""

    name = "FromBlocks"

    def __init__(self, refs: list[BlockRef]):
        self.refs = refs

    def describe(self) -> str:
        return f"{len(self.refs)} blocks in the object store"

    def count_rows(self) -> int:
        return sum(r.num_rows for r in self.refs)

    def rows_to_read(self) -> int:
        return self.count_rows()

    def column_names(self, *, read: bool = False) -> list[str] | None:
        """The first block's columns, from its metadata (no block is fetched)."""
        columns = self.refs[0].meta().columns if self.refs else ()
        return [name for name, _ in columns] or None

    def schema(self) -> pa.Schema | None:
        return sluice.get(self.refs[0].block).schema if self.refs else None

    def with_columns(self, columns: list[str]) -> None:
        return None

    def with_filter(self, expr: Any) -> None:
        return None

    def with_limit(self, n: int) -> None:
        return None


def _same_columns(a: tuple, b: tuple) -> bool:
    """Equal names, and types equal up to nulls (a column of only None) and string widths."""
    if len(a) != len(b):
        return False
    strings = {"string", "large_string", "string_view"}
    return all(na == nb and (ta == tb or "null" in (ta, tb) or {ta, tb} <= strings)
               for (na, ta), (nb, tb) in zip(a, b))


def _fmt(columns: tuple) -> str:
    return "{" + ", ".join(f"{name}: {kind}" for name, kind in columns) + "}"


def _user_columns(op: LogicalOp) -> bool:
    """Whether a user's function makes ``op``'s columns (a map of one; a filter keeps its input's)."""
    if op.kind is Kind.ACTOR_MAP:
        return True
    return op.kind is Kind.MAP and hasattr(op.fn, "fn") and not op.name.startswith("Filter(")


def _difference(first: tuple, then: tuple, a: str = "one block", b: str = "the next"
                ) -> tuple[str | None, str]:
    """The first column where two blocks' ``(name, type)`` lists disagree (blocks ``a`` and
    ``b``), and a phrase saying how."""
    types, later = dict(first), dict(then)
    for name, kind in first:
        if name not in later:
            return name, f"column {name!r} is in {a} but not in {b}"
        if not _same_columns(((name, kind),), ((name, later[name]),)):
            return name, f"column {name!r} is {kind} in {a} but {later[name]} in {b}"
    extra = next((name for name, _ in then if name not in types), None)
    if extra is not None:
        return extra, f"column {extra!r} is in {b} but not in {a}"
    return None, f"the columns of {a} and {b} are in another order"


class Execution:
    """One run of a DataPlan: ``block_refs()`` streams its output; ``stats`` fills in as it goes."""

    def __init__(self, dplan: DataPlan, context: DataContext | None = None):
        self.dplan = dplan
        self.ctx = context or DataContext.get_current()
        if not sluice.is_initialized():
            sluice.init()
        self.stats = ExecutionStats()
        for s in dplan.plan.stages:  # stats list stages in plan order, as explain() numbers them
            if s.kind is not OpKind.ACTOR:
                ops = dplan.stage_ops(s)
                self.stats.stages[s.id] = StageStats(s.name, reads=ops[0].kind is Kind.READ,
                                                     op_names=tuple(op.name for op in ops))
        self.bars = ProgressBars(self.ctx.show_progress(), tuple(self.stats.stages))
        dashboard_page.note_execution(" -> ".join(s.name for s in self.stats.stages.values()),
                                      self.stats)

    def block_refs(self) -> Iterator[BlockRef]:
        """Every output block, finished, in order."""
        try:
            run = runner.run_plan(self.dplan.plan, StreamingHooks(self))
            yield from run.outputs()[0]
        finally:
            self.stats.finished = time.perf_counter()
            self.bars.close()


class StreamingHooks(runner.StageHooks):
    """The Plan runner's hooks for a Data plan: every stage's value is a stream of BlockRefs.

    Streams are generators: the runner's walk only builds them, and nothing is
    submitted until the output is read. A stage read by several stages runs once;
    each reader gets its own copy of its stream.
    """

    def __init__(self, execution: Execution):
        self.dplan = execution.dplan
        self.ctx = execution.ctx
        self.stats = execution.stats
        self.bars = execution.bars
        self.cpus = max(1, int(sluice.cluster_resources().get("CPU", 1)))
        self.store_bytes = 1 << 30
        plan = self.dplan.plan
        self.stage_of = {op.id: s for s in plan.stages for op in s.ops}
        self.readers: dict[str, int] = {}  # op id -> how many times other stages read its stream
        for s in plan.stages:
            for i in self.dplan.stage_inputs(s):
                self.readers[i] = self.readers.get(i, 0) + 1
        self._copies: dict[str, list[Iterator[BlockRef]]] = {}
        # stage id -> the stages whose blocks it takes in (their rows out are its total in)
        self.upstream = {s.id: [self.stage_of[i].id for i in self.dplan.stage_inputs(s)]
                         for s in plan.stages if s.kind is not OpKind.ACTOR}

    # -- hooks --------------------------------------------------------------------------------
    def begin(self, run: runner.Execution) -> None:
        rt = run.rt
        self.store_bytes = rt.store_capacity()

    def run_stage(self, run: runner.Execution, stage: Stage) -> Any:
        """The stage's stream (an actor stage: nothing; its pool starts when first read)."""
        if stage.kind is OpKind.ACTOR:
            return None
        ops = self.dplan.stage_ops(stage)
        if stage.kind is OpKind.METHOD:
            return self._actor_pool(run, stage)
        if stage.kind is OpKind.BLOCKS:
            op = ops[0]
            if op.kind is Kind.LIMIT:
                return self._limit(run, stage, op.limit or 0)
            if op.kind is Kind.UNION:
                return self._union(run, stage)
            return self._shuffle(run, stage, op)
        return self._task_stage(run, stage, ops)

    def stage_function(self, run: runner.Execution, stage: Stage) -> Any:
        """One task of a call stage: a BlockStageFunction of the functions its ops carry."""
        functions = run.functions
        fn_ids = tuple(op.fn_id for op in stage.ops)
        return block_tasks.BlockStageFunction(stage.name, fn_ids, {i: functions[i] for i in fn_ids})

    def create_actor(self, run: runner.Execution, stage: Stage) -> Any:
        """The pool of a ``map_batches(CallableClass, concurrency=n)``: n actors of the stage."""
        spec = self.dplan.logical[stage.ops[0].id].fn
        return [run.create_actor(stage) for _ in range(spec.size)]

    # -- streams ------------------------------------------------------------------------------
    def _inputs(self, run: runner.Execution, stage: Stage) -> list[Iterator[BlockRef]]:
        """A stream of each input of ``stage``, once per read; a shared stream is copied."""
        streams = []
        for op_id in self.dplan.stage_inputs(stage):
            if self.readers.get(op_id, 1) <= 1:
                streams.append(run.values[op_id])
                continue
            if op_id not in self._copies:  # one copy of the stream for each reader
                self._copies[op_id] = list(itertools.tee(run.values[op_id], self.readers[op_id]))
            streams.append(self._copies[op_id].pop())
        return streams

    def _stats_for(self, stage: Stage) -> StageStats:
        st = self.stats.stages.get(stage.id)
        if st is None:
            st = self.stats.stages[stage.id] = StageStats(stage.name)
        if st.started is None:
            st.started = time.perf_counter()
        return st

    def _done(self, stage: Stage, ref: BlockRef, passed_on: bool = False) -> BlockRef:
        """Account a finished block to its stage (waits for it; raises its task's error).

        ``passed_on``: the stage hands on a block another stage made (its rows in are its rows).
        """
        meta = ref.meta()
        st = self._stats_for(stage)
        st.blocks += 1
        st.rows += meta.rows
        st.bytes += meta.bytes
        st.task_s += meta.task_s
        if passed_on:
            st.add(meta.rows, ())
        else:
            st.add(meta.rows_in, meta.op_rows)
        st.finished = time.perf_counter()
        if meta.rows and meta.columns:
            if st.columns is None:
                st.columns, st.first_label = meta.columns, ref.label
            elif not _same_columns(st.columns, meta.columns):
                raise ValueError(self._columns_differ(stage, st, meta.columns, ref.label))
        self._update_bar(stage, st)
        return ref

    def _columns_differ(self, stage: Stage, st: StageStats, columns: tuple, label: str | None) -> str:
        """Why blocks of ``stage`` disagree, naming the column, the files the blocks were read
        from and what to do: types a read inferred file by file, or a batch function's answers."""
        assert st.columns is not None
        ops = self.dplan.stage_ops(stage)
        source = ops[0].source if ops[0].kind is Kind.READ else None
        functions = [op.name for op in ops[1:] if _user_columns(op)]
        hint = getattr(source, "schema_hint", None)  # a read of files, which infers types per file
        if hint is None or not st.first_label or not label:
            _, text = _difference(st.columns, columns)
            remedy = (f"{' and '.join(functions)} must return the same columns (and types) for every "
                      "batch" if functions else "the blocks of one dataset must share their columns: "
                      "make its inputs agree (e.g. cast them) first")
            return (f"stage {stage.name} produced blocks with different columns: {_fmt(st.columns)} and "
                    f"then {_fmt(columns)} ({text}); {remedy}")
        a, b = (f"the block of {st.first_label}", f"that of {label}") if functions else (st.first_label, label)
        column, text = _difference(st.columns, columns, a, b)
        remedy = hint(column, (dict(st.columns).get(column), dict(columns).get(column)))
        also = (f"; or, if {' or '.join(functions)} made the difference, make it return the same "
                "columns and types for every batch") if functions else ""
        return (f"{stage.name}: {text}; the read infers each file's column types from that file "
                f"alone: {remedy}{also}")

    def _update_bar(self, stage: Stage, st: StageStats) -> None:
        if not self.bars.enabled:
            return
        if st.total_in is None and self.upstream.get(stage.id):
            ups = [self.stats.stages.get(u) for u in self.upstream[stage.id]]
            if all(u is not None and u.done for u in ups):
                st.total_in = sum(u.rows for u in ups if u is not None)
        if st.total_in is None and st.done:
            st.total_in = st.rows_in  # finished: what it took in was all there was
        self.bars.update(stage.id, st)

    def _window(self, st: StageStats, estimate: int = 0) -> int:
        """How many of a stage's tasks may be unfinished: 2 per CPU, fewer when blocks are big.

        Block size: the mean of the stage's finished blocks, or before any finishes, the
        read tasks' estimate (so the first wave of a big scan already fits the store).
        """
        limit = self.ctx.max_tasks_in_flight_per_stage or 2 * self.cpus
        mean = st.bytes // st.blocks if st.blocks else estimate
        if mean > 0:
            limit = min(limit, max(1, int(self.store_bytes * self.ctx.memory_fraction) // mean))
        return limit

    def _task_stage(self, run: runner.Execution, stage: Stage,
                    ops: list[LogicalOp]) -> Iterator[BlockRef]:
        """A call stage, once per block: each block's task through ``run.submit``."""
        head = ops[0]
        reads = head.kind is Kind.READ
        materialized = reads and isinstance(head.source, MaterializedSource)
        fns = [op.fn for op in (ops[1:] if reads else ops)]
        partitions = bool(fns) and getattr(fns[-1], "partitions", False)
        if reads and self.bars.enabled:  # the bar's total (Parquet: from the footers)
            self._stats_for(stage).total_in = head.source.rows_to_read()
        if materialized and not fns:
            yield from (self._done(stage, r, passed_on=True) for r in head.source.refs)
            self._stats_for(stage).done = True
            return
        num_parts = self._num_parts(stage) if partitions else 1
        estimate = 0
        if reads and not materialized:
            read_tasks = head.source.read_tasks(self.cpus * 2)
            sizes = [t.size_bytes for t in read_tasks if t.size_bytes]
            estimate = sum(sizes) // len(sizes) if sizes else 0
            items: Iterator = ((t, t.label) for t in read_tasks)
        elif materialized:
            items = ((r.block, None) for r in head.source.refs)
        else:
            items = ((r.block, None) for r in self._inputs(run, stage)[0])
        yield from self._submit_windowed(
            stage, items, lambda i, item: run.submit(stage, (i, num_parts, item), num_parts + 1),
            partitions, estimate)

    def _submit_windowed(self, stage: Stage, items: Iterator[tuple[Any, str | None]],
                         submit: Callable[[int, Any], Any], partitions: bool,
                         estimate: int = 0) -> Iterator[BlockRef]:
        """Each ``(item, label)`` through ``submit``, at most a window of them unfinished;
        ``label`` names what a read task reads (for errors about its block)."""
        st = self._stats_for(stage)
        self._update_bar(stage, st)  # the bar starts with the stage (its clock and rate with it)
        inflight: deque[BlockRef] = deque()
        try:
            for index, (item, label) in enumerate(items):
                while len(inflight) >= self._window(st, estimate):
                    yield self._done(stage, inflight.popleft())
                refs = submit(index, item)
                inflight.append(BlockRef(refs[0], parts=list(refs[1:]), label=label) if partitions
                                else BlockRef(refs[0], refs[1], label=label))
            while inflight:
                yield self._done(stage, inflight.popleft())
            st.done = True
            self._update_bar(stage, st)
        finally:
            if inflight:  # the reader stopped early (a limit): drop what is still running
                for r in inflight:
                    sluice.cancel(r.meta_ref)

    def _num_parts(self, stage: Stage) -> int:
        """Pieces per block for the shuffle that reads ``stage``."""
        for s in self.dplan.plan.stages:
            if s.kind is OpKind.BLOCKS and stage.output in s.inputs:
                spec = self.dplan.stage_ops(s)[0].fn
                return self._shuffle_width(spec)
        return 1

    def _shuffle_width(self, spec: shuffle.ShuffleSpec) -> int:
        if spec.how == "aggregate" and not spec.keys:
            return 1
        return spec.num_outputs or self.ctx.shuffle_partitions or self.cpus

    def _union(self, run: runner.Execution, stage: Stage) -> Iterator[BlockRef]:
        st = self._stats_for(stage)
        for ref in itertools.chain.from_iterable(self._inputs(run, stage)):
            st.blocks += 1  # counted, not checked: a union may join datasets of other columns
            st.rows += ref.num_rows
            st.add(ref.num_rows, ())
            yield ref
        st.done = True

    def _limit(self, run: runner.Execution, stage: Stage, n: int) -> Iterator[BlockRef]:
        upstream = self._inputs(run, stage)[0]
        remaining = n
        cut = sluice.remote(num_returns=2, name="Limit")(block_tasks.slice_block)
        st = self._stats_for(stage)
        try:
            while remaining > 0:
                ref = next(upstream, None)
                if ref is None:
                    break
                rows = ref.num_rows
                st.add(rows, ())
                if rows > remaining:
                    meta, block = cut.remote(ref.block, remaining)
                    ref = BlockRef(meta, block)
                    rows = remaining
                remaining -= rows
                st.blocks += 1
                st.rows += rows
                yield ref
        finally:
            close = getattr(upstream, "close", None)
            if close is not None:
                close()  # the stages below stop submitting (and cancel what runs)
            st.finished = time.perf_counter()

    def _actor_pool(self, run: runner.Execution, stage: Stage) -> Iterator[BlockRef]:
        """Each block's call goes to the next actor of the pool; the pool stops at the end."""
        upstream = self._inputs(run, stage)[0]
        actor_stage = self.stage_of[stage.ops[0].inputs[0]]
        pool = run.actor(actor_stage)
        turn = itertools.count()
        try:
            yield from self._submit_windowed(
                stage, ((r.block, None) for r in upstream),
                lambda i, block: run.call(stage, pool[next(turn) % len(pool)], (i, block)), False)
        finally:
            run.state.forget_actor(actor_stage.output)
            for actor in pool:
                sluice.kill(actor)

    def _shuffle(self, run: runner.Execution, stage: Stage, op: LogicalOp) -> Iterator[BlockRef]:
        spec: shuffle.ShuffleSpec = op.fn
        ups = list(self._inputs(run, stage)[0])  # the barrier: every block of the input
        st = self._stats_for(stage)
        reduce = sluice.remote(num_returns=2, name=stage.name)(block_tasks.reduce_pieces)
        if spec.how == "repartition":
            take = sluice.remote(num_returns=2, name=stage.name)(block_tasks.take_slices)
            plans = shuffle.repartition_slices([r.num_rows for r in ups], spec.num_outputs)
            # An output with no rows still gets the input's columns (a slice of none of block 0).
            outs = [take.remote(p, *[ups[b].block for b, _, _ in p]) if p else
                    take.remote([(0, 0, 0)], ups[0].block) for p in plans] if ups else []
        elif spec.how == "sort":
            outs = self._sort(spec, ups, reduce)
        else:
            n = self._shuffle_width(spec)
            outs = [reduce.remote(spec, i, *[r.parts[i] for r in ups]) for i in range(n)] if ups else []
        del ups
        st.started = st.started or time.perf_counter()
        for meta, block in outs:
            yield self._done(stage, BlockRef(meta, block))
        st.done = True
        self._update_bar(stage, st)

    def _sort(self, spec: shuffle.ShuffleSpec, ups: list[BlockRef], reduce: Any) -> list:
        if not ups:
            return []
        n = self._shuffle_width(spec)
        sample = sluice.remote(name="SortSample")(shuffle.sort_sample)
        samples = [s for s in sluice.get([sample.remote(r.block, spec.keys) for r in ups]) if s.num_rows]
        boundaries = shuffle.sort_boundaries(samples, spec.keys, n, spec.descending)
        n = len(boundaries) + 1
        cut = sluice.remote(num_returns=n + 1, name="SortCut")(block_tasks.cut_for_sort)
        pieces = [cut.remote(r.block, spec.keys, boundaries, spec.descending)[1:] for r in ups]
        return [reduce.remote(spec, i, *[p[i] for p in pieces]) for i in range(n)]
