"""partition: cutting a block by key hash, by key range and at random.

Rules (``sluice/libs/data/partition.py``): the pieces of a block hold each of its
rows exactly once and keep its schema; equal keys always hash to the same piece,
in any process (never Python's salted ``hash()``), also across numeric and string
types; range pieces, each sorted and then concatenated, sort the block with nulls
and NaNs last; a seeded random cut is a function of (seed, block index).
"""

from __future__ import annotations

import math
import os
import pickle
import subprocess
import sys
from collections import Counter
from datetime import date, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.libs.data import partition as partition_module
from sluice.libs.data.partition import (
    ColumnNotFoundError,
    _sorted_pieces,
    hash_partition,
    hash_rows,
    random_partition,
    range_partition,
    sample_block,
    sample_boundaries,
)

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, database=None)
FEWER = settings(SETTINGS, max_examples=30)
NAN = float("nan")
PARTITION_FILE = partition_module.__file__


def row_multiset(tables: list[pa.Table]) -> Counter:
    return Counter(repr(row) for table in tables for row in table.to_pylist())


# --------------------------------------------------------------------------- random tables

# Columns are drawn as small integers mapped to values: cheap for hypothesis to generate.
POOLS = {
    "int": (pa.int64(), [None, -5, -1, 0, 1, 2, 7, 2**40]),
    "float": (pa.float64(), [None, NAN, -0.0, 0.0, 1.0, -2.5, 1e-300, 3.25, math.inf, -math.inf]),
    "str": (pa.string(), [None, "", "a", "ab", "b", "é", "\x00", "zzz", "a" * 40]),
    "bool": (pa.bool_(), [None, True, False]),
    "date": (pa.date32(), [None, date(2020, 1, 1), date(1969, 12, 31), date(2024, 2, 29)]),
}

ALL_KINDS = tuple(sorted(POOLS))


@st.composite
def keyed_tables(draw: st.DrawFn, kinds: tuple[str, ...] = ALL_KINDS) -> tuple[pa.Table, str]:
    """A table with a key column "k" of a random kind and a row number "row"."""
    rows = draw(st.integers(0, 40))
    kind = draw(st.sampled_from(kinds))
    key_type, pool = POOLS[kind]
    codes = draw(st.lists(st.integers(0, len(pool) - 1), min_size=rows, max_size=rows))
    table = pa.table({"k": pa.array([pool[c] for c in codes], type=key_type),
                      "row": pa.array(np.arange(rows), type=pa.int64())})
    if rows > 2 and draw(st.booleans()):  # several chunks, the middle one a slice with an offset
        table = pa.concat_tables([table.slice(0, 1), table.slice(1, rows // 2), table.slice(1 + rows // 2)])
    return table, kind


# --------------------------------------------------------------------------- hash_partition

@SETTINGS
@given(keyed_tables(), st.integers(1, 7))
def test_hash_pieces_hold_every_row_once_and_each_key_in_one_piece(case: tuple, n: int) -> None:
    table, _ = case
    pieces = hash_partition(table, ["k"], n)
    assert len(pieces) == n
    assert all(piece.schema.equals(table.schema, check_metadata=True) for piece in pieces)
    assert sorted(row for piece in pieces for row in piece["row"].to_pylist()) == list(range(table.num_rows))
    home: dict[str, int] = {}
    for index, piece in enumerate(pieces):
        rows = piece["row"].to_pylist()
        assert rows == sorted(rows)  # block order kept within a piece
        for key in piece["k"].to_pylist():
            name = repr(key) if not isinstance(key, float) or not math.isnan(key) else "nan"
            name = "0.0" if name == "-0.0" else name
            assert home.setdefault(name, index) == index, (key, home[name], index)


@FEWER
@given(keyed_tables(), keyed_tables(("int", "str")), st.integers(2, 9))
def test_several_key_columns_place_equal_key_tuples_together(first: tuple, second: tuple, n: int) -> None:
    rows = min(first[0].num_rows, second[0].num_rows)
    table = pa.table({"a": first[0]["k"].slice(0, rows), "b": second[0]["k"].slice(0, rows)})
    pieces = hash_partition(table, ["a", "b"], n)
    home: dict[str, int] = {}
    for index, piece in enumerate(pieces):
        for row in piece.to_pylist():
            name = repr(row).replace("-0.0", "0.0")
            assert home.setdefault(name, index) == index
    assert sum(p.num_rows for p in pieces) == rows


def test_equal_values_of_different_types_hash_alike() -> None:
    columns = [pa.array([1, 0, 2], pa.int8()), pa.array([1, 0, 2], pa.uint32()), pa.array([1, 0, 2]),
               pa.array([1.0, -0.0, 2.0]), pa.array([1.0, 0.0, 2.0], pa.float32())]
    expected = hash_rows(pa.table({"k": columns[2]}), ["k"])
    for column in columns:
        assert hash_rows(pa.table({"k": column}), ["k"]).tolist() == expected[:len(column)].tolist()
    assert hash_rows(pa.table({"k": pa.array([True, False])}), ["k"]).tolist() == expected[:2].tolist()
    words = ["a", "", "ab", "ba", None]
    text = hash_rows(pa.table({"k": pa.array(words)}), ["k"])
    for typed in (pa.large_string(), pa.binary(), pa.large_binary(), pa.string_view()):
        assert hash_rows(pa.table({"k": pa.array(words).cast(typed)}), ["k"]).tolist() == text.tolist()
    dictionary = pa.table({"k": pa.array(words).dictionary_encode()})
    assert hash_rows(dictionary, ["k"]).tolist() == text.tolist()
    sliced = pa.array(["x", *words]).slice(1)  # an array whose offsets do not start at zero
    assert hash_rows(pa.table({"k": sliced}), ["k"]).tolist() == text.tolist()
    assert len(set(text.tolist())) == len(words)  # "ab" and "ba" differ: byte order counts


def test_hashes_are_pinned_so_every_process_and_release_agrees() -> None:
    table = pa.table({"k": [1, 2, 1, 2, 3]})
    assert [p["k"].to_pylist() for p in hash_partition(table, ["k"], 2)] == [[3], [1, 2, 1, 2]]
    strings = pa.table({"k": ["apple", "pear", "fig", None, "", "apple"]})
    assert [p["k"].to_pylist() for p in hash_partition(strings, ["k"], 3)] == [
        ["apple", "fig", "apple"], [None], ["pear", ""]]


def test_string_hashes_agree_across_processes_with_different_hash_seeds() -> None:
    words = [f"key-{i}" for i in range(200)] + ["", "é", None]
    here = hash_rows(pa.table({"k": words, "n": list(range(203))}), ["k", "n"]).tolist()
    # Load the module by path: it needs only numpy and pyarrow, which keeps the child quick.
    script = ("import importlib.util, pyarrow as pa\n"
              f"spec = importlib.util.spec_from_file_location('partition', {PARTITION_FILE!r})\n"
              "partition = importlib.util.module_from_spec(spec)\nspec.loader.exec_module(partition)\n"
              f"words = {words!r}\n"
              "table = pa.table({'k': words, 'n': list(range(203))})\n"
              "print(partition.hash_rows(table, ['k', 'n']).tolist())")
    seed = "1" if os.environ.get("PYTHONHASHSEED") != "1" else "2"
    out = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONHASHSEED": seed},
                         capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == str(here)


def test_hash_pieces_are_roughly_even() -> None:
    keys = np.arange(20_000)
    for table in (pa.table({"k": keys}), pa.table({"k": pa.array(keys.astype(str))})):
        sizes = [p.num_rows for p in hash_partition(table, ["k"], 16)]
        assert sum(sizes) == 20_000
        assert max(sizes) < 1.15 * 20_000 / 16 and min(sizes) > 0.85 * 20_000 / 16, sizes


def test_hash_pieces_are_compact_tables_not_views_of_the_block() -> None:
    big = pa.table({"k": np.arange(200_000) % 1000, "pad": np.zeros(200_000)})
    pieces = hash_partition(big, ["k"], 4)
    # A slice would pickle the whole block's buffers; a piece pickles only its own rows.
    assert all(len(pickle.dumps(piece)) < len(pickle.dumps(big)) / 2 for piece in pieces)
    empty = hash_partition(big.slice(0, 0), ["k"], 3)
    assert [p.num_rows for p in empty] == [0, 0, 0] and empty[0].schema == big.schema


def test_hash_partition_errors_say_what_to_pass() -> None:
    table = pa.table({"k": [1], "l": pa.array([[1]])})
    with pytest.raises(ValueError, match=r"n=0 must be a positive integer number of pieces"):
        hash_partition(table, ["k"], 0)
    with pytest.raises(ValueError, match=r"hash_partition needs at least one key column; use "
                                         r"random_partition"):
        hash_partition(table, [], 2)
    with pytest.raises(KeyError, match=r"hash_partition: column 'z' does not exist; the block has columns "
                                       r"\['k', 'l'\]"):
        hash_partition(table, ["z"], 2)
    with pytest.raises(TypeError, match=r"cannot hash key column 'l' of type list<item: int64>; group or "
                                        r"partition by number, string, bool or date/time columns"):
        hash_partition(table, ["l"], 2)
    assert issubclass(ColumnNotFoundError, KeyError) and issubclass(ColumnNotFoundError, ValueError)


# --------------------------------------------------------------------------- range partitioning

def arrow_sorted(table: pa.Table, descending: bool) -> list:
    order = "descending" if descending else "ascending"
    return table.sort_by([("k", order), ("row", "ascending")])["row"].to_pylist()


@SETTINGS
@given(keyed_tables(), st.integers(1, 6), st.booleans(), st.integers(1, 4))
def test_sorted_range_pieces_concatenate_to_the_sorted_block(case: tuple, n: int, descending: bool,
                                                             blocks: int) -> None:
    table, _ = case
    step = max(1, math.ceil(table.num_rows / blocks))
    samples = [sample_block(table.slice(s, step), "k", 3) for s in range(0, table.num_rows, step)]
    boundaries = sample_boundaries(samples, "k", n, descending)
    assert len(boundaries) in (0, n - 1)
    pieces = range_partition(table, "k", boundaries, descending)
    assert len(pieces) == len(boundaries) + 1
    assert all(piece.schema.equals(table.schema) for piece in pieces)
    rows = [row for piece in pieces for row in arrow_sorted(piece, descending)]
    assert rows == arrow_sorted(table, descending)


@SETTINGS
@given(keyed_tables(("int", "float", "date")), st.integers(1, 5), st.booleans())
def test_numeric_search_agrees_with_sorting_values_and_boundaries_together(case: tuple, n: int,
                                                                           descending: bool) -> None:
    table, _ = case
    boundaries = sample_boundaries([table], "k", n, descending)
    pieces = range_partition(table, "k", boundaries, descending)
    piece_of_row = {row: i for i, piece in enumerate(pieces) for row in piece["row"].to_pylist()}
    column = table["k"].combine_chunks()
    by_sorting = _sorted_pieces(column, pa.array(boundaries, type=column.type), descending)
    valid = pc.is_valid(column).to_numpy(zero_copy_only=False)
    if pa.types.is_floating(column.type):
        valid &= ~np.isnan(column.to_numpy(zero_copy_only=False))
    for row in range(table.num_rows):
        expected = int(by_sorting[row]) if valid[row] else len(boundaries)
        assert piece_of_row[row] == expected


def test_a_value_equal_to_a_boundary_goes_to_the_piece_after_it() -> None:
    table = pa.table({"k": [1, 2, 3, 4, 5, None]})
    pieces = range_partition(table, "k", [2, 4])
    assert [p["k"].to_pylist() for p in pieces] == [[1], [2, 3], [4, 5, None]]
    pieces = range_partition(table, "k", [4, 2], descending=True)
    assert [p["k"].to_pylist() for p in pieces] == [[5], [3, 4], [1, 2, None]]  # block order kept
    words = pa.table({"k": ["b", "a", "c", None, "bb"]})
    assert [p["k"].to_pylist() for p in range_partition(words, "k", ["b"])] == [["a"], ["b", "c", None, "bb"]]


def test_timestamps_and_strings_cut_at_their_boundaries() -> None:
    stamps = pa.table({"k": pa.array([datetime(2020, 1, d) for d in (3, 1, 2)], pa.timestamp("us"))})
    pieces = range_partition(stamps, "k", [datetime(2020, 1, 2)])
    assert [p.num_rows for p in pieces] == [1, 2]
    words = pa.table({"k": pa.array(["pear", "apple", "fig"]).dictionary_encode()})
    assert [p["k"].to_pylist() for p in range_partition(words, "k", ["fig"])] == [["apple"], ["pear", "fig"]]


def test_sample_boundaries_are_quantiles_in_sort_order_without_nulls() -> None:
    samples = [pa.table({"k": [5, None, 1]}), pa.table({"k": [3, 7, None]}), pa.table({})]
    assert sample_boundaries(samples, "k", 2) == [5]
    assert sample_boundaries(samples, "k", 4) == [3, 5, 7]
    assert sample_boundaries(samples, "k", 4, descending=True) == [7, 5, 3]
    assert sample_boundaries(samples, "k", 1) == []
    assert sample_boundaries([pa.table({"k": [None, NAN]})], "k", 3) == []
    assert sample_boundaries([pa.table({"k": ["b"]})], "k", 3) == ["b", "b"]
    mixed = [pa.table({"k": pa.array([1], pa.int32())}), pa.table({"k": [2.5]})]
    assert sample_boundaries(mixed, "k", 2) == [2.5]


def test_sample_block_takes_evenly_spaced_rows_of_the_key() -> None:
    table = pa.table({"k": list(range(1000)), "v": list(range(1000))})
    sample = sample_block(table, "k", 5)
    assert sample.column_names == ["k"] and sample["k"].to_pylist() == [0, 250, 500, 749, 999]
    assert sample_block(table.slice(0, 3), "k", 5)["k"].to_pylist() == [0, 1, 2]
    assert sample_block(table, "k", 0).num_rows == 0
    assert len(sample_block(table, "k")) == 100


def test_range_partition_errors_say_what_to_pass() -> None:
    table = pa.table({"k": [1, 2]})
    with pytest.raises(ValueError, match=r"boundaries \[3, 1\] are not sorted ascending "
                                         r"\(descending=False\); pass the list sample_boundaries returns"):
        range_partition(table, "k", [3, 1])
    with pytest.raises(ValueError, match=r"boundaries \[1, 3\] are not sorted descending "
                                         r"\(descending=True\)"):
        range_partition(table, "k", [1, 3], descending=True)
    with pytest.raises(TypeError, match=r"range_partition: boundaries \['a'\] do not fit column 'k' of type "
                                        r"int64 .*; sample the boundaries from this column"):
        range_partition(table, "k", ["a"])
    with pytest.raises(KeyError, match=r"range_partition: column 'x' does not exist; the block has "
                                       r"columns \['k'\]"):
        range_partition(table, "x", [1])
    with pytest.raises(KeyError, match=r"sample_block: column 'x' does not exist"):
        sample_block(table, "x")
    with pytest.raises(ValueError, match=r"k=-1 must be a non-negative number of rows to sample"):
        sample_block(table, "k", -1)
    with pytest.raises(KeyError, match=r"sample_boundaries: column 'x' does not exist"):
        sample_boundaries([table], "x", 2)
    with pytest.raises(ValueError, match=r"n=0 must be a positive integer number of pieces"):
        sample_boundaries([table], "k", 0)


# --------------------------------------------------------------------------- random_partition

@SETTINGS
@given(keyed_tables(), st.integers(1, 6), st.integers(0, 2**32), st.integers(0, 50))
def test_random_pieces_deal_every_row_once_and_repeat_for_a_seed(case: tuple, n: int, seed: int,
                                                                 index: int) -> None:
    table, _ = case
    pieces = random_partition(table, n, seed, index)
    assert len(pieces) == n and all(p.schema.equals(table.schema) for p in pieces)
    assert sorted(r for p in pieces for r in p["row"].to_pylist()) == list(range(table.num_rows))
    sizes = [p.num_rows for p in pieces]
    assert max(sizes) - min(sizes) <= 1
    assert [p["row"].to_pylist() for p in random_partition(table, n, seed, index)] == \
        [p["row"].to_pylist() for p in pieces]


def test_random_pieces_depend_on_seed_and_index_and_spread_the_remainder() -> None:
    table = pa.table({"row": np.arange(1000)})
    rows = lambda pieces: [p["row"].to_pylist() for p in pieces]
    base = rows(random_partition(table, 4, 7, 0))
    assert rows(random_partition(table, 4, 7, 1)) != base
    assert rows(random_partition(table, 4, 8, 0)) != base
    assert rows(random_partition(table, 4, None, 0)) != rows(random_partition(table, 4, None, 0))
    assert base[0] != sorted(base[0])  # rows are permuted, not only dealt
    small = pa.table({"row": [0, 1, 2, 3, 4]})
    bigger = [next(i for i, p in enumerate(random_partition(small, 4, 1, index)) if p.num_rows == 2)
              for index in range(4)]
    assert sorted(bigger) == [0, 1, 2, 3]  # the extra row goes to a different piece per block
    assert random_partition(table, 1, 3, 0)[0]["row"].to_pylist() != list(range(1000))
    with pytest.raises(ValueError, match=r"n=-1 must be a positive integer number of pieces"):
        random_partition(table, -1, 1, 0)
