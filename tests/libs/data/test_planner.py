"""The Dataset plan through the compiler: what fuses, what is pushed into reads, and why not."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import sluice.data as sd
from sluice.compiler.ir import OpKind
from sluice.libs.data.logical import Kind
from sluice.libs.data.planner import plan_dataset


@pytest.fixture(scope="module", autouse=True)
def runtime():
    import sluice

    yield
    sluice.shutdown()


@pytest.fixture(scope="module")
def parquet_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wide")
    for i in range(3):
        n = 1000
        pq.write_table(pa.table({"k": pa.array(range(i * n, (i + 1) * n)), "x": pa.array([float(j) for j in range(n)]),
                                 "pad": pa.array(["p" * 50] * n)}), folder / f"part-{i}.parquet")
    return str(folder)


def stage_names(ds) -> list[str]:
    return [s.name for s in ds._plan().plan.stages]


def read_source(ds):
    return next(op.source for op in ds._plan().logical.values() if op.kind is Kind.READ)


def test_consecutive_maps_fuse_with_the_read_into_one_stage(parquet_dir):
    ds = (sd.read_parquet(parquet_dir).map_batches(lambda b: b, batch_format="pyarrow")
          .map(lambda r: r).filter(lambda r: True))
    assert stage_names(ds) == ["ReadParquet+MapBatches(<lambda>)+Map(<lambda>)+Filter(<lambda>)"]
    assert "fusion" in ds._plan().plan.passes


def test_a_groupby_aggregates_each_block_in_the_upstream_stage(parquet_dir):
    ds = sd.read_parquet(parquet_dir).map_batches(lambda b: b).groupby("k").sum("x")
    names = stage_names(ds)
    assert names == ["ReadParquet+MapBatches(<lambda>)+PartialAggregate(k)", "Aggregate(k: sum(x))"]
    kinds = [s.kind for s in ds._plan().plan.stages]
    assert kinds == [OpKind.CALL, OpKind.BLOCKS]
    assert "stream op: Aggregate(k: sum(x)) works on the whole stream" in ds.explain()


def test_select_and_expression_filter_move_into_the_parquet_read(parquet_dir):
    ds = sd.read_parquet(parquet_dir).select_columns(["k", "x"]).filter(expr=pc.field("x") > 990)
    assert stage_names(ds) == ["ReadParquet"]
    text = ds.explain()
    assert "columns=['k', 'x']" in text and "filter=(x > 990)" in text
    assert "push_into_reads" in ds._plan().plan.passes
    # Fewer bytes are read: the pushed read's blocks hold only the kept columns and rows.
    pushed = read_source(ds).read_tasks(2)
    plain = sd.read_parquet(parquet_dir)._plan()
    full = next(op.source for op in plain.logical.values() if op.kind is Kind.READ).read_tasks(2)
    pushed_bytes = sum(t().nbytes for t in pushed)
    full_bytes = sum(t().nbytes for t in full)
    assert pushed_bytes * 20 < full_bytes
    assert ds.count() == 3 * 9
    assert sorted(ds.to_pandas()["x"].unique()) == [991.0 + i for i in range(9)]


def test_a_filter_never_moves_past_a_limit(parquet_dir):
    ds = sd.read_parquet(parquet_dir).limit(10).filter(expr=pc.field("x") > 5)
    assert read_source(ds).describe().count("filter=") == 0
    assert [r["x"] for r in ds.take_all()] == [6.0, 7.0, 8.0, 9.0]  # from the first 10 rows only


def test_a_filter_never_moves_past_a_function(parquet_dir):
    ds = (sd.read_parquet(parquet_dir).map_batches(lambda b: b.set_column(1, "x", pc.multiply(b["x"], 0)),
                                                   batch_format="pyarrow")
          .filter(expr=pc.field("x") > 5))
    assert "filter=" not in read_source(ds).describe()
    assert ds.count() == 0


def test_nothing_moves_into_a_read_that_another_branch_reads(parquet_dir):
    base = sd.read_parquet(parquet_dir)
    narrow = base.filter(expr=pc.field("x") < 1)
    both = narrow.union(base)
    assert all("filter=" not in op.source.describe()
               for op in both._plan().logical.values() if op.kind is Kind.READ)
    assert both.count() == 3 + 3000


def test_limit_moves_above_row_keeping_maps_and_into_the_read(parquet_dir):
    ds = sd.read_parquet(parquet_dir).map(lambda r: {"k": r["k"] + 1}).limit(5)
    root = plan_dataset(ds._op).root
    assert root.kind is Kind.MAP and root.inputs[0].kind is Kind.LIMIT
    assert "limit=5" in read_source(ds).describe()
    assert ds.take_all() == [{"k": i + 1} for i in range(5)]


def test_limit_stays_below_a_filter_function(parquet_dir):
    ds = sd.read_parquet(parquet_dir).filter(lambda r: r["k"] % 2 == 1).limit(3)
    assert plan_dataset(ds._op).root.kind is Kind.LIMIT
    assert "limit=" not in read_source(ds).describe()
    assert [r["k"] for r in ds.take_all()] == [1, 3, 5]


def test_an_actor_pool_map_is_its_own_stage_and_drawn_as_an_actor():
    class Double:
        def __call__(self, batch):
            return {"id": batch["id"] * 2}

    ds = sd.range(10).map_batches(Double, concurrency=2).map(lambda r: r)
    plan = ds._plan().plan
    assert sorted(s.kind.value for s in plan.stages) == ["actor", "call", "call", "method"]
    assert "ActorPool(Double, size=2)" in ds.explain()
    assert "actor op" in ds.explain()
    drawing = ds.visualize()
    assert "ActorPool(Double" in drawing.source


def test_explain_runs_nothing():
    calls = []
    sd.range(10).map(lambda r: calls.append(r) or r).explain()
    assert calls == []


def test_shuffles_are_drawn_as_stream_ops():
    ds = sd.range(10).random_shuffle(seed=1).sort("id")
    source = ds.visualize().source
    assert source.count("hexagon") >= 2


def test_a_data_plan_is_a_compiler_plan_whose_ops_carry_their_functions():
    from sluice.compiler.ir import OpKind
    from sluice.executor.calls import load_function
    from sluice.libs.data.block_tasks import ActorPoolWorker, read_block

    class Double:
        def __call__(self, batch):
            return {"id": batch["id"] * 2}

    ds = sd.range(10).map(lambda r: r).map_batches(Double, concurrency=2).repartition(2)
    plan = ds._plan().plan
    carried = {op.kind: load_function(plan.function(op.fn_id)) for st in plan.stages
               for op in st.ops if op.fn_id}
    assert carried[OpKind.ACTOR] is ActorPoolWorker
    calls = [op for st in plan.stages for op in st.ops if op.kind is OpKind.CALL]
    assert load_function(plan.function(calls[0].fn_id)) is read_block
    assert all(op.fn_id for op in calls)  # the read and the map: each carries its function
    assert [op.fn_id for st in plan.stages for op in st.ops if op.kind is OpKind.BLOCKS] == [0]
