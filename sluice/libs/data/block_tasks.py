"""What sluice.data's tasks and actors run in a worker: one block through a stage's ops.

A Data plan is an ordinary compiler Plan whose call ops carry their function
(``Plan.functions``): a read op carries :func:`read_block`, a map op its block
function, an actor-pool op :class:`ActorPoolWorker`. The Plan runner registers
a :class:`BlockStageFunction` for each call stage (the data hooks'
``stage_function``) and submits it once per block, like any stage.

Every task returns ``(metadata, *blocks)``: metadata is a :class:`BlockMeta`
(rows, bytes, task seconds, columns, rows in, rows out of each op), small enough
to travel inline, so the driver learns a block's size, and how many rows each op
of a fused stage kept, without fetching the block.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import pyarrow as pa

from sluice.executor.calls import load_function
from sluice.libs.data import shuffle
from sluice.libs.data.datasource import ReadResult


class BlockMeta(NamedTuple):
    """What the driver learns of a task's blocks without fetching them."""

    rows: int                      # rows out (all pieces of a shuffle's map side)
    bytes: int
    task_s: float                  # the task's own wall time
    columns: tuple                 # (name, type) of each column of the (first) block
    rows_in: int                   # rows the task took in: read, or of its input block(s)
    op_rows: tuple[int, ...] = ()  # rows out of each op of a fused stage, in order


def read_block(item: Any) -> ReadResult:
    """The function of a read op: run a read task, or take a block already in the store."""
    return ReadResult(item, item.num_rows) if isinstance(item, pa.Table) else item.read()


read_block.reads = True  # type: ignore[attr-defined]


class BlockStageFunction:
    """One task of a sluice.data stage: read or take a block, apply the stage's functions.

    Picklable plain data: the stage's name, its ops' function ids and the pickled
    functions. They are unpickled once per worker (the worker keeps this object
    between tasks). A function marked ``wants_index`` also gets the block's index;
    the last one marked ``partitions`` cuts the block into ``num_parts`` pieces
    (a shuffle's map side).
    """

    def __init__(self, name: str, fn_ids: tuple[int, ...], functions: dict[int, bytes]):
        self.name, self.fn_ids, self.functions = name, fn_ids, functions
        self._fns: list[Callable[..., Any]] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"name": self.name, "fn_ids": self.fn_ids, "functions": self.functions}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._fns = None

    def __call__(self, index: int, num_parts: int, item: Any) -> tuple:
        fns = self._fns
        if fns is None:
            fns = self._fns = [load_function(self.functions[i]) for i in self.fn_ids]
        start = time.perf_counter()
        _release_arrow_memory()
        reads = bool(fns) and getattr(fns[0], "reads", False)
        partitions = bool(fns) and getattr(fns[-1], "partitions", False)
        maps = fns[1 if reads else 0:len(fns) - 1 if partitions else len(fns)]
        op_rows: list[int] = []
        try:
            if reads:
                block, rows_in = fns[0](item)
                op_rows.append(block.num_rows)
            else:
                block, rows_in = item, item.num_rows
            for fn in maps:
                if not _nothing(block):  # a map that left no rows (nor columns): nothing to do
                    block = fn(block, index) if getattr(fn, "wants_index", False) else fn(block)
                op_rows.append(block.num_rows)
            if not partitions:
                out = [block]
            elif _nothing(block):
                out = [block] * num_parts
            else:
                out = fns[-1](block, num_parts, index)
            if partitions:
                op_rows.append(sum(b.num_rows for b in out))
        except Exception as err:
            err.add_note(f"in sluice.data stage {self.name}, block {index}")
            trim_to_user_frames(err)
            raise
        for value in out:
            if not isinstance(value, pa.Table):
                raise TypeError(f"stage {self.name} produced {type(value).__name__} for block {index}; "
                                "every block must be a pyarrow.Table")
        meta = block_meta(out, start, rows_in, tuple(op_rows))
        _worker_state["made"] = meta.bytes
        return (meta, *out)


def _nothing(block: pa.Table) -> bool:
    return block.num_rows == 0 and block.num_columns == 0


def block_meta(out: list[pa.Table], start: float | None, rows_in: int, op_rows: tuple[int, ...] = ()
               ) -> BlockMeta:
    """The metadata of a task's output blocks ``out`` (``start``: the task's start, or None)."""
    took = 0.0 if start is None else time.perf_counter() - start
    return BlockMeta(sum(b.num_rows for b in out), sum(b.nbytes for b in out), took,
                     columns_of(out[0]) if out else (), rows_in, op_rows)


def trim_to_user_frames(err: BaseException) -> None:
    """Cut the frames of sluice above the user's own code from ``err``'s traceback.

    A batch function's error then shows the user's frames right after its message
    (a bare ``raise`` keeps the traceback as set here). An error with no frame
    outside sluice (a check of what a function returned) keeps the frame that raised it.
    """
    tb = err.__traceback__
    first, last = tb, tb
    while first is not None and first.tb_frame.f_globals.get("__name__", "").startswith("sluice."):
        last, first = first, first.tb_next
    err.__traceback__ = first if first is not None else last


def columns_of(block: pa.Table) -> tuple[tuple[str, str], ...]:
    """(name, type) of each column: what blocks of one stage must agree on."""
    return tuple((f.name, str(f.type)) for f in block.schema)


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
            trim_to_user_frames(err)
            raise
        return (block_meta([out], start, block.num_rows), out)


def slice_block(block: pa.Table, length: int) -> tuple:
    """The first ``length`` rows of a block (a limit's last block)."""
    out = block.slice(0, length)
    return (block_meta([out], None, block.num_rows), out)


def reduce_pieces(spec: shuffle.ShuffleSpec, index: int, *pieces: pa.Table) -> tuple:
    """A shuffle's reduce side: output block ``index`` from its piece of every input block."""
    start = time.perf_counter()
    try:
        out = shuffle.reduce_pieces(spec, index, list(pieces))
    except Exception as err:
        trim_to_user_frames(err)
        raise
    return (block_meta([out], start, sum(p.num_rows for p in pieces)), out)


def cut_for_sort(block: pa.Table, keys: tuple, boundaries: list, descending: bool) -> tuple:
    """A sort's map side: the block cut at the sample boundaries."""
    parts = ([block] * (len(boundaries) + 1) if _nothing(block)
             else shuffle.sort_cut(block, keys, boundaries, descending))
    return (block_meta(parts, None, block.num_rows)._replace(columns=()), *parts)


def take_slices(plan: list, *blocks: pa.Table) -> tuple:
    """A repartition's output block: the slices ``plan`` names, joined."""
    out = shuffle.take_slices(plan, *blocks)
    return (block_meta([out], None, out.num_rows), out)
