"""The streaming executor: bounded memory, early stop, order, stats and progress bars."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import sluice
import sluice.data as sd
from sluice.libs.data.context import DataContext

STORE = 96 * 1024 * 1024
BLOCK_ROWS = 1_000_000  # 8 MB of float64 per block


@pytest.fixture(scope="module", autouse=True)
def runtime():
    sluice.init(num_cpus=2, object_store_memory=STORE)
    DataContext.get_current().progress_bars = False
    yield
    sluice.shutdown()


@pytest.fixture(scope="module")
def big_dir(tmp_path_factory):
    """40 files of 8 MB: 320 MB, over three times the object store."""
    folder = tmp_path_factory.mktemp("big")
    rng = np.random.default_rng(0)
    for i in range(40):
        # Random fractions keep the files as big on disk as in memory (reads group files by size).
        values = float(i) + rng.random(BLOCK_ROWS) * 1e-3
        pq.write_table(pa.table({"v": values}), folder / f"part-{i:03d}.parquet", compression="none")
    return str(folder)


def store():
    return sluice.executor.api.runtime().store


def test_a_dataset_three_times_the_store_streams_through_without_spilling(big_dir):
    spilled_before = store().num_spilled
    ds = sd.read_parquet(big_dir).map_batches(lambda b: {"v": b["v"] * 2})
    total, blocks = 0.0, 0
    for batch in ds.iter_batches(batch_size=None):
        total += float(batch["v"].sum())
        blocks += 1
    assert total == pytest.approx(sum(2.0 * i * BLOCK_ROWS for i in range(40)) + 1e-3 * 40 * BLOCK_ROWS,
                                  rel=1e-3)
    assert blocks >= 10
    assert store().num_spilled == spilled_before   # streaming never needed the disk


def test_blocks_come_out_in_the_order_of_the_files(big_dir):
    firsts = [int(v) for b in sd.read_parquet(big_dir).iter_batches(batch_size=100_000) for v in b["v"][::100_000]]
    assert firsts == [i for i in range(40) for _ in range(10)]


def test_a_limit_stops_reading_early(big_dir):
    ds = sd.read_parquet(big_dir).filter(lambda r: True).limit(3)   # the filter keeps the limit above
    assert [int(r["v"]) for r in ds.take_all()] == [0, 0, 0]
    read = next(iter(ds._last.stages.values()))
    assert 1 <= read.blocks < 10       # not the 40 files: reading stopped


def test_stats_name_every_stage_with_rows_and_bytes(big_dir):
    ds = sd.read_parquet(big_dir).map_batches(lambda b: {"v": b["v"] + 1}).groupby(None).sum("v")
    assert ds.stats().startswith("this dataset has not run yet")
    expected = sd.read_parquet(big_dir).to_arrow()["v"].to_numpy().sum() + 40 * BLOCK_ROWS
    assert ds.take_all()[0]["sum(v)"] == pytest.approx(expected, rel=1e-9)
    text = ds.stats()
    assert "ReadParquet+MapBatches(<lambda>)+PartialAggregate(all): " in text
    assert "Aggregate(sum(v)): 1 blocks, 1 rows" in text
    assert "wall" in text and "in tasks" in text


def test_count_of_a_parquet_read_comes_from_footers_alone(big_dir):
    ds = sd.read_parquet(big_dir)
    assert ds.count() == 40 * BLOCK_ROWS
    assert "answered from metadata" in ds.stats()


def test_progress_bars_show_each_stage_when_on(monkeypatch, capsys):
    ctx = DataContext.get_current()
    monkeypatch.setattr(ctx, "progress_bars", True)
    monkeypatch.setattr(type(ctx), "show_progress", lambda self: self.progress_bars)
    sd.range(1000).map_batches(lambda b: b).sum("id")
    err = capsys.readouterr().err
    assert "Range+MapBatches" in err and "blocks" in err


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory):
    """3 Parquet files of 1,000 rows each: v = 0 .. 2,999."""
    folder = tmp_path_factory.mktemp("small")
    for i in range(3):
        pq.write_table(pa.table({"v": np.arange(i * 1000, (i + 1) * 1000)}), folder / f"part-{i}.parquet")
    return str(folder)


def test_stats_count_the_rows_read_not_only_the_rows_a_pushed_filter_kept(small_dir):
    import pyarrow.compute as pc

    ds = sd.read_parquet(small_dir).filter(expr=pc.field("v") < 10)   # the filter goes into the read
    assert ds.count() == 10
    (read,) = ds._last.stages.values()
    assert (read.reads, read.rows_in, read.rows, read.blocks) == (True, 3000, 10, 3)
    assert ds._last.rows_read == 3000
    text = ds.stats()
    assert "; 3,000 rows read" in text.splitlines()[0]
    assert "Stage 1 ReadParquet: 3 blocks, 10 rows, " in text and "; 3,000 rows read; wall" in text


def test_stats_show_each_stages_rows_in_and_each_fused_ops_rows(small_dir):
    ds = sd.read_parquet(small_dir).filter(lambda r: r["v"] % 100 == 0).groupby(None).count()
    assert ds.take_all() == [{"count()": 30}]
    read, aggregate = ds._last.stages.values()
    assert read.op_names == ("ReadParquet", "Filter(<lambda>)", "PartialAggregate(all)")
    assert (read.rows_in, read.op_rows, read.rows) == (3000, [3000, 30, 3], 3)
    assert (aggregate.reads, aggregate.rows_in, aggregate.rows) == (False, 3, 1)
    text = ds.stats()
    assert "rows: 3,000 read -> ReadParquet 3,000 -> Filter(<lambda>) 30 -> PartialAggregate(all) 3" in text
    assert "Aggregate(count()): 1 blocks, 1 rows, 8 B; 3 rows in;" in text


@pytest.fixture
def bars_on(monkeypatch):
    ctx = DataContext.get_current()
    monkeypatch.setattr(ctx, "progress_bars", True)
    monkeypatch.setattr(type(ctx), "show_progress", lambda self: self.progress_bars)


def test_a_read_bar_counts_rows_read_against_the_footers_total(small_dir, bars_on, capsys):
    import pyarrow.compute as pc

    sd.read_parquet(small_dir).filter(expr=pc.field("v") < 10).take_all()
    err = capsys.readouterr().err
    assert "ReadParquet: 100%" in err and "3000/3000 [" in err and "10 rows out, 3 blocks" in err


def test_a_read_bar_has_its_total_before_the_read_ends(small_dir, bars_on, capsys):
    # The limit stops the read after its first block: the bar still knows there were 3,000 rows.
    sd.read_parquet(small_dir).filter(lambda r: True).limit(5).take_all()
    err = capsys.readouterr().err
    assert "1000/3000 [" in err


def test_a_later_stage_bar_gets_its_total_when_the_stages_before_it_finish(bars_on, capsys):
    sd.range(1000).repartition(4).map_batches(lambda b: b).take_all()
    err = capsys.readouterr().err
    assert "Repartition(4): 100%" in err and "1000/1000 [" in err


def test_progress_bars_stay_off_when_stderr_is_not_a_terminal(capsys):
    assert DataContext().show_progress() is False    # pytest captures stderr: not a TTY
    sd.range(1000).map_batches(lambda b: b).sum("id")
    assert "Range+MapBatches" not in capsys.readouterr().err


def test_a_stage_read_twice_runs_once():
    calls = sd.range(4).map(lambda r: {"id": r["id"], "n": 1})
    both = calls.union(calls.map(lambda r: {"id": r["id"] + 100, "n": 2}))
    rows = both.take_all()
    assert sorted(r["id"] for r in rows) == [0, 1, 2, 3, 100, 101, 102, 103]


def test_materialize_keeps_the_blocks_and_runs_nothing_again():
    seen = []
    ds = sd.range(100).map_batches(lambda b: seen.append(1) or b).materialize()
    assert ds.count() == 100 and ds.sum("id") == sum(range(100))
    assert "FromBlocks" in ds.explain()


def test_each_stage_is_registered_once_and_run_once_per_block_by_the_plan_runner():
    from sluice.compiler import plan_run, runner
    from sluice.libs.data.executor import Execution, StreamingHooks

    submitted = []

    class Counting(StreamingHooks):
        def task_options(self, run, stage, options):
            submitted.append(stage.name)
            return options

    ds = sd.range(1000).map_batches(lambda b: b).filter(lambda r: r["id"] % 2 == 0)
    dplan = ds._plan()
    execution = Execution(dplan)
    run = runner.run_plan(dplan.plan, Counting(execution))
    refs = list(run.outputs()[0])
    assert sum(ref.num_rows for ref in refs) == 500
    (stage,) = [st for st in dplan.plan.stages]
    assert len(refs) >= 2 and submitted == [stage.name] * len(refs)  # a task per block
    state = plan_run.plan_run(dplan.plan, run.rt)
    assert list(state.tasks) == [(stage.id, Counting)]  # its function registered once


def test_an_actor_pool_is_a_replica_set_made_by_the_hooks_and_stopped_at_the_end():
    import os

    from sluice.compiler import runner
    from sluice.libs.data.executor import Execution, StreamingHooks

    class Pid:
        def __call__(self, batch):
            return {"pid": np.full(len(batch["id"]), os.getpid())}

    made = []

    class Watching(StreamingHooks):
        def create_actor(self, run, stage):
            pool = super().create_actor(run, stage)
            made.append(pool)
            return pool

    ds = sd.range(40).repartition(12).map_batches(Pid, concurrency=3, batch_size=None)
    dplan = ds._plan()
    run = runner.run_plan(dplan.plan, Watching(Execution(dplan)))
    pids = {int(p) for ref in run.outputs()[0] for p in sluice.get(ref.block)["pid"].to_pylist()}
    (pool,) = made
    assert len(pool) == 3 and len(pids) == 3 and os.getpid() not in pids
    assert run.state.actors == {}  # the pool was dropped (and killed) once its stream ended
