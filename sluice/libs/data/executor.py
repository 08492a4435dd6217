"""The streaming executor: runs a DataPlan's stages as tasks, block by block, in bounded memory.

Each stage is a generator of finished blocks (``BlockRef``: the block's ObjectRef
and its metadata). A task stage pulls blocks from the stage before it and keeps at
most ``window`` of its own tasks unfinished; it yields its oldest block only once
that is done, so a stage runs ahead of its reader by at most its window. That is
the backpressure: nothing is submitted that no reader has room for, and the bytes
alive are bounded by the windows times the block size (the window shrinks when
blocks are big: ``DataContext.memory_fraction`` of the store over the mean block).
Barriers (shuffles) drain their input first: that is what a barrier is.

Order is kept: blocks come out in the order of the source's read tasks.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

import sluice
from sluice.compiler.ir import OpKind
from sluice.compiler.plan import Stage
from sluice.libs.data import shuffle
from sluice.libs.data.context import DataContext
from sluice.libs.data.logical import Kind, LogicalOp
from sluice.libs.data.planner import DataPlan
from sluice.libs.data.progress import ExecutionStats, ProgressBars, StageStats


@dataclass
class BlockRef:
    """A block in the store (``parts``: a shuffle map side's pieces instead) and its metadata."""

    meta_ref: Any
    block: Any = None
    parts: list = field(default_factory=list)
    _meta: tuple | None = None

    def meta(self) -> tuple:
        """(rows, bytes, task seconds, column names); waits for the task that makes it."""
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

    def schema(self) -> pa.Schema | None:
        return sluice.get(self.refs[0].block).schema if self.refs else None

    def with_columns(self, columns: list[str]) -> None:
        return None

    def with_filter(self, expr: Any) -> None:
        return None

    def with_limit(self, n: int) -> None:
        return None


class StageTask:
    """What one task of a stage runs in a worker: read or take a block, apply the fused ops."""

    def __init__(self, name: str, fns: list, reads: bool, partitions: bool):
        self.name, self.fns, self.reads, self.partitions = name, fns, reads, partitions
        self.__qualname__ = name

    def __call__(self, index: int, num_parts: int, item: Any) -> tuple:
        start = time.perf_counter()
        _release_arrow_memory()
        fns = self.fns[:-1] if self.partitions else self.fns
        try:
            block = item() if self.reads else item
            for fn in fns:
                if _nothing(block):  # a map left no rows and so no columns: nothing to do
                    break
                block = fn(block, index) if getattr(fn, "wants_index", False) else fn(block)
            if not self.partitions:
                out = [block]
            elif _nothing(block):
                out = [block] * num_parts
            else:
                out = self.fns[-1](block, num_parts, index)
        except Exception as err:
            err.add_note(f"in sluice.data stage {self.name}, block {index}")
            raise
        for value in out:
            if not isinstance(value, pa.Table):
                raise TypeError(f"stage {self.name} produced {type(value).__name__} for block {index}; "
                                "every block must be a pyarrow.Table")
        rows = sum(b.num_rows for b in out)
        meta = (rows, sum(b.nbytes for b in out), time.perf_counter() - start, _columns(out[0]))
        _worker_state["made"] = meta[1]
        return (meta, *out)


def _nothing(block: pa.Table) -> bool:
    return block.num_rows == 0 and block.num_columns == 0


def _columns(block: pa.Table) -> tuple[tuple[str, str], ...]:
    """(name, type) of each column: what blocks of one stage must agree on."""
    return tuple((f.name, str(f.type)) for f in block.schema)


def _same_columns(a: tuple, b: tuple) -> bool:
    """Equal names, and types equal up to nulls (a column of only None) and string widths."""
    if len(a) != len(b):
        return False
    strings = {"string", "large_string", "string_view"}
    return all(na == nb and (ta == tb or "null" in (ta, tb) or {ta, tb} <= strings)
               for (na, ta), (nb, tb) in zip(a, b))


# What the last task of this worker made: its buffers are freed once the result is
# stored, but Arrow's allocator keeps freed pages; the next task hands them back.
_worker_state = {"made": 0}
_RELEASE_AFTER = 16 * 1024 * 1024


def _release_arrow_memory() -> None:
    """Return the pages Arrow's allocator kept from a big previous block to the OS (~1 ms)."""
    if _worker_state["made"] >= _RELEASE_AFTER:
        pa.default_memory_pool().release_unused()
        _worker_state["made"] = 0


class ActorPoolWorker:
    """The actor behind one member of a ``map_batches(CallableClass, concurrency=n)`` pool."""

    def __init__(self, spec: Any):
        self.fn = spec.make_transform()
        self.name = spec.name

    def process(self, index: int, block: pa.Table) -> tuple:
        """Run the pool's batch function on one block; (metadata, block out)."""
        start = time.perf_counter()
        try:
            out = self.fn(block)
        except Exception as err:
            err.add_note(f"in sluice.data stage {self.name}, block {index}")
            raise
        return ((out.num_rows, out.nbytes, time.perf_counter() - start, _columns(out)), out)


def _slice_block(block: pa.Table, length: int) -> tuple:
    out = block.slice(0, length)
    return ((out.num_rows, out.nbytes, 0.0, _columns(out)), out)


def _reduce(spec: shuffle.ShuffleSpec, index: int, *pieces: pa.Table) -> tuple:
    start = time.perf_counter()
    out = shuffle.reduce_pieces(spec, index, list(pieces))
    return ((out.num_rows, out.nbytes, time.perf_counter() - start, _columns(out)), out)


def _cut_for_sort(block: pa.Table, keys: tuple, boundaries: list, descending: bool) -> tuple:
    parts = ([block] * (len(boundaries) + 1) if _nothing(block)
             else shuffle.sort_cut(block, keys, boundaries, descending))
    return ((sum(p.num_rows for p in parts), sum(p.nbytes for p in parts), 0.0, ()), *parts)


def _take_slices(plan: list, *blocks: pa.Table) -> tuple:
    out = shuffle.take_slices(plan, *blocks)
    return ((out.num_rows, out.nbytes, 0.0, _columns(out)), out)


def _fmt(columns: tuple) -> str:
    return "{" + ", ".join(f"{name}: {kind}" for name, kind in columns) + "}"


class Execution:
    """One run of a DataPlan: ``block_refs()`` streams its output; ``stats`` fills in as it goes."""

    def __init__(self, dplan: DataPlan, context: DataContext | None = None):
        self.dplan = dplan
        self.ctx = context or DataContext.get_current()
        if not sluice.is_initialized():
            sluice.init()
        rt = sluice.executor.api.runtime()  # type: ignore[attr-defined]
        self.cpus = max(1, int(sluice.cluster_resources().get("CPU", 1)))
        self.store_bytes = rt.store_capacity()
        self.stats = ExecutionStats()
        self.bars = ProgressBars(self.ctx.show_progress())
        plan = dplan.plan
        self.stages = {s.id: s for s in plan.stages}
        self.stage_of = {op.id: s.id for s in plan.stages for op in s.ops}
        readers: dict[str, int] = {}
        for s in plan.stages:
            for i in dplan.stage_inputs(s):
                readers[self.stage_of[i]] = readers.get(self.stage_of[i], 0) + 1
        self.readers = readers
        self._streams: dict[str, Any] = {}
        for s in plan.stages:  # stats list stages in plan order, as explain() numbers them
            if s.kind is not OpKind.ACTOR:
                self.stats.stages[s.id] = StageStats(s.name)
        self.output_stage = self.stage_of[plan.outputs[0]]

    # -- public -------------------------------------------------------------------------------
    def block_refs(self) -> Iterator[BlockRef]:
        """Every output block, finished, in order."""
        try:
            yield from self._stream(self.output_stage)
        finally:
            self.stats.finished = time.perf_counter()
            self.bars.close()

    # -- stages -------------------------------------------------------------------------------
    def _stream(self, stage_id: str) -> Iterator[BlockRef]:
        """The output of a stage; a stage read by several stages is run once and shared."""
        if self.readers.get(stage_id, 1) <= 1:
            return self._run(self.stages[stage_id])
        if stage_id not in self._streams:  # one copy of the stream for each reader
            copies = itertools.tee(self._run(self.stages[stage_id]), self.readers[stage_id])
            self._streams[stage_id] = list(copies)
        return self._streams[stage_id].pop()

    def _input_streams(self, stage: Stage) -> list[Iterator[BlockRef]]:
        return [self._stream(self.stage_of[i]) for i in self.dplan.stage_inputs(stage)]

    def _run(self, stage: Stage) -> Iterator[BlockRef]:
        ops = self.dplan.stage_ops(stage)
        if stage.kind is OpKind.ACTOR:
            return iter(())
        if stage.kind is OpKind.METHOD:
            return self._actor_pool(stage, ops[0], self._input_streams(stage)[0])
        if stage.kind is OpKind.BLOCKS:
            op = ops[0]
            inputs = self._input_streams(stage)
            if op.kind is Kind.LIMIT:
                return self._limit(stage, op.limit, inputs[0])
            if op.kind is Kind.UNION:
                return itertools.chain.from_iterable(inputs)
            return self._shuffle(stage, op, inputs[0])
        return self._task_stage(stage, ops)

    def _stats_for(self, stage: Stage) -> StageStats:
        st = self.stats.stages.get(stage.id)
        if st is None:
            st = self.stats.stages[stage.id] = StageStats(stage.name)
        if st.started is None:
            st.started = time.perf_counter()
        return st

    def _done(self, stage: Stage, ref: BlockRef) -> BlockRef:
        """Account a finished block to its stage (waits for it; raises its task's error)."""
        rows, nbytes, task_s, columns = ref.meta()
        st = self._stats_for(stage)
        st.blocks += 1
        st.rows += rows
        st.bytes += nbytes
        st.task_s += task_s
        st.finished = time.perf_counter()
        if rows and columns:
            if st.columns is None:
                st.columns = columns
            elif not _same_columns(st.columns, columns):
                raise ValueError(f"stage {stage.name} produced blocks with different columns: "
                                 f"{_fmt(st.columns)} and then {_fmt(columns)}; a batch function must "
                                 "return the same columns (and types) for every batch")
        self.bars.update(stage.id, st)
        return ref

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

    def _task_stage(self, stage: Stage, ops: list[LogicalOp]) -> Iterator[BlockRef]:
        head = ops[0]
        reads = head.kind is Kind.READ
        materialized = reads and isinstance(head.source, MaterializedSource)
        fns = [op.fn for op in (ops[1:] if reads else ops)]
        partitions = bool(fns) and getattr(fns[-1], "partitions", False)
        if materialized and not fns:
            yield from (self._done(stage, r) for r in head.source.refs)
            return
        num_parts = self._num_parts(stage) if partitions else 1
        task = StageTask(stage.name, fns, reads and not materialized, partitions)
        opts = dict(head.resources if reads else ops[0].resources)
        remote = sluice.remote(num_returns=num_parts + 1, name=stage.name,
                               num_cpus=opts.get("num_cpus", 1), num_gpus=opts.get("num_gpus", 0),
                               resources=opts.get("resources"),
                               max_retries=opts.get("max_retries", 0))(task)
        estimate = 0
        if reads and not materialized:
            read_tasks = head.source.read_tasks(self.cpus * 2)
            sizes = [t.size_bytes for t in read_tasks if t.size_bytes]
            estimate = sum(sizes) // len(sizes) if sizes else 0
            items: Iterator = iter(read_tasks)
        elif materialized:
            items = (r.block for r in head.source.refs)
        else:
            items = (r.block for r in self._input_streams(stage)[0])
        yield from self._submit_windowed(stage, items, lambda i, item: remote.remote(i, num_parts, item),
                                         partitions, estimate)

    def _submit_windowed(self, stage: Stage, items: Iterator, submit: Any, partitions: bool,
                         estimate: int = 0) -> Iterator[BlockRef]:
        st = self._stats_for(stage)
        inflight: deque[BlockRef] = deque()
        try:
            for index, item in enumerate(items):
                while len(inflight) >= self._window(st, estimate):
                    yield self._done(stage, inflight.popleft())
                refs = submit(index, item)
                inflight.append(BlockRef(refs[0], parts=list(refs[1:])) if partitions
                                else BlockRef(refs[0], refs[1]))
            while inflight:
                yield self._done(stage, inflight.popleft())
        finally:
            if inflight:  # the reader stopped early (a limit): drop what is still running
                for r in inflight:
                    sluice.cancel(r.meta_ref)

    def _num_parts(self, stage: Stage) -> int:
        """Pieces per block for the shuffle that reads ``stage``."""
        for s in self.stages.values():
            if s.kind is OpKind.BLOCKS and any(self.stage_of[i] == stage.id for i in s.inputs):
                spec = self.dplan.stage_ops(s)[0].fn
                return self._shuffle_width(spec)
        return 1

    def _shuffle_width(self, spec: shuffle.ShuffleSpec) -> int:
        if spec.how == "aggregate" and not spec.keys:
            return 1
        return spec.num_outputs or self.ctx.shuffle_partitions or self.cpus

    def _limit(self, stage: Stage, n: int, upstream: Iterator[BlockRef]) -> Iterator[BlockRef]:
        remaining = n
        cut = sluice.remote(num_returns=2, name="Limit")(_slice_block)
        st = self._stats_for(stage)
        try:
            while remaining > 0:
                ref = next(upstream, None)
                if ref is None:
                    break
                rows = ref.num_rows
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

    def _actor_pool(self, stage: Stage, op: LogicalOp, upstream: Iterator[BlockRef]) -> Iterator[BlockRef]:
        spec = op.fn
        cls = sluice.remote(num_cpus=spec.num_cpus, num_gpus=spec.num_gpus)(ActorPoolWorker)
        actors = [cls.remote(spec) for _ in range(spec.size)]
        method = [a.process.options(num_returns=2) for a in actors]
        turn = itertools.count()
        try:
            yield from self._submit_windowed(
                stage, (r.block for r in upstream),
                lambda i, block: method[next(turn) % len(method)].remote(i, block), False)
        finally:
            for actor in actors:
                sluice.kill(actor)

    def _shuffle(self, stage: Stage, op: LogicalOp, upstream: Iterator[BlockRef]) -> Iterator[BlockRef]:
        spec: shuffle.ShuffleSpec = op.fn
        ups = list(upstream)  # the barrier: every block of the input
        st = self._stats_for(stage)
        reduce = sluice.remote(num_returns=2, name=stage.name)(_reduce)
        if spec.how == "repartition":
            take = sluice.remote(num_returns=2, name=stage.name)(_take_slices)
            plans = shuffle.repartition_slices([r.num_rows for r in ups], spec.num_outputs)
            # An output with no rows still gets the input's columns (a slice of none of block 0).
            outs = [take.remote(p, *[ups[b].block for b, _, _ in p]) if p else
                    take.remote([(0, 0, 0)], ups[0].block) for p in plans] if ups else []
        elif spec.how == "sort":
            outs = self._sort(stage, spec, ups, reduce)
        else:
            n = self._shuffle_width(spec)
            outs = [reduce.remote(spec, i, *[r.parts[i] for r in ups]) for i in range(n)] if ups else []
        del ups
        st.started = st.started or time.perf_counter()
        for meta, block in outs:
            yield self._done(stage, BlockRef(meta, block))

    def _sort(self, stage: Stage, spec: shuffle.ShuffleSpec, ups: list[BlockRef], reduce: Any) -> list:
        if not ups:
            return []
        n = self._shuffle_width(spec)
        sample = sluice.remote(name="SortSample")(shuffle.sort_sample)
        samples = [s for s in sluice.get([sample.remote(r.block, spec.keys) for r in ups]) if s.num_rows]
        boundaries = shuffle.sort_boundaries(samples, spec.keys, n, spec.descending)
        n = len(boundaries) + 1
        cut = sluice.remote(num_returns=n + 1, name="SortCut")(_cut_for_sort)
        pieces = [cut.remote(r.block, spec.keys, boundaries, spec.descending)[1:] for r in ups]
        return [reduce.remote(spec, i, *[p[i] for p in pieces]) for i in range(n)]
