"""iter_torch_batches: batches as torch tensors (runs where PyTorch is installed)."""

from __future__ import annotations

import numpy as np
import pytest

import sluice.data as sd

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("runtime")


def test_torch_batches_hold_every_row_as_tensors():
    ds = sd.from_numpy(np.arange(10, dtype=np.float32)).map_batches(lambda b: {"x": b["data"], "y": b["data"] * 2})
    batches = list(ds.iter_torch_batches(batch_size=4))
    assert [len(b["x"]) for b in batches] == [4, 4, 2]
    assert all(isinstance(b["x"], torch.Tensor) for b in batches)
    x = torch.cat([b["x"] for b in batches])
    y = torch.cat([b["y"] for b in batches])
    assert torch.equal(x, torch.arange(10, dtype=torch.float32))
    assert torch.equal(y, 2 * x)


def test_torch_batches_take_dtypes_and_drop_last():
    ds = sd.range(10)
    batches = list(ds.iter_torch_batches(batch_size=3, dtypes={"id": torch.float64}, drop_last=True))
    assert len(batches) == 3 and batches[0]["id"].dtype == torch.float64
    assert torch.cat([b["id"] for b in batches]).tolist() == [float(i) for i in range(9)]
