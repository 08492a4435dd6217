"""Dataset transforms and consumers, each compared with pandas on the same data.

The data is split over several blocks (``from_pandas`` of three frames) so every
transform crosses block boundaries; the runtime (two CPUs) starts once for the module.
"""

from __future__ import annotations

import itertools
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pandas.testing import assert_frame_equal

import sluice.data as sd
from sluice.data import Count, Max, Mean, Min, Std, Sum

pytestmark = pytest.mark.usefixtures("runtime")

SIZES = (7, 5, 8)  # rows per block of the test dataset


def make_frame(n: int = sum(SIZES), seed: int = 0) -> pd.DataFrame:
    """Columns x (int 0..n-1), y (float), s (distinct strings in shuffled order), k (few ints)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "x": np.arange(n, dtype=np.int64),
        "y": rng.normal(size=n).round(3),
        "s": [f"s{i:03d}" for i in rng.permutation(n)],
        "k": rng.integers(0, 4, size=n),
    })


def split(df: pd.DataFrame, sizes: tuple[int, ...] = SIZES) -> list[pd.DataFrame]:
    cuts = np.cumsum((0, *sizes))
    assert cuts[-1] == len(df)
    return [df.iloc[a:b].reset_index(drop=True) for a, b in itertools.pairwise(cuts)]


def dataset(df: pd.DataFrame, sizes: tuple[int, ...] = SIZES) -> sd.Dataset:
    return sd.from_pandas(split(df, sizes))


def same(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert_frame_equal(actual.reset_index(drop=True), expected.reset_index(drop=True), check_dtype=False)


DF = make_frame()


# --------------------------------------------------------------------------- map, flat_map, filter

def test_map_rows_matches_pandas():
    out = dataset(DF).map(lambda r: {"x": r["x"], "z": r["x"] * 2 + r["y"], "s": r["s"].upper()})
    same(out.to_pandas(), pd.DataFrame({"x": DF.x, "z": DF.x * 2 + DF.y, "s": DF.s.str.upper()}))


def scale_row(row: dict, factor: int, *, shift: int) -> dict:
    return {"x": row["x"] * factor + shift}


def test_map_passes_fn_args_and_kwargs():
    out = dataset(DF).map(scale_row, fn_args=(3,), fn_kwargs={"shift": -1}).to_pandas()
    same(out, pd.DataFrame({"x": DF.x * 3 - 1}))


def add_z_pyarrow(batch):
    assert isinstance(batch, pa.Table)
    return batch.append_column("z", pc.add(pc.multiply(batch["x"], 2), batch["y"]))


def add_z_pandas(batch):
    assert isinstance(batch, pd.DataFrame)
    return batch.assign(z=batch["x"] * 2 + batch["y"])


def add_z_numpy(batch):
    assert isinstance(batch, dict) and all(isinstance(v, np.ndarray) for v in batch.values())
    return {**batch, "z": batch["x"] * 2 + batch["y"]}


@pytest.mark.parametrize("fmt, fn", [("pyarrow", add_z_pyarrow), ("pandas", add_z_pandas),
                                     ("numpy", add_z_numpy), ("default", add_z_numpy)])
def test_map_batches_in_each_format_matches_pandas(fmt, fn):
    out = dataset(DF).map_batches(fn, batch_format=fmt).to_pandas()
    same(out, DF.assign(z=DF.x * 2 + DF.y))


def batch_length(batch: dict) -> dict:
    return {"n": np.array([len(batch["x"])]), "first": batch["x"][:1]}


@pytest.mark.parametrize("batch_size", [1, 3, 6, 100])
def test_map_batches_splits_blocks_into_batches_of_at_most_batch_size(batch_size):
    out = dataset(DF).map_batches(batch_length, batch_size=batch_size).to_pandas()
    assert out["n"].sum() == len(DF)
    assert (out["n"] <= batch_size).all()
    assert len(out) >= -(-len(DF) // batch_size)
    # Batches come in order and cover every row once: each starts where the last ended.
    assert out["first"].tolist() == np.cumsum([0, *out["n"].tolist()[:-1]]).tolist()


def affine(batch: pd.DataFrame, a: int, *, c: float) -> pd.DataFrame:
    return pd.DataFrame({"x": batch["x"] * a + c})


def test_map_batches_passes_fn_args_and_kwargs():
    out = dataset(DF).map_batches(affine, batch_format="pandas", batch_size=4, fn_args=(5,),
                                  fn_kwargs={"c": 0.5}).to_pandas()
    same(out, pd.DataFrame({"x": DF.x * 5 + 0.5}))


class Tagger:
    """A callable class: records which instance (process id + object id) served each batch."""

    def __init__(self, offset: int, *, label: str):
        self.offset, self.label = offset, label
        self.tag = f"{os.getpid()}:{id(self)}"
        self.calls = 0

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        self.calls += 1
        return batch.assign(x=batch["x"] + self.offset, tag=self.tag, call=self.calls, label=self.label)


def test_map_batches_callable_class_runs_on_a_pool_of_actors_each_constructed_once():
    ds = dataset(DF, (4, 4, 4, 4, 4)).map_batches(
        Tagger, concurrency=2, batch_format="pandas", batch_size=2,
        fn_constructor_args=(100,), fn_constructor_kwargs={"label": "L"})
    out = ds.to_pandas()
    same(out[["x", "y", "s", "k"]], DF.assign(x=DF.x + 100))
    assert (out["label"] == "L").all()
    assert 1 <= out["tag"].nunique() <= 2  # at most two constructions: one per actor
    # Each instance counted its own calls 1, 2, 3, ...: it was built once and reused for all of them.
    batches = out.drop_duplicates(["tag", "call"])
    assert len(batches) == len(DF) // 2
    for _, calls in batches.groupby("tag")["call"]:
        assert sorted(calls) == list(range(1, len(calls) + 1))


def test_filter_with_a_row_function_matches_pandas():
    out = dataset(DF).filter(lambda r: r["y"] > 0 and r["x"] % 3 != 0).to_pandas()
    same(out, DF[(DF.y > 0) & (DF.x % 3 != 0)])


def test_filter_with_an_expression_matches_pandas():
    expr = (pc.field("y") > 0) & (pc.field("x") < 15)
    same(dataset(DF).filter(expr=expr).to_pandas(), DF[(DF.y > 0) & (DF.x < 15)])
    same(dataset(DF).filter(pc.field("k") == 2).to_pandas(), DF[DF.k == 2])


def repeat_row(row: dict, extra: int) -> list[dict]:
    return [{"x": row["x"], "i": i} for i in range(row["x"] % 3 + extra)]


def test_flat_map_matches_pandas():
    out = dataset(DF).flat_map(repeat_row, fn_args=(0,)).to_pandas()
    expected = DF.loc[DF.index.repeat(DF.x % 3), ["x"]]
    expected = expected.assign(i=expected.groupby("x").cumcount())
    same(out, expected)
    assert dataset(DF).flat_map(lambda r: []).count() == 0


EMPTIED = DF[DF.x >= SIZES[0]]  # what is left when the first block loses every row


@pytest.mark.parametrize("op, expected", [
    (lambda ds: ds.select_columns(["x", "s"]), EMPTIED[["x", "s"]]),
    (lambda ds: ds.drop_columns(["s"]), EMPTIED.drop(columns=["s"])),
    (lambda ds: ds.add_column("z", lambda df: df["x"] * 2), EMPTIED.assign(z=EMPTIED.x * 2)),
    (lambda ds: ds.filter(expr=pc.field("y") > 0), EMPTIED[EMPTIED.y > 0]),
    (lambda ds: ds.sort("y"), EMPTIED.sort_values("y")),
    (lambda ds: ds.groupby("k").count().sort("k"),
     EMPTIED.groupby("k").size().rename("count()").reset_index()),
    (lambda ds: ds.groupby("k").map_groups(lambda g: g, batch_format="pandas").sort("x"), EMPTIED),
], ids=["select_columns", "drop_columns", "add_column", "filter", "sort", "groupby", "map_groups"])
def test_a_block_left_without_rows_does_not_break_the_op_after_it(op, expected):
    # The flat_map drops every row of the first block (x < 7): that block comes out empty.
    emptied = dataset(DF).flat_map(lambda r: [r] if r["x"] >= SIZES[0] else [])
    same(op(emptied).to_pandas(), expected)


def test_repartition_into_more_blocks_than_rows():
    ds = sd.from_pandas(DF.head(2)).repartition(4).materialize()
    assert [r.num_rows for r in ds.iter_internal_ref_bundles()] == [0, 1, 0, 1]
    assert ds.select_columns(["x"]).take_all() == [{"x": 0}, {"x": 1}]
    assert ds.columns() == list(DF.columns)
    same(ds.groupby("x").count().to_pandas(), pd.DataFrame({"x": [0, 1], "count()": [1, 1]}))


# --------------------------------------------------------------------------- columns

def identity(batch):
    return batch


@pytest.mark.parametrize("pushable", [True, False], ids=["into-read", "in-task"])
def test_select_and_drop_columns_match_pandas(pushable):
    ds = dataset(DF) if pushable else dataset(DF).map_batches(identity, batch_format="pyarrow")
    same(ds.select_columns(["s", "x"]).to_pandas(), DF[["s", "x"]])
    same(ds.select_columns("y").to_pandas(), DF[["y"]])
    same(ds.drop_columns(["y", "k"]).to_pandas(), DF.drop(columns=["y", "k"]))
    same(ds.drop_columns("s").to_pandas(), DF.drop(columns=["s"]))


def test_add_column_matches_pandas():
    ds = dataset(DF)
    same(ds.add_column("z", lambda df: df["x"] * df["y"]).to_pandas(), DF.assign(z=DF.x * DF.y))
    same(ds.add_column("x", lambda df: df["x"] + 1).to_pandas(), DF.assign(x=DF.x + 1))
    same(ds.add_column("z", lambda b: b["x"] % 2 == 0, batch_format="numpy").to_pandas(),
         DF.assign(z=DF.x % 2 == 0))


def test_rename_columns_matches_pandas():
    out = dataset(DF).rename_columns({"x": "a", "s": "b"}).to_pandas()
    same(out, DF.rename(columns={"x": "a", "s": "b"}))


# --------------------------------------------------------------------------- limit, union

@pytest.mark.parametrize("n", [0, 1, 7, 9, 20, 1000])
def test_limit_matches_pandas_head(n):
    ds = dataset(DF).limit(n)
    assert ds.take_all() == DF.head(n).to_dict("records")
    assert ds.count() == min(n, len(DF))


def test_limit_after_a_filter_and_a_map():
    out = dataset(DF).filter(expr=pc.field("y") > 0).map(lambda r: {"x": r["x"]}).limit(4).to_pandas()
    same(out, DF[DF.y > 0][["x"]].head(4))
    assert sd.range(1000).limit(37).take_all() == [{"id": i} for i in range(37)]


def test_limits_that_cancel_queued_tasks_leave_the_workers_healthy():
    # The limit is met by the first block; the tasks still queued for the others are cancelled.
    # The workers they were queued on must go on serving the next runs.
    ds = dataset(DF).filter(lambda r: r["y"] > -10).map(lambda r: {"x": r["x"]}).limit(2)
    for _ in range(6):
        assert ds.take_all() == [{"x": 0}, {"x": 1}]
        assert sd.range(10).take_all() == [{"id": i} for i in range(10)]


def test_union_keeps_each_datasets_rows_in_order():
    a, b = dataset(DF), sd.from_pandas(DF.head(3))
    same(a.union(b).to_pandas(), pd.concat([DF, DF.head(3)]))
    same(b.union(a, b).to_pandas(), pd.concat([DF.head(3), DF, DF.head(3)]))
    same(a.union(a).to_pandas(), pd.concat([DF, DF]))  # one dataset read twice


# --------------------------------------------------------------------------- shuffles

@pytest.mark.parametrize("n", [1, 2, 3, 6])
def test_repartition_keeps_row_order_in_n_near_equal_blocks(n):
    ds = dataset(DF).repartition(n).materialize()
    assert f"Repartition({n}): {n} blocks, {len(DF)} rows" in ds.stats()
    refs = list(ds.iter_internal_ref_bundles())
    assert len(refs) == n
    rows = [r.num_rows for r in refs]
    assert sum(rows) == len(DF) and max(rows) - min(rows) <= 1
    same(ds.to_pandas(), DF)


def test_random_shuffle_permutes_rows_reproducibly_with_a_seed():
    ds = sd.range(200)
    ids = [r["id"] for r in ds.random_shuffle(seed=7).take_all()]
    assert sorted(ids) == list(range(200))
    assert ids != list(range(200))
    assert [r["id"] for r in ds.random_shuffle(seed=7).take_all()] == ids
    assert [r["id"] for r in ds.random_shuffle(seed=8).take_all()] != ids
    unseeded = dataset(DF).random_shuffle().to_pandas()
    same(unseeded.sort_values("x"), DF)


def test_random_shuffle_into_a_number_of_blocks():
    ds = dataset(DF).random_shuffle(seed=1, num_blocks=3).materialize()
    assert len(list(ds.iter_internal_ref_bundles())) == 3
    same(ds.to_pandas().sort_values("x"), DF)


@pytest.mark.parametrize("key", ["x", "s", "y"])
@pytest.mark.parametrize("descending", [False, True])
def test_sort_matches_pandas(key, descending):
    shuffled = DF.sample(frac=1, random_state=3)
    out = dataset(shuffled).sort(key, descending=descending).to_pandas()
    same(out, shuffled.sort_values(key, ascending=not descending))


def test_sort_by_several_keys_matches_pandas():
    shuffled = DF.sample(frac=1, random_state=4)
    out = dataset(shuffled).sort(["k", "s"]).to_pandas()
    same(out, shuffled.sort_values(["k", "s"]))
    out = dataset(shuffled).sort(["k", "x"], descending=True).to_pandas()
    same(out, shuffled.sort_values(["k", "x"], ascending=False))


def test_sort_many_rows_over_many_blocks():
    ds = sd.range(1000).random_shuffle(seed=0).repartition(7)
    assert [r["id"] for r in ds.sort("id").take_all()] == list(range(1000))
    assert [r["id"] for r in ds.sort("id", descending=True).take(5)] == [999, 998, 997, 996, 995]


@pytest.mark.parametrize("descending", [False, True])
def test_sort_puts_nulls_last_like_pandas(descending):
    df = pd.DataFrame({"x": range(12), "y": [3.0, None, 1.0, 7.0, None, 2.0, 9.0, 4.0, None, 0.0, 5.0, 8.0]})
    out = dataset(df, (4, 4, 4)).sort("y", descending=descending).to_pandas()
    same(out, df.sort_values("y", ascending=not descending, na_position="last"))


# --------------------------------------------------------------------------- global aggregates

def test_global_aggregates_match_pandas():
    ds = dataset(DF)
    assert ds.sum("x") == DF.x.sum()
    assert ds.min("y") == DF.y.min() and ds.max("y") == DF.y.max()
    assert ds.mean("y") == pytest.approx(DF.y.mean())
    assert ds.std("y") == pytest.approx(DF.y.std())
    assert ds.std("y", ddof=0) == pytest.approx(DF.y.std(ddof=0))
    got = ds.aggregate(Count(), Sum("y"), Mean("x"), Min("s"), Max("s"), Std("x"))
    assert got == {"count()": len(DF), "sum(y)": pytest.approx(DF.y.sum()), "mean(x)": DF.x.mean(),
                   "min(s)": DF.s.min(), "max(s)": DF.s.max(), "std(x)": pytest.approx(DF.x.std())}


def test_global_aggregates_of_no_rows_follow_pandas():
    empty = dataset(DF).filter(expr=pc.field("x") < 0)
    assert empty.sum("x") == DF.x.head(0).sum() == 0
    assert empty.mean("y") is None and empty.min("y") is None and empty.max("y") is None
    assert empty.aggregate(Count()) == {"count()": 0}


# --------------------------------------------------------------------------- consumers

def test_take_and_take_all_and_take_batch():
    ds = dataset(DF)
    records = DF.to_dict("records")
    assert ds.take(3) == records[:3]
    assert ds.take(9) == records[:9]  # across the first block's end
    assert ds.take(100) == records
    assert ds.take_all() == records
    with pytest.raises(ValueError, match=r"take_all\(limit=5\): the dataset has 20 rows"):
        ds.take_all(limit=5)
    batch = ds.take_batch(9)
    assert set(batch) == set(DF.columns) and isinstance(batch["x"], np.ndarray)
    np.testing.assert_array_equal(batch["y"], DF.y.head(9).to_numpy())
    same(ds.take_batch(9, batch_format="pandas"), DF.head(9))
    assert ds.take_batch(9, batch_format="pyarrow").equals(pa.Table.from_pandas(DF.head(9), preserve_index=False))


def test_count_schema_and_columns():
    ds = dataset(DF)
    assert ds.count() == len(DF)
    assert ds.filter(expr=pc.field("y") > 0).count() == int((DF.y > 0).sum())
    assert ds.columns() == ["x", "y", "s", "k"]
    schema = ds.schema()
    assert schema.field("x").type == pa.int64() and schema.field("y").type == pa.float64()
    assert pa.types.is_string(schema.field("s").type) or pa.types.is_large_string(schema.field("s").type)
    mapped = ds.map(lambda r: {"x": r["x"], "half": r["x"] / 2})
    assert mapped.columns() == ["x", "half"] and mapped.schema().field("half").type == pa.float64()


def test_to_pandas_to_arrow_to_numpy_and_iter_rows():
    ds = dataset(DF)
    same(ds.to_pandas(), DF)
    assert ds.to_arrow().equals(pa.Table.from_pandas(DF, preserve_index=False))
    arrays = ds.to_numpy()
    assert list(arrays) == list(DF.columns)
    for name in DF.columns:
        np.testing.assert_array_equal(arrays[name], DF[name].to_numpy())
    assert list(ds.iter_rows()) == DF.to_dict("records")


@pytest.mark.parametrize("batch_size, drop_last, sizes", [
    (6, False, [6, 6, 6, 2]),   # batches cross the block boundaries at 7 and 12
    (6, True, [6, 6, 6]),
    (20, False, [20]),
    (30, False, [20]),
    (30, True, []),
    (None, False, list(SIZES)),  # one batch per block
])
def test_iter_batches_rebatches_across_blocks(batch_size, drop_last, sizes):
    batches = list(dataset(DF).iter_batches(batch_size=batch_size, drop_last=drop_last, batch_format="pandas"))
    assert [len(b) for b in batches] == sizes
    if batches:
        same(pd.concat(batches), DF.head(sum(sizes)))


def test_iter_batches_formats():
    ds = dataset(DF)
    first = next(iter(ds.iter_batches(batch_size=8)))
    assert isinstance(first, dict) and first["x"].tolist() == list(range(8))
    first = next(iter(ds.iter_batches(batch_size=8, batch_format="pyarrow")))
    assert isinstance(first, pa.Table) and first.num_rows == 8


def test_materialize_runs_the_plan_once(tmp_path):
    log = tmp_path / "calls.txt"

    def record(batch):
        with log.open("a") as f:
            f.write("call\n")
        return batch

    ds = dataset(DF).map_batches(record, batch_format="pyarrow").materialize()
    assert log.read_text().count("call") == len(SIZES)
    same(ds.to_pandas(), DF)
    assert ds.count() == len(DF)
    assert ds.take(2) == DF.head(2).to_dict("records")
    assert log.read_text().count("call") == len(SIZES)  # consuming it again ran nothing


def test_stats_before_and_after_a_run():
    ds = dataset(DF).map_batches(add_z_pandas, batch_format="pandas")
    assert "has not run yet" in ds.stats()
    ds.to_pandas()
    text = ds.stats()
    assert text.startswith("Dataset execution:")
    assert "MapBatches(add_z_pandas)" in text and f"{len(SIZES)} blocks, {len(DF)} rows" in text


def test_explain_names_the_fused_ops_and_the_read():
    ds = dataset(DF).map(scale_row, fn_args=(2,), fn_kwargs={"shift": 0}).filter(expr=pc.field("x") > 4)
    text = ds.explain()
    assert "FromPandas+Map(scale_row)+Filter((x > 4))" in text
    assert "fusion" in text
    assert "FromPandas[rows=20, tables=3]" in text
    shuffled = ds.sort("x").explain()
    assert "Sort(x)" in shuffled


# --------------------------------------------------------------------------- jit

def jit_row(r):
    return {"z": r["x"] * 2.0 + r["y"], "x": r["x"] + 1}


def jit_batch(b):
    return {"z": b["x"] * 2.0 + b["y"], "w": b["y"] * b["y"]}


def jit_batch_mixed_types(b):
    return {"z": b["x"] * 2.0 + b["y"], "x": b["x"] + 1}


NUMERIC = DF[["x", "y", "k"]]


def test_map_jit_matches_pandas():
    # One block: the first numba compile in a worker takes seconds.
    out = sd.from_pandas(NUMERIC).map(jit_row, jit=True).to_pandas()
    same(out, pd.DataFrame({"z": NUMERIC.x * 2.0 + NUMERIC.y, "x": NUMERIC.x + 1}))
    assert out["x"].dtype == np.int64


def test_map_batches_jit_matches_pandas():
    out = sd.from_pandas(NUMERIC).map_batches(jit_batch, jit=True, batch_size=7).to_pandas()
    same(out, pd.DataFrame({"z": NUMERIC.x * 2.0 + NUMERIC.y, "w": NUMERIC.y ** 2}))


def test_map_batches_jit_returns_columns_of_different_types():
    out = sd.from_pandas(NUMERIC).map_batches(jit_batch_mixed_types, jit=True).to_pandas()
    same(out, pd.DataFrame({"z": NUMERIC.x * 2.0 + NUMERIC.y, "x": NUMERIC.x + 1}))


def test_jit_over_a_string_column_is_a_clear_type_error():
    with pytest.raises(TypeError, match=r"Map\(jit_row, jit\): jit=True compiles over numeric columns, "
                                        r"but the block has s \((large_)?string\)"):
        dataset(DF).map(jit_row, jit=True).take_all()
    with pytest.raises(TypeError, match=r"MapBatches\(jit_batch, jit\): .* s \((large_)?string\); "
                                        r"select_columns the numeric ones"):
        dataset(DF).map_batches(jit_batch, jit=True).take_all()
