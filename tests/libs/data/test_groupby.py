"""Dataset.groupby aggregates and map_groups compared with pandas groupby over random tables.

Tables are split over several blocks, so each aggregate goes through the partial
(map side), combine and finalize steps. Rows of both answers are sorted by key;
floats compare with a tolerance and null compares equal to NaN.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal

import sluice.data as sd
from sluice.data import AggregateFn, Count, Max, Mean, Min, Std, Sum

pytestmark = pytest.mark.usefixtures("runtime")

SETTINGS = settings(max_examples=20, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def by_keys(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return df.sort_values(keys).reset_index(drop=True)


def same(actual: pd.DataFrame, expected: pd.DataFrame, keys: list[str]) -> None:
    """Equal after sorting by ``keys``; values compared as floats (null == NaN), keys exactly."""
    assert sorted(actual.columns) == sorted(expected.columns)
    actual, expected = by_keys(actual, keys), by_keys(expected, keys)[list(actual.columns)]
    values = {c: float for c in actual.columns if c not in keys}
    assert_frame_equal(actual.astype(values), expected.astype(values), check_dtype=False, rtol=1e-9, atol=1e-9)


def split(df: pd.DataFrame, cuts: list[int]) -> list[pd.DataFrame]:
    """``df`` cut at the (sorted, in range) row positions ``cuts``: one frame per block."""
    bounds = [0, *sorted(min(c, len(df)) for c in cuts), len(df)]
    return [df.iloc[a:b].reset_index(drop=True) for a, b in itertools.pairwise(bounds)]


def pandas_aggregates(df: pd.DataFrame, keys: list[str], on: list[str]) -> pd.DataFrame:
    """What sluice's Count() and Sum/Mean/Min/Max/Std of each column of ``on`` give, by pandas."""
    grouped = df.groupby(keys, dropna=True)
    out = grouped.size().rename("count()").to_frame()
    for c in on:
        out[f"sum({c})"] = grouped[c].sum()
        out[f"mean({c})"] = grouped[c].mean()
        out[f"min({c})"] = grouped[c].min()
        out[f"max({c})"] = grouped[c].max()
        out[f"std({c})"] = grouped[c].std()
    return out.reset_index()


def all_aggregates(on: list[str]) -> list[AggregateFn]:
    aggs: list[AggregateFn] = [Count()]
    for c in on:
        aggs += [Sum(c), Mean(c), Min(c), Max(c), Std(c)]
    return aggs


# Few distinct keys (a null string key among them, dropped like pandas' dropna=True) so groups
# repeat; ints and floats with NaN (skipped like pandas does) as values.
floats = st.one_of(st.floats(-1e3, 1e3, allow_nan=False).map(lambda v: round(v, 3)), st.just(float("nan")))
rows = st.lists(st.tuples(st.integers(0, 5), st.sampled_from(["a", "b", "c", "dd", None]), st.integers(-50, 50), floats),
                min_size=1, max_size=40)


COLUMNS = ["k", "t", "i", "f"]


def frame(values: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(values, columns=COLUMNS).astype({"k": "int64", "i": "int64", "f": "float64"})


@SETTINGS
@given(values=rows, cuts=st.lists(st.integers(0, 40), max_size=3), key=st.sampled_from(["k", "t"]))
def test_groupby_aggregate_matches_pandas(values, cuts, key):
    df = frame(values)
    out = sd.from_pandas(split(df, cuts)).groupby(key).aggregate(*all_aggregates(["i", "f"])).to_pandas()
    assert list(out.columns) == [key, *(a.name for a in all_aggregates(["i", "f"]))]
    same(out, pandas_aggregates(df, [key], ["i", "f"]), [key])


@SETTINGS
@given(values=rows, blocks=st.integers(1, 4))
def test_groupby_several_keys_matches_pandas(values, blocks):
    df = frame(values)
    ds = sd.from_items([dict(zip(COLUMNS, v)) for v in values]).repartition(blocks)
    out = ds.groupby(["k", "t"]).aggregate(*all_aggregates(["f"])).to_pandas()
    same(out, pandas_aggregates(df, ["k", "t"], ["f"]), ["k", "t"])


@SETTINGS
@given(values=rows, cuts=st.lists(st.integers(0, 40), max_size=3))
def test_global_aggregate_matches_pandas(values, cuts):
    df = frame(values)
    ds = sd.from_pandas(split(df, cuts))
    got = ds.aggregate(*all_aggregates(["i", "f"]))
    expected = {"count()": len(df)}
    for c in ("i", "f"):
        expected |= {f"sum({c})": df[c].sum(), f"mean({c})": df[c].mean(), f"min({c})": df[c].min(),
                     f"max({c})": df[c].max(), f"std({c})": df[c].std()}
    assert list(got) == list(expected)
    for name, value in expected.items():
        if pd.isna(value):
            assert got[name] is None or np.isnan(got[name]), name
        else:
            assert got[name] == pytest.approx(value, rel=1e-9, abs=1e-9), name
    assert ds.sum("f") == pytest.approx(df.f.sum(), abs=1e-9)
    assert ds.std("i", ddof=0) == pytest.approx(df.i.std(ddof=0), abs=1e-9)


# --------------------------------------------------------------------------- the shortcut methods

DF = pd.DataFrame({
    "k": [3, 1, 2, 1, 3, 3, 2, 1, 1, 0],
    "g": ["x", "y", "x", "x", "y", "y", "x", "y", "x", "x"],
    "z": [1.5, 2.0, -1.0, 4.0, 0.5, 3.0, 2.5, -2.0, 1.0, 7.0],
    "n": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
})
DS = sd.from_pandas(split(DF, [3, 7]))


@pytest.mark.parametrize("method", ["sum", "mean", "min", "max", "std"])
def test_groupby_method_names_its_column_and_matches_pandas(method):
    out = getattr(DS.groupby("k"), method)("z").to_pandas()
    assert list(out.columns) == ["k", f"{method}(z)"]
    expected = getattr(DF.groupby("k")["z"], method)().rename(f"{method}(z)").reset_index()
    same(out, expected, ["k"])


def test_groupby_method_over_several_columns():
    out = DS.groupby("g").sum(["z", "n"]).to_pandas()
    assert list(out.columns) == ["g", "sum(z)", "sum(n)"]
    same(out, DF.groupby("g")[["z", "n"]].sum().rename(columns=lambda c: f"sum({c})").reset_index(), ["g"])


def test_groupby_count_and_std_ddof():
    same(DS.groupby("k").count().to_pandas(), DF.groupby("k").size().rename("count()").reset_index(), ["k"])
    out = DS.groupby("g").std("z", ddof=0).to_pandas()
    same(out, DF.groupby("g")["z"].std(ddof=0).rename("std(z)").reset_index(), ["g"])


def test_groupby_after_transforms_and_of_no_rows():
    ds = DS.filter(expr=pc.field("z") > 0).map(lambda r: {**r, "z": r["z"] * 2})
    same(ds.groupby("k").sum("z").to_pandas(),
         (DF[DF.z > 0].assign(z=lambda d: d.z * 2)).groupby("k")["z"].sum().rename("sum(z)").reset_index(), ["k"])
    assert DS.filter(expr=pc.field("z") > 100).groupby("k").count().take_all() == []


def test_groupby_with_a_custom_aggregate():
    distinct = AggregateFn(init=lambda key: set(), accumulate_block=lambda acc, block: acc | set(
        block.column("g").to_pylist()), merge=lambda a, b: a | b, finalize=lambda acc: ",".join(sorted(acc)),
        name="distinct(g)")
    out = DS.groupby("k").aggregate(distinct, Count()).to_pandas()
    expected = DF.groupby("k").agg(**{"distinct(g)": ("g", lambda s: ",".join(sorted(set(s)))),
                                      "count()": ("g", "size")}).reset_index()
    assert_frame_equal(by_keys(out, ["k"]), expected, check_dtype=False)


# --------------------------------------------------------------------------- map_groups

def center(group: pd.DataFrame) -> pd.DataFrame:
    return group.assign(z=group["z"] - group["z"].mean(), size=len(group))


def first_of_group(group: dict) -> dict:
    return {"k": group["k"][:1], "n": np.array([group["n"].sum()])}


def test_map_groups_in_pandas_matches_pandas_transform():
    out = DS.groupby("k").map_groups(center, batch_format="pandas").to_pandas()
    expected = DF.assign(z=DF.z - DF.groupby("k")["z"].transform("mean"),
                         size=DF.groupby("k")["z"].transform("size"))
    assert_frame_equal(by_keys(out, ["n"]), by_keys(expected, ["n"]), check_dtype=False)


def test_map_groups_in_numpy_sees_each_group_once():
    out = DS.groupby(["k", "g"]).map_groups(first_of_group).to_pandas()
    expected = DF.groupby(["k", "g"])["n"].sum().reset_index()[["k", "n"]]
    same(out, expected, ["k", "n"])
    assert len(out) == DF.groupby(["k", "g"]).ngroups
