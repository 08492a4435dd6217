"""``Dataset.streaming_split(n)``: n iterators that read disjoint shares of one execution of
a dataset, in parallel, from n consumers (the ranks of a training run).

A :class:`SplitCoordinator` actor runs the dataset once per epoch and hands out its blocks
as store references; each :class:`DataIterator` (picklable: pass one to each consumer)
asks the coordinator for its next piece and reads the block from the store. An epoch
starts once every iterator asked for it (Ray's barrier: all consumers iterate together).
``equal=False``: blocks go to whichever consumer asks first, as they are made (a slow
consumer takes fewer). ``equal=True``: every consumer gets the same number of rows, a
contiguous range cut from the blocks (zero-copy slices); as in Ray, up to ``n - 1`` rows are
dropped when the count does not divide.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from sluice.libs.data.iteration import BlockIteration


class SplitCoordinator:
    """The actor behind a streaming split (see the module's docstring)."""

    def __init__(self, dataset: Any, n: int, equal: bool):
        self.dataset = dataset
        self.n = n
        self.equal = equal
        self.epoch = -1
        self.asked: dict[int, set[int]] = {}  # epoch -> the splits that asked for it
        self.started: dict[int, asyncio.Event] = {}
        self.queue: asyncio.Queue | None = None  # equal=False: the epoch's pieces
        self.plans: dict[int, list] = {}  # equal=True: each split's pieces
        self.keep: list = []  # the epoch's block refs (held while consumers read them)
        self.error: BaseException | None = None  # the epoch could not start

    async def next(self, split: int, epoch: int) -> tuple[Any, int, int] | None:
        """Split ``split``'s next ``(block ref, offset, rows)`` of epoch ``epoch``, or None
        when its share of the epoch is done."""
        if epoch > self.epoch:
            await self._barrier(split, epoch)
        if epoch != self.epoch:
            raise RuntimeError(f"streaming_split: split {split} asked for epoch {epoch} while "
                               f"epoch {self.epoch} runs; every split must read each epoch")
        if self.error is not None:
            raise self.error
        if self.equal:
            pieces = self.plans.get(split) or []
            return pieces.pop(0) if pieces else None
        assert self.queue is not None
        piece = await self.queue.get()
        if isinstance(piece, BaseException):  # the dataset failed: every split says so
            self.queue.put_nowait(piece)
            raise piece
        return piece

    async def _barrier(self, split: int, epoch: int) -> None:
        asked = self.asked.setdefault(epoch, set())
        asked.add(split)
        event = self.started.setdefault(epoch, asyncio.Event())
        if len(asked) == self.n:
            try:
                await self._start(epoch)
            except Exception as exc:  # noqa: BLE001 - every split's call raises it
                self.error = exc
            finally:
                event.set()
        await event.wait()

    async def _start(self, epoch: int) -> None:
        loop = asyncio.get_running_loop()
        self.epoch = epoch
        self.keep = []
        self.error = None
        self.asked.pop(epoch - 1, None)
        self.started.pop(epoch - 1, None)
        if self.equal:
            blocks = await loop.run_in_executor(None, self._all_blocks)
            self.plans = _equal_plans(blocks, self.n)
            return
        queue: asyncio.Queue = asyncio.Queue()
        self.queue = queue

        def produce() -> None:
            try:
                for ref in self.dataset.iter_internal_ref_bundles():
                    rows = ref.meta().rows
                    if rows:
                        self.keep.append(ref)
                        loop.call_soon_threadsafe(queue.put_nowait, (ref.block, 0, rows))
            except Exception as exc:  # noqa: BLE001 - handed to the splits
                loop.call_soon_threadsafe(queue.put_nowait, exc)
                return
            for _ in range(self.n):  # each split stops at its first None
                loop.call_soon_threadsafe(queue.put_nowait, None)

        loop.run_in_executor(None, produce)

    def _all_blocks(self) -> list[tuple[Any, int]]:
        blocks = []
        for ref in self.dataset.iter_internal_ref_bundles():
            rows = ref.meta().rows
            if rows:
                self.keep.append(ref)
                blocks.append((ref.block, rows))
        return blocks


def _equal_plans(blocks: list[tuple[Any, int]], n: int) -> dict[int, list]:
    """Split ``i`` gets rows ``[i*k, (i+1)*k)`` of the blocks in order, ``k = total // n``,
    as ``(block ref, offset, rows)`` pieces.

    >>> _equal_plans([("a", 5), ("b", 5)], 3)
    {0: [('a', 0, 3)], 1: [('a', 3, 2), ('b', 0, 1)], 2: [('b', 1, 3)]}
    """
    total = sum(rows for _, rows in blocks)
    k = total // n
    plans: dict[int, list] = {i: [] for i in range(n)}
    split, room = 0, k
    for ref, rows in blocks:
        offset = 0
        while offset < rows and split < n:
            take = min(room, rows - offset)
            if take:
                plans[split].append((ref, offset, take))
            offset += take
            room -= take
            if room == 0:
                split, room = split + 1, k
    return plans


class DataIterator(BlockIteration):
    """One consumer's share of a streaming split: ``iter_batches``, ``iter_rows``,
    ``iter_torch_batches``; each pass over it is one epoch of the dataset."""

    def __init__(self, coordinator: Any, split: int, n: int):
        self._coordinator = coordinator
        self._split = split
        self._n = n
        self._epoch = 0

    def _iter_blocks(self) -> Iterator[pa.Table]:
        import sluice

        epoch, self._epoch = self._epoch, self._epoch + 1
        while True:
            piece = sluice.get(self._coordinator.next.remote(self._split, epoch))
            if piece is None:
                return
            ref, offset, rows = piece
            block = sluice.get(ref)
            yield block if offset == 0 and rows == block.num_rows else block.slice(offset, rows)

    def __repr__(self) -> str:
        return f"DataIterator(split {self._split} of {self._n})"


def streaming_split(dataset: Any, n: int, equal: bool = False) -> list[DataIterator]:
    """``n`` iterators over disjoint shares of ``dataset`` (see the module's docstring)."""
    import sluice

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"streaming_split(n={n!r}): give the number of consumers, an int >= 1")
    coordinator = sluice.remote(SplitCoordinator).options(num_cpus=0).remote(dataset, n, equal)
    return [DataIterator(coordinator, i, n) for i in range(n)]
