"""Reading a stream of Arrow blocks as batches, rows or torch tensors: what a
:class:`~sluice.libs.data.dataset.Dataset` and a
:class:`~sluice.libs.data.split.DataIterator` (one consumer's share of a
``streaming_split``) both offer over their ``_iter_blocks()``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from sluice.libs.data.block import check_batch_format, concat_blocks, slices, to_batch


class BlockIteration:
    """``iter_batches``, ``iter_rows`` and ``iter_torch_batches`` over ``_iter_blocks()``."""

    def _iter_blocks(self) -> Iterator[pa.Table]:
        raise NotImplementedError

    def iter_batches(self, *, batch_size: int | None = 256, batch_format: str = "default",
                     drop_last: bool = False) -> Iterator[Any]:
        """Batches of ``batch_size`` rows (None: one per block) across block boundaries."""
        check_batch_format(batch_format)
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"iter_batches(batch_size={batch_size!r}): give a positive int, or None "
                             "for whole blocks")
        fmt = "numpy" if batch_format == "default" else batch_format
        return (to_batch(table, fmt) for table in self._rebatch(batch_size, drop_last))

    def _rebatch(self, batch_size: int | None, drop_last: bool) -> Iterator[pa.Table]:
        if batch_size is None:
            yield from (b for b in self._iter_blocks() if b.num_rows)
            return
        carry: list[pa.Table] = []
        carried = 0
        for block in self._iter_blocks():
            for piece in slices(block, batch_size):
                carry.append(piece)
                carried += piece.num_rows
                while carried >= batch_size:
                    joined = concat_blocks(carry)
                    yield joined.slice(0, batch_size)
                    rest = joined.slice(batch_size)
                    carry, carried = ([rest], rest.num_rows) if rest.num_rows else ([], 0)
        if carried and not drop_last:
            yield concat_blocks(carry)

    def iter_rows(self) -> Iterator[dict]:
        """Every row, as a dict."""
        for block in self._iter_blocks():
            yield from block.to_pylist()

    def iter_torch_batches(self, *, batch_size: int | None = 256, dtypes: Any = None, device: str = "cpu",
                           drop_last: bool = False) -> Iterator[dict]:
        """Batches as dicts of ``torch.Tensor`` (needs torch installed)."""
        try:
            import torch
        except ImportError:
            raise ImportError("iter_torch_batches needs PyTorch; pip install torch") from None
        for batch in self.iter_batches(batch_size=batch_size, batch_format="numpy", drop_last=drop_last):
            out = {}
            for name, arr in batch.items():
                dtype = dtypes.get(name) if isinstance(dtypes, dict) else dtypes
                # Blocks are read-only views of the store; torch wants memory it may write.
                arr = arr if arr.flags.writeable else arr.copy()
                out[name] = torch.as_tensor(arr, dtype=dtype, device=device)
            yield out
