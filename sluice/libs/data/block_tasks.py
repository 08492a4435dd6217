"""What sluice.data's tasks and actors run in a worker: one block through a stage's ops.

A Data plan is an ordinary compiler Plan whose call ops carry their function
(``Plan.functions``): a read op carries :func:`read_block`, a map op its block
function, an actor-pool op :class:`ActorPoolWorker`. The Plan runner registers
a :class:`BlockStageFunction` for each call stage (the data hooks'
``stage_function``) and submits it once per block, like any stage.

Every task returns ``(metadata, *blocks)``: metadata is ``(rows, bytes, task
seconds, columns)``, small enough to travel inline, so the driver learns a
block's size without fetching the block.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from sluice.executor.calls import load_function
from sluice.libs.data import shuffle


def read_block(item: Any) -> pa.Table:
    """The function of a read op: run a read task, or take a block already in the store."""
    return item if isinstance(item, pa.Table) else item()


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
        try:
            block = fns[0](item) if reads else item
            for fn in maps:
                if _nothing(block):  # a map left no rows and so no columns: nothing to do
                    break
                block = fn(block, index) if getattr(fn, "wants_index", False) else fn(block)
            if not partitions:
                out = [block]
            elif _nothing(block):
                out = [block] * num_parts
            else:
                out = fns[-1](block, num_parts, index)
        except Exception as err:
            err.add_note(f"in sluice.data stage {self.name}, block {index}")
            raise
        for value in out:
            if not isinstance(value, pa.Table):
                raise TypeError(f"stage {self.name} produced {type(value).__name__} for block {index}; "
                                "every block must be a pyarrow.Table")
        rows = sum(b.num_rows for b in out)
        meta = (rows, sum(b.nbytes for b in out), time.perf_counter() - start, columns_of(out[0]))
        _worker_state["made"] = meta[1]
        return (meta, *out)


def _nothing(block: pa.Table) -> bool:
    return block.num_rows == 0 and block.num_columns == 0


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
            raise
        return ((out.num_rows, out.nbytes, time.perf_counter() - start, columns_of(out)), out)


def slice_block(block: pa.Table, length: int) -> tuple:
    """The first ``length`` rows of a block (a limit's last block)."""
    out = block.slice(0, length)
    return ((out.num_rows, out.nbytes, 0.0, columns_of(out)), out)


def reduce_pieces(spec: shuffle.ShuffleSpec, index: int, *pieces: pa.Table) -> tuple:
    """A shuffle's reduce side: output block ``index`` from its piece of every input block."""
    start = time.perf_counter()
    out = shuffle.reduce_pieces(spec, index, list(pieces))
    return ((out.num_rows, out.nbytes, time.perf_counter() - start, columns_of(out)), out)


def cut_for_sort(block: pa.Table, keys: tuple, boundaries: list, descending: bool) -> tuple:
    """A sort's map side: the block cut at the sample boundaries."""
    parts = ([block] * (len(boundaries) + 1) if _nothing(block)
             else shuffle.sort_cut(block, keys, boundaries, descending))
    return ((sum(p.num_rows for p in parts), sum(p.nbytes for p in parts), 0.0, ()), *parts)


def take_slices(plan: list, *blocks: pa.Table) -> tuple:
    """A repartition's output block: the slices ``plan`` names, joined."""
    out = shuffle.take_slices(plan, *blocks)
    return ((out.num_rows, out.nbytes, 0.0, columns_of(out)), out)
