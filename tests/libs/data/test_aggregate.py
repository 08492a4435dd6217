"""aggregate: partial -> combine -> finalize over Arrow blocks matches pandas ``groupby().agg``.

Rules (``sluice/libs/data/aggregate.py``): nulls and NaNs are skipped; rows with a
null or NaN key are dropped; the sum of a group without values is 0, its mean,
min, max and std are null; ``Count()`` counts rows; results are sorted by key.
Splitting a table into any blocks and combining their partial states in any
grouping and order gives the same result as aggregating the whole table.
"""

from __future__ import annotations

import itertools
import math
import pickle
import random
import re
import sys
from decimal import Decimal
from typing import Any

import cloudpickle
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.libs.data.aggregate import (
    AggregateFn,
    Count,
    Max,
    Mean,
    Min,
    Std,
    Sum,
    combine_partials,
    finalize_aggregate,
    partial_aggregate,
)

SETTINGS = settings(max_examples=50, deadline=None, derandomize=True, database=None)
FEWER = settings(SETTINGS, max_examples=25)
NAN = float("nan")

# (aggregation, pandas column, pandas method or "size", keyword arguments for the method)
AGGS: list[tuple[AggregateFn, str | None, str, dict]] = [
    (Count(), None, "size", {}),
    (Count("x", ignore_nulls=True), "x", "count", {}),
    (Sum("x"), "x", "sum", {}),
    (Sum("i"), "i", "sum", {}),
    (Mean("x"), "x", "mean", {}),
    (Mean("i"), "i", "mean", {}),
    (Min("x"), "x", "min", {}),
    (Max("x"), "x", "max", {}),
    (Min("s"), "s", "min", {}),
    (Max("s"), "s", "max", {}),
    (Std("x"), "x", "std", {}),
    (Std("i", ddof=0, alias_name="pstd(i)"), "i", "std", {"ddof": 0}),
]


# --------------------------------------------------------------------------- helpers

def aggregate(blocks: list[pa.Table], keys: list[str], aggs: list[AggregateFn],
              rnd: random.Random | None = None) -> pa.Table:
    """All three phases; with ``rnd`` the partials combine in a random tree, in random order."""
    parts = [partial_aggregate(b, keys, aggs) for b in blocks]
    if rnd is None:
        return finalize_aggregate(combine_partials(parts, keys, aggs), keys, aggs)
    rnd.shuffle(parts)
    while len(parts) > 1:
        start = rnd.randrange(len(parts))
        width = rnd.choice([1, 2, 3])  # a combine of one partial must be a no-op too
        merged = combine_partials(parts[start:start + width], keys, aggs)
        parts[start:start + width] = [merged]
        rnd.shuffle(parts)
    return finalize_aggregate(combine_partials(parts, keys, aggs), keys, aggs)


def pandas_result(table: pa.Table, keys: list[str], specs: list[tuple]) -> pd.DataFrame:
    """What ``df.groupby(keys).agg`` gives: keys as columns, one column per aggregation name."""
    frame = table.to_pandas()
    columns: dict[str, Any] = {}
    if keys:
        groups = frame.groupby(keys, dropna=True, sort=True)
        for agg, on, how, kwargs in specs:
            columns[agg.name] = groups.size() if how == "size" else getattr(groups[on], how)(**kwargs)
        return pd.DataFrame(columns).reset_index() if columns else groups.size().reset_index()[keys]
    for agg, on, how, kwargs in specs:
        columns[agg.name] = [len(frame) if how == "size" else getattr(frame[on], how)(**kwargs)]
    return pd.DataFrame(columns)


def missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def assert_same_values(ours: list, theirs: list, column: str) -> None:
    assert len(ours) == len(theirs), (column, ours, theirs)
    for row, (a, b) in enumerate(zip(ours, theirs)):
        if missing(a) or missing(b):
            assert missing(a) and missing(b), (column, row, a, b)
        elif isinstance(a, float) or isinstance(b, float):
            assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6), (column, row, a, b)
        else:
            assert a == b, (column, row, a, b)


def assert_matches_pandas(result: pa.Table, table: pa.Table, keys: list[str], specs: list[tuple]) -> None:
    expected = pandas_result(table, keys, specs)
    assert result.column_names == [*keys, *(agg.name for agg, *_ in specs)]
    for name in result.column_names:
        assert_same_values(result.column(name).to_pylist(), expected[name].tolist(), name)


# --------------------------------------------------------------------------- random tables

# Columns are drawn as small integers mapped to values: much cheaper for hypothesis to generate.
KEY_POOLS = {
    "int": (pa.int64(), [None, -3, -2, -1, 0, 1, 2, 3]),
    "float": (pa.float64(), [None, 0.0, -0.0, 1.5, -2.25, NAN, 1e9]),
    "str": (pa.string(), [None, "", "a", "b", "ab", "é", "zz"]),
    "bool": (pa.bool_(), [None, False, True]),
}
STRINGS = [None, "", "a", "b", "é", "ab", "ba", "abc"]


def float_of(code: int) -> float | None:
    return None if code == -2 else NAN if code == -1 else (code - 500_000) / 7


@st.composite
def split_tables(draw: st.DrawFn) -> tuple[pa.Table, list[str], list[pa.Table], random.Random]:
    """A table with keys k1 (random type), k2 (int) and values x, i, s; its blocks; a Random."""
    rows = draw(st.integers(0, 30))

    def codes(low: int, high: int) -> list[int]:
        return draw(st.lists(st.integers(low, high), min_size=rows, max_size=rows))

    key_type, key_pool = KEY_POOLS[draw(st.sampled_from(sorted(KEY_POOLS)))]
    table = pa.table({
        "k1": pa.array([key_pool[c] for c in codes(0, len(key_pool) - 1)], type=key_type),
        "k2": pa.array(codes(0, 2), type=pa.int64()),
        "x": pa.array([float_of(c) for c in codes(-2, 1_000_000)], type=pa.float64()),
        "i": pa.array([None if c == -1001 else c for c in codes(-1001, 1000)], type=pa.int64()),
        "s": pa.array([STRINGS[c] for c in codes(0, len(STRINGS) - 1)], type=pa.string()),
    })
    keys = draw(st.sampled_from([[], ["k1"], ["k1", "k2"], ["k2", "k1"]]))
    cuts = sorted(draw(st.lists(st.integers(0, rows), max_size=5)))
    bounds = [0, *cuts, rows]
    blocks = [table.slice(a, b - a) for a, b in itertools.pairwise(bounds)]
    if draw(st.booleans()) and len(blocks) > 1:  # a block of several chunks
        blocks = [pa.concat_tables(blocks[:2]), *blocks[2:]]
    return table, keys, blocks, draw(st.randoms(use_true_random=False))


@SETTINGS
@given(split_tables())
def test_random_blocks_combined_in_random_order_match_pandas(case: tuple) -> None:
    table, keys, blocks, rnd = case
    result = aggregate(blocks, keys, [agg for agg, *_ in AGGS], rnd)
    assert_matches_pandas(result, table, keys, AGGS)


@FEWER
@given(split_tables(), st.randoms(use_true_random=False))
def test_combine_order_does_not_change_the_result(case: tuple, other: random.Random) -> None:
    _, keys, blocks, rnd = case
    aggs = [Count(), Sum("i"), Min("s"), Max("x")]  # exact in any order: no float rounding
    first = aggregate(blocks, keys, aggs, rnd)
    assert aggregate(blocks, keys, aggs, other).equals(first)
    assert aggregate(blocks, keys, aggs).equals(first)


# --------------------------------------------------------------------------- names and state layout

def test_names_follow_ray() -> None:
    assert [Count().name, Count("x").name, Sum("z").name, Mean("x").name, Min("x").name,
            Max("x").name, Std("x").name] == ["count()", "count(x)", "sum(z)", "mean(x)", "min(x)",
                                              "max(x)", "std(x)"]
    assert Sum("z", alias_name="total").name == "total"
    assert (Count().on, Sum("z").on, Std("x", ddof=0).ddof) == (None, "z", 0)
    assert repr(Mean("x")) == "Mean('mean(x)')"


def test_state_columns_are_named_after_the_aggregation() -> None:
    table = pa.table({"k": [1, 1, 2], "x": [1.0, 2.0, 3.0], "z": [1, 2, 3]})
    aggs = [Count(), Sum("z"), Mean("x"), Min("x"), Max("x"), Std("x")]
    state = partial_aggregate(table, ["k"], aggs)
    assert state.column_names == [
        "k", "__count()#count", "__sum(z)#sum", "__mean(x)#sum", "__mean(x)#count", "__min(x)#min",
        "__max(x)#max", "__std(x)#count", "__std(x)#mean", "__std(x)#m2"]
    assert [f.type for f in state.schema][1:] == [pa.int64(), pa.int64(), pa.float64(), pa.int64(),
                                                 pa.float64(), pa.float64(), pa.int64(), pa.float64(),
                                                 pa.float64()]
    by_key = state.sort_by("k").to_pydict()
    assert by_key["__std(x)#m2"] == [0.5, 0.0]  # sum of squared deviations from the group mean
    assert Std("x").state_names == ["__std(x)#count", "__std(x)#mean", "__std(x)#m2"]


def test_partial_has_one_row_per_distinct_key() -> None:
    keys = np.random.default_rng(0).integers(0, 50, 10_000)
    state = partial_aggregate(pa.table({"k": keys, "x": keys * 2}), ["k"], [Count(), Sum("x")])
    assert sorted(state["k"].to_pylist()) == sorted(set(keys.tolist()))


# --------------------------------------------------------------------------- semantics

def test_a_group_without_values_sums_to_zero_and_has_null_mean_min_max_std() -> None:
    table = pa.table({"k": [1, 1, 2], "x": [None, NAN, 4.0], "i": pa.array([None, None, 2], pa.int64())})
    aggs = [Count(), Sum("x"), Sum("i"), Mean("x"), Min("x"), Max("i"), Std("x")]
    result = finalize_aggregate(partial_aggregate(table, ["k"], aggs), ["k"], aggs).to_pydict()
    assert result == {"k": [1, 2], "count()": [2, 1], "sum(x)": [0.0, 4.0], "sum(i)": [0, 2],
                      "mean(x)": [None, 4.0], "min(x)": [None, 4.0], "max(i)": [None, 2],
                      "std(x)": [None, None]}


def test_null_and_nan_keys_are_dropped_and_signed_zeros_are_one_key() -> None:
    table = pa.table({"k": [0.0, -0.0, None, NAN, 2.0], "x": [1, 2, 3, 4, 5]})
    aggs = [Count(), Sum("x")]
    result = aggregate([table.slice(0, 2), table.slice(2)], ["k"], aggs).to_pydict()
    assert result == {"k": [0.0, 2.0], "count()": [2, 1], "sum(x)": [3, 5]}


def test_multiple_keys_sort_ascending_by_each_key_in_turn() -> None:
    table = pa.table({"a": ["y", "x", "y", "x", None], "b": [2, 1, 1, 1, 1], "v": [1, 2, 3, 4, 5]})
    aggs = [Sum("v")]
    result = aggregate([table], ["a", "b"], aggs).to_pydict()
    assert result == {"a": ["x", "y", "y"], "b": [1, 1, 2], "sum(v)": [6, 3, 1]}


def test_global_aggregate_has_one_row_also_for_an_empty_block() -> None:
    aggs = [Count(), Sum("x"), Mean("x"), Min("x"), Std("x")]
    empty = pa.table({"x": pa.array([], pa.float64())})
    assert aggregate([empty], [], aggs).to_pydict() == {
        "count()": [0], "sum(x)": [0.0], "mean(x)": [None], "min(x)": [None], "std(x)": [None]}
    table = pa.table({"x": [1.0, 2.0, 4.0]})
    result = aggregate([empty, table, empty], [], aggs).to_pydict()
    assert result["count()"] == [3] and result["sum(x)"] == [7.0] and result["min(x)"] == [1.0]
    assert result["std(x)"][0] == pytest.approx(np.std([1.0, 2.0, 4.0], ddof=1))


def test_a_block_without_columns_counts_as_empty() -> None:
    aggs = [Count(), Sum("x")]
    assert aggregate([pa.table({})], [], aggs).to_pydict() == {"count()": [0], "sum(x)": [0]}
    keyed = aggregate([pa.table({}), pa.table({"k": ["a"], "x": [2.5]})], ["k"], aggs)
    assert keyed.to_pydict() == {"k": ["a"], "count()": [1], "sum(x)": [2.5]}
    assert finalize_aggregate(pa.table({}), ["k"], aggs).num_rows == 0


def test_empty_state_pieces_and_combining_nothing_add_no_rows() -> None:
    aggs = [Count(), Mean("x")]
    state = partial_aggregate(pa.table({"x": [1.0, 3.0]}), [], aggs)
    assert finalize_aggregate(combine_partials([state.slice(0, 0)] * 3, [], aggs), [], aggs).num_rows == 0
    nothing = combine_partials([], ["k"], aggs)
    assert nothing.num_rows == 0 and nothing.column_names[0] == "k"
    combined = combine_partials([state.slice(0, 0), state, state.slice(0, 0)], [], aggs)
    assert finalize_aggregate(combined, [], aggs).to_pydict() == {"count()": [2], "mean(x)": [2.0]}


def test_types_sum_keeps_integers_mean_and_std_are_float_min_max_keep_the_input_type() -> None:
    stamps = pa.array([1, 5, 3], pa.timestamp("ms"))
    table = pa.table({"k": [1, 1, 1], "i": pa.array([1, 2, 3], pa.int32()), "b": [True, True, False],
                      "t": stamps, "d": pa.array([Decimal(1), Decimal(2), Decimal(3)], pa.decimal128(10, 2))})
    aggs = [Sum("i"), Sum("b"), Mean("i"), Std("b"), Min("t"), Max("b"), Sum("d")]
    result = aggregate([table.slice(0, 1), table.slice(1)], ["k"], aggs)
    assert [f.type for f in result.schema][1:] == [pa.int64(), pa.int64(), pa.float64(), pa.float64(),
                                                  pa.timestamp("ms"), pa.bool_(), result["sum(d)"].type]
    assert pa.types.is_decimal(result["sum(d)"].type)
    row = result.to_pylist()[0]
    assert (row["sum(i)"], row["sum(b)"], row["mean(i)"], row["max(b)"]) == (6, 2, 2.0, True)
    assert row["min(t)"] == stamps[0].as_py() and float(row["sum(d)"]) == 6.0


def test_blocks_whose_types_differ_combine_with_promotion() -> None:
    aggs = [Sum("x"), Min("x"), Mean("x")]
    blocks = [pa.table({"k": ["a"], "x": pa.array([1], pa.int32())}),
              pa.table({"k": ["a"], "x": [2.5]}),
              pa.table({"k": pa.array(["a"]), "x": pa.nulls(1)})]
    assert aggregate(blocks, ["k"], aggs).to_pydict() == {
        "k": ["a"], "sum(x)": [3.5], "min(x)": [1.0], "mean(x)": [1.75]}


def test_one_column_in_different_encodings_across_blocks_combines() -> None:
    aggs = [Count(), Min("s"), Sum("x")]
    blocks = [pa.table({"k": pa.nulls(2), "s": ["a", "b"], "x": [1, 2]}),
              pa.table({"k": ["u", "v"], "s": pa.array(["c", "d"], pa.large_string()),
                        "x": pa.array([1, 2], pa.uint64())}),
              pa.table({"k": pa.array(["u", "w"], pa.string_view()),
                        "s": pa.array(["e", None], pa.string_view()), "x": [3.0, None]})]
    assert aggregate(blocks, ["k"], aggs).to_pydict() == {
        "k": ["u", "v", "w"], "count()": [2, 1, 1], "min(s)": ["c", "d", None], "sum(x)": [4.0, 2.0, 0.0]}


def test_dictionary_and_chunked_columns_aggregate_like_plain_ones() -> None:
    plain = pa.table({"k": ["a", "b", "a", None], "x": [1.0, 2.0, 3.0, 4.0]})
    dictionary = plain.set_column(0, "k", plain["k"].dictionary_encode())
    chunked = pa.concat_tables([plain.slice(0, 1), plain.slice(1, 2), plain.slice(3)])
    aggs = [Count(), Mean("x")]
    expected = aggregate([plain], ["k"], aggs)
    assert aggregate([dictionary], ["k"], aggs).equals(expected)
    assert aggregate([chunked], ["k"], aggs).equals(expected)


def test_std_is_stable_for_a_large_mean_and_a_small_spread() -> None:
    # A sum of squares would lose every digit here: x**2 ~ 1e18 while the spread is ~1e-3.
    spread = np.arange(10_000) * 1e-4
    table = pa.table({"x": 1e9 + spread})
    blocks = [table.slice(i, 997) for i in range(0, 10_000, 997)]
    result = aggregate(blocks, [], [Std("x"), Std("x", ddof=0, alias_name="p")], random.Random(1))
    assert result["std(x)"][0].as_py() == pytest.approx(np.std(spread, ddof=1), rel=1e-6)
    assert result["p"][0].as_py() == pytest.approx(np.std(spread, ddof=0), rel=1e-6)


def test_ddof_larger_than_the_group_gives_null() -> None:
    table = pa.table({"k": [1, 1, 2, 2, 2], "x": [1.0, 2.0, 1.0, 2.0, 3.0]})
    aggs = [Std("x", ddof=2)]
    assert aggregate([table], ["k"], aggs).to_pydict() == {"k": [1, 2], "std(x)": [None, math.sqrt(2.0)]}


def python_lines_run(fn, *args) -> tuple[Any, int]:
    """``fn(*args)`` and how many lines of Python it ran (in any module)."""
    lines = 0

    def trace(frame, event, arg):
        nonlocal lines
        lines += event == "line"
        return trace

    previous = sys.gettrace()  # a coverage or debugger tracer, given back after
    sys.settrace(trace)
    try:
        result = fn(*args)
    finally:
        sys.settrace(previous)
    return result, lines


def test_partial_aggregate_of_many_rows_is_vectorized() -> None:
    # 500,000 rows and 1,000 keys: a few hundred lines of Python run (the same for 5,000
    # rows); a Python loop per row would run at least one line per row.
    rng = np.random.default_rng(0)
    rows = 500_000
    table = pa.table({"k": rng.integers(0, 1000, rows), "x": rng.random(rows), "z": rng.integers(0, 9, rows)})
    aggs = [Count(), Sum("z"), Mean("x"), Std("x"), Min("x"), Max("x")]
    partial_aggregate(table.slice(0, 1000), ["k"], aggs)  # imports and caches warm
    state, lines = python_lines_run(partial_aggregate, table, ["k"], aggs)
    assert lines < rows // 100, f"{lines} lines of Python for {rows} rows"
    assert state.num_rows == 1000
    assert pc.sum(state["__count()#count"]).as_py() == rows


# --------------------------------------------------------------------------- custom aggregations

def distinct_values() -> AggregateFn:
    """A custom aggregation: the sorted distinct values of x in the group, without nulls and NaNs."""
    return AggregateFn(init=lambda key: set(), merge=lambda a, b: a | b, name="distinct(x)",
                       accumulate_block=lambda acc, block: acc | {v for v in block["x"].to_pylist()
                                                                  if not missing(v)},
                       finalize=sorted)


@FEWER
@given(split_tables())
def test_custom_aggregate_matches_pandas_apply(case: tuple) -> None:
    table, keys, blocks, rnd = case
    custom = distinct_values()
    result = aggregate(blocks, keys, [custom, Count()], rnd)
    frame = table.to_pandas()
    distinct = lambda s: sorted(set(s.dropna().tolist()))
    if keys:
        expected = frame.groupby(keys, dropna=True, sort=True)["x"].apply(distinct).tolist()
    else:
        expected = [distinct(frame["x"])]
    assert result["distinct(x)"].to_pylist() == expected


def test_custom_aggregate_gets_the_key_and_may_fold_rows_one_by_one() -> None:
    seen_keys = []

    def init(key: Any) -> list:
        seen_keys.append(key)
        return []

    rows = AggregateFn(init=init, merge=lambda a, b: a + b, name="rows",
                       accumulate_row=lambda acc, row: [*acc, row["v"]], finalize=sorted)
    table = pa.table({"a": ["x", "y", "x"], "b": [1, 2, 1], "v": [3, 1, 2]})
    result = aggregate([table.slice(0, 2), table.slice(2)], ["a", "b"], [rows])
    assert result.to_pydict() == {"a": ["x", "y"], "b": [1, 2], "rows": [[2, 3], [1]]}
    assert set(seen_keys) == {("x", 1), ("y", 2)}
    seen_keys.clear()
    assert aggregate([table], [], [rows])["rows"].to_pylist() == [[1, 2, 3]]
    assert seen_keys == [None]


def test_aggregations_pickle_and_their_states_cross_processes() -> None:
    aggs = [Count(), Sum("x"), Std("x", ddof=0), distinct_values()]
    table = pa.table({"k": [1, 2, 1], "x": [1.0, 2.0, 4.0]})
    builtins = pickle.loads(pickle.dumps(aggs[:3]))
    moved = [*builtins, cloudpickle.loads(cloudpickle.dumps(aggs[3]))]
    state = pickle.loads(pickle.dumps(partial_aggregate(table, ["k"], aggs)))
    assert finalize_aggregate(state, ["k"], moved).equals(aggregate([table], ["k"], aggs))


# --------------------------------------------------------------------------- errors

def test_a_missing_key_or_value_column_is_named_with_the_columns_there_are() -> None:
    table = pa.table({"k": [1], "x": [1.0]})
    with pytest.raises(KeyError, match=r"column 'nope' does not exist; the block has columns \['k', 'x'\]"):
        partial_aggregate(table, ["nope"], [Count()])
    with pytest.raises(ValueError, match=r"column 'y' does not exist; the block has columns \['k', 'x'\]"):
        partial_aggregate(table, ["k"], [Sum("y")])


def test_a_non_numeric_column_under_sum_mean_or_std_is_named_with_its_type() -> None:
    table = pa.table({"k": [1], "s": ["a"]})
    for agg in (Sum("s"), Mean("s"), Std("s")):
        with pytest.raises(TypeError, match=rf"{re.escape(agg.name)} needs a numeric column, but column "
                                            r"'s' has type string; cast it to a number first"):
            partial_aggregate(table, ["k"], [agg])


def test_nested_columns_cannot_be_keys_or_min_max() -> None:
    table = pa.table({"k": [1, 2], "l": pa.array([[1], [2]])})
    with pytest.raises(TypeError, match=r"cannot group by column 'l' of type list<item: int64>; group by "
                                        r"number, string, bool or date/time columns"):
        partial_aggregate(table, ["l"], [Count()])
    with pytest.raises(TypeError, match=r"max\(l\) needs an orderable column, but column 'l' has type "
                                        r"list<item: int64>; use a custom AggregateFn"):
        partial_aggregate(table, ["k"], [Max("l")])


def test_bad_requests_say_what_to_pass() -> None:
    table = pa.table({"k": [1], "x": [1.0]})
    with pytest.raises(ValueError, match=r"aggregation name 'sum\(x\)' clashes with another aggregation's "
                                         r"name; give it another with alias_name"):
        partial_aggregate(table, ["k"], [Sum("x"), Sum("x")])
    with pytest.raises(ValueError, match=r"aggregation name 'k' clashes with a key column name"):
        partial_aggregate(table, ["k"], [Sum("x", alias_name="k")])
    with pytest.raises(TypeError, match=r"aggregate got 'sum', which is not an AggregateFn; pass e.g. "
                                        r"Count\(\)"):
        partial_aggregate(table, ["k"], ["sum"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"keys=\['k', 'k'\] repeat a column"):
        partial_aggregate(table, ["k", "k"], [Count()])
    with pytest.raises(ValueError, match=r"Std\(ddof=-1\): ddof must be a non-negative integer"):
        Std("x", ddof=-1)
    with pytest.raises(TypeError, match=r"Sum\(on=3\): on must be the name of a column, e.g. Sum\('x'\)"):
        Sum(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"alias_name='' must be a non-empty string or None"):
        Mean("x", alias_name="")


def test_a_custom_aggregation_needs_init_merge_and_an_accumulator() -> None:
    with pytest.raises(ValueError, match=r"AggregateFn 'mine' needs accumulate_block=lambda acc, block"):
        AggregateFn(init=lambda key: 0, merge=max, name="mine")
    with pytest.raises(TypeError, match=r"AggregateFn merge=None is not callable; pass a function, "
                                        r"e.g. merge="):
        AggregateFn(init=lambda key: 0, merge=None, name="mine",  # type: ignore[arg-type]
                    accumulate_block=lambda acc, b: acc)
    with pytest.raises(ValueError, match=r"AggregateFn name=None must be a non-empty string"):
        AggregateFn(init=lambda key: 0, merge=max, name=None,  # type: ignore[arg-type]
                    accumulate_block=lambda acc, b: acc)


def test_combining_a_table_that_is_not_a_state_says_so() -> None:
    table = pa.table({"k": [1], "x": [1.0]})
    state = partial_aggregate(table, ["k"], [Sum("x")])
    with pytest.raises(KeyError, match=r"combine_partials: column '__mean\(x\)#sum' does not exist; .*; "
                                       r"pass tables made by partial_aggregate with the same keys and "
                                       r"aggregations"):
        combine_partials([state, state], ["k"], [Mean("x")])
    with pytest.raises(KeyError, match=r"finalize_aggregate: column '__mean\(x\)#sum' does not exist"):
        finalize_aggregate(state, ["k"], [Mean("x")])
