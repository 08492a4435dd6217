"""``Dataset.streaming_split``: consumers in other processes read disjoint shares of one
execution per epoch; ``equal=True`` gives each the same number of rows."""

from __future__ import annotations

import pytest

import sluice
import sluice.data as sd

pytestmark = pytest.mark.usefixtures("runtime")


@sluice.remote(num_cpus=0)  # (every consumer must run at once: each epoch is a barrier)
def consume(iterator, epochs: int = 1) -> list[list[int]]:
    return [[row["id"] for row in iterator.iter_rows()] for _ in range(epochs)]


def test_consumers_read_disjoint_shares_that_together_hold_every_row() -> None:
    ds = sd.range(100).repartition(7)
    shares = sluice.get([consume.remote(it, 2) for it in ds.streaming_split(2)])
    for epoch in range(2):
        ids = [i for share in shares for i in share[epoch]]
        assert sorted(ids) == list(range(100))  # disjoint, and every row, each epoch
        assert all(share[epoch] for share in shares)


def test_equal_gives_each_consumer_as_many_rows_dropping_the_remainder() -> None:
    ds = sd.range(100).repartition(7)
    shares = sluice.get([consume.remote(it, 2) for it in ds.streaming_split(3, equal=True)])
    for epoch in range(2):
        assert [len(share[epoch]) for share in shares] == [33, 33, 33]
        ids = [i for share in shares for i in share[epoch]]
        assert len(set(ids)) == 99 and set(ids) <= set(range(100))
    exact = sluice.get([consume.remote(it) for it in sd.range(90).repartition(4)
                        .streaming_split(3, equal=True)])
    assert sorted(i for share in exact for i in share[0]) == list(range(90))


def test_a_split_iterator_gives_batches_and_torch_tensors() -> None:
    torch = pytest.importorskip("torch")

    @sluice.remote(num_cpus=0)
    def batches(iterator):
        sizes = [len(b["id"]) for b in iterator.iter_batches(batch_size=8)]
        tensors = list(iterator.iter_torch_batches(batch_size=10))
        return sizes, [t["id"].dtype == torch.int64 for t in tensors], sum(len(t["id"]) for t in tensors)

    out = sluice.get([batches.remote(it) for it in sd.range(40).streaming_split(2, equal=True)])
    for sizes, dtypes, rows in out:
        assert sum(sizes) == 20 and max(sizes) <= 8 and all(dtypes) and rows == 20


def test_a_failing_dataset_fails_every_consumer_and_bad_n_is_refused() -> None:
    def boom(batch):
        raise ValueError("bad row in the source")

    broken = sd.range(10).map_batches(boom)
    for equal in (False, True):
        refs = [consume.remote(it) for it in broken.streaming_split(2, equal=equal)]
        for ref in refs:
            with pytest.raises(Exception, match="bad row in the source"):
                sluice.get(ref)
    with pytest.raises(ValueError, match=r"streaming_split\(n=0\)"):
        sd.range(3).streaming_split(0)
