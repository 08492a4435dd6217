"""Reading Parquet (sluice/libs/data/parquet.py) against pandas/pyarrow on the same files.

Pushdown is proven by damage: the pages a read must skip (an unprojected
column, row groups the filter rules out, row groups after a limit, every data
page for ``count_rows``) are overwritten with garbage, so a read that touched
them would fail to decode.
"""

from __future__ import annotations

import pickle

import cloudpickle
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from sluice.libs.data.context import DataContext
from sluice.libs.data.parquet import ParquetSource


def read_all(source, parallelism: int = 4) -> pa.Table:
    """Every block of ``source``, each task pickled and run as a worker would."""
    tasks = [cloudpickle.loads(cloudpickle.dumps(t)) for t in source.read_tasks(parallelism)]
    return pa.concat_tables([task() for task in tasks])


def damage(path, row_groups=None, columns=None) -> None:
    """Overwrite the pages of ``columns`` in ``row_groups`` (default: all) with 0xFF bytes."""
    metadata = pq.read_metadata(path)
    row_groups = range(metadata.num_row_groups) if row_groups is None else row_groups
    with open(path, "r+b") as f:
        for i in row_groups:
            group = metadata.row_group(i)
            for j in range(group.num_columns):
                chunk = group.column(j)
                if columns is not None and chunk.path_in_schema not in columns:
                    continue
                start = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
                f.seek(start)
                f.write(b"\xff" * chunk.total_compressed_size)


def table_of(n: int, start: int = 0) -> pa.Table:
    keys = np.arange(start, start + n)
    return pa.table({"key": keys, "x": keys * 0.5, "s": pa.array([f"s{k}" for k in keys])})


@pytest.fixture
def folder(tmp_path):
    """Three files of 100 rows each, in row groups of 10 sorted by key."""
    root = tmp_path / "data"
    root.mkdir()
    for i in range(3):
        pq.write_table(table_of(100, i * 100), root / f"part-{i}.parquet", row_group_size=10)
    (root / "_SUCCESS").write_text("")
    return root


def test_reads_what_pandas_reads(folder):
    source = ParquetSource(str(folder))
    got = read_all(source).to_pandas()
    expected = pd.read_parquet(folder)
    pd.testing.assert_frame_equal(got, expected)
    assert source.schema() == pq.read_schema(folder / "part-0.parquet")
    assert source.count_rows() == 300
    assert source.paths == [str(folder / f"part-{i}.parquet") for i in range(3)]


def test_projection_returns_only_the_columns_in_the_order_asked(folder):
    got = read_all(ParquetSource(str(folder), columns=["x", "key"]))
    assert got.column_names == ["x", "key"]
    assert got.equals(pq.read_table(folder, columns=["x", "key"]))


def test_projection_never_reads_the_other_columns(folder):
    for path in folder.glob("*.parquet"):
        damage(path, columns={"s"})
    source = ParquetSource(str(folder))
    with pytest.raises(OSError):
        read_all(source)
    got = read_all(source.with_columns(["key", "x"]))
    assert got.column("key").to_pylist() == list(range(300))


def test_filter_skips_row_groups_by_their_statistics(folder):
    path = folder / "part-2.parquet"
    metadata = pq.read_metadata(path)
    # Keys are sorted, so only the last row group of the last file can hold key >= 295.
    assert [metadata.row_group(i).column(0).statistics.max for i in range(9)][-1] == 289
    expected = pq.read_table(folder, filters=pc.field("key") >= 295)
    for part in folder.glob("*.parquet"):
        damage(part, row_groups=range(9) if part == path else None)
    got = read_all(ParquetSource(str(folder), filter=pc.field("key") >= 295))
    assert got.equals(expected)
    assert got.column("key").to_pylist() == [295, 296, 297, 298, 299]


def test_filter_on_a_column_left_out_of_the_projection(folder):
    got = read_all(ParquetSource(str(folder), columns=["s"], filter=pc.field("x") < 2))
    assert got.to_pydict() == {"s": ["s0", "s1", "s2", "s3"]}


def test_filter_in_pyarrows_list_form(folder):
    got = read_all(ParquetSource(str(folder), columns=["key"], filter=[("key", "in", [3, 250])]))
    assert got.column("key").to_pylist() == [3, 250]


def test_pushdown_combines_filters_and_limits(folder):
    source = ParquetSource(str(folder)).with_filter(pc.field("key") > 50).with_filter(pc.field("key") < 60)
    assert read_all(source).column("key").to_pylist() == list(range(51, 60))
    assert source.count_rows() is None
    limited = source.with_limit(3)
    assert read_all(limited).column("key").to_pylist() == [51, 52, 53]
    # A filter after a limit would filter the limited rows: it cannot move into the reader.
    assert limited.with_filter(pc.field("key") > 0) is None
    assert "filter=((key > 50) and (key < 60))" in limited.describe()
    assert "limit=3" in limited.describe()


def test_limit_stops_reading_early(folder):
    for path in folder.glob("*.parquet"):
        damage(path, row_groups=range(1, 10))
    source = ParquetSource(str(folder))
    with pytest.raises(OSError):
        read_all(source)
    got = read_all(source.with_limit(5))
    # Every task stops at 5 rows: the first 5 rows are the read's first 5 rows.
    assert got.slice(0, 5).column("key").to_pylist() == [0, 1, 2, 3, 4]
    assert all(t().num_rows <= 5 for t in source.with_limit(5).read_tasks(4))
    assert source.with_limit(5).with_limit(7).count_rows() == 5


def test_limit_zero_gives_empty_blocks_with_the_schema(folder):
    blocks = [t() for t in ParquetSource(str(folder), columns=["x"]).with_limit(0).read_tasks(2)]
    assert all(b.num_rows == 0 and b.schema.names == ["x"] for b in blocks)


def test_count_rows_reads_footers_only(folder):
    for path in folder.glob("*.parquet"):
        damage(path)
    assert ParquetSource(str(folder)).count_rows() == 300


def test_thousands_of_small_files_are_planned_without_opening_them(tmp_path):
    root = tmp_path / "many"
    root.mkdir()
    pq.write_table(table_of(3), root / "part-0000.parquet")
    # Only the first file is Parquet: planning must list and stat the rest, never open them.
    for i in range(1, 2000):
        (root / f"part-{i:04d}.parquet").write_bytes(b"not parquet at all")
    source = ParquetSource(str(root))
    tasks = source.read_tasks(16)
    # Files are grouped in order to about 1/16 of the bytes each, without passing that share.
    assert 16 <= len(tasks) <= 18
    per_task = [int(t.label.rsplit("and ", 1)[1].split()[0]) + 1 for t in tasks]
    assert sum(per_task) == 2000
    assert tasks[1].size_bytes == sum(p.stat().st_size for p in sorted(root.iterdir())[per_task[0]:sum(per_task[:2])])
    with pytest.raises(ValueError, match=r"part-0001.parquet is not a readable Parquet file"):
        tasks[0]()


def test_small_files_share_tasks_until_parallelism(folder):
    assert len(ParquetSource(str(folder)).read_tasks(200)) == 3
    assert len(ParquetSource(str(folder)).read_tasks(1)) == 1
    assert read_all(ParquetSource(str(folder)), 1).equals(pq.read_table(folder))


@pytest.fixture
def small_blocks():
    context = DataContext.get_current()
    before = context.target_max_block_size
    context.target_max_block_size = 20_000
    yield
    context.target_max_block_size = before


def test_big_files_are_split_by_row_groups(tmp_path, small_blocks):
    path = tmp_path / "big.parquet"
    pq.write_table(table_of(20_000), path, row_group_size=1000, compression="none")
    assert path.stat().st_size > 2 * 20_000
    source = ParquetSource(str(path))
    tasks = source.read_tasks(2)
    assert len(tasks) > 5
    assert "(row groups 0-" in tasks[0].label
    assert read_all(source).equals(pq.read_table(path))
    assert read_all(source.with_limit(1500)).slice(0, 1500).equals(pq.read_table(path).slice(0, 1500))


def test_read_tasks_and_the_source_pickle(folder):
    source = ParquetSource(str(folder), columns=["key"], filter=pc.field("key") < 3)
    again = pickle.loads(pickle.dumps(source))
    assert read_all(again).column("key").to_pylist() == [0, 1, 2]
    assert again.describe() == source.describe()


# --------------------------------------------------------------------------- hive partitions


@pytest.fixture
def hive(tmp_path):
    """year=2020..2022 / city=<name> folders, one file each, plus a null partition."""
    root = tmp_path / "hive"
    for year in (2020, 2021, 2022):
        for city in ("Oslo", "New York"):
            part = root / f"year={year}" / f"city={city.replace(' ', '%20')}"
            part.mkdir(parents=True)
            pq.write_table(pa.table({"v": [year * 10 + len(city)] * 2}), part / "data.parquet")
    null_part = root / "year=__HIVE_DEFAULT_PARTITION__" / "city=Oslo"
    null_part.mkdir(parents=True)
    pq.write_table(pa.table({"v": [-1]}), null_part / "data.parquet")
    return root


def test_hive_partitions_become_columns(hive):
    source = ParquetSource(str(hive))
    assert source.schema() == pa.schema([("v", pa.int64()), ("year", pa.int64()), ("city", pa.string())])
    got = read_all(source)
    expected = [(year * 10 + len(city), year, city) for year in (2020, 2021, 2022)
                for city in ("New York", "New York", "Oslo", "Oslo")] + [(-1, None, "Oslo")]
    assert list(zip(*got.to_pydict().values())) == expected
    # pyarrow reads the same values (as dictionaries, without the null partition).
    theirs = pq.read_table(hive, filters=pc.field("year").is_valid()).to_pandas()
    assert sorted(zip(theirs["v"], theirs["year"].astype(int), theirs["city"].astype(str))) == sorted(expected[:-1])


def test_filter_on_partitions_drops_files_in_the_driver(hive):
    # The 2022 files are garbage: a filter that rules 2022 out must not open them.
    for path in (hive / "year=2022").rglob("*.parquet"):
        path.write_bytes(b"garbage")
    source = ParquetSource(str(hive), filter=(pc.field("year") <= 2021) & (pc.field("city") == "New York"))
    tasks = source.read_tasks(8)
    assert len(tasks) == 2
    got = read_all(source)
    assert got.to_pydict() == {"v": [20208] * 2 + [20218] * 2, "year": [2020] * 2 + [2021] * 2,
                               "city": ["New York"] * 4}
    nulls = read_all(ParquetSource(str(hive), columns=["v"], filter=pc.field("year").is_null()))
    assert nulls.to_pydict() == {"v": [-1]}


def test_filter_ruling_out_every_partition_gives_an_empty_block(hive):
    source = ParquetSource(str(hive), columns=["v", "year"], filter=pc.field("year") == 1999)
    (task,) = source.read_tasks(4)
    assert task().num_rows == 0 and task().schema.names == ["v", "year"]


def test_partition_columns_alone_and_partitioning_off(hive):
    got = read_all(ParquetSource(str(hive / "year=2021"), columns=["city"]))
    assert sorted(got.column("city").to_pylist()) == ["New York"] * 2 + ["Oslo"] * 2
    assert ParquetSource(str(hive), partitioning=None).schema().names == ["v"]


def test_partition_named_like_a_column_is_rejected(tmp_path):
    part = tmp_path / "v=1"
    part.mkdir()
    pq.write_table(pa.table({"v": [1]}), part / "a.parquet")
    with pytest.raises(ValueError, match=r"column 'v' of .*a.parquet is also a hive partition folder \(v=...\) "
                                         r"in .*; rename the folder or pass partitioning=None"):
        ParquetSource(str(tmp_path))


# --------------------------------------------------------------------------- bad input


def test_unknown_column_names_the_column_the_file_and_the_columns(folder):
    with pytest.raises(ValueError, match=r"column 'nope' does not exist in .*part-0.parquet; "
                                         r"available columns: \['key', 'x', 's'\]"):
        ParquetSource(str(folder), columns=["key", "nope"])
    with pytest.raises(ValueError, match=r"column 's' does not exist in .*part-0.parquet; available columns: \['key'\]"):
        ParquetSource(str(folder), columns=["key"]).with_columns(["s"])


def test_repeated_column_is_rejected(folder):
    with pytest.raises(ValueError, match=r"columns \['x', 'x'\] name \['x'\] more than once"):
        ParquetSource(str(folder), columns=["x", "x"])


def test_filter_on_unknown_column_or_with_wrong_types(folder):
    with pytest.raises(ValueError, match=r"filter \(zz > 1\) uses column 'zz', which does not exist in "
                                         r".*part-0.parquet; available columns: \['key', 'x', 's'\]"):
        ParquetSource(str(folder), filter=pc.field("zz") > 1)
    with pytest.raises(ValueError, match=r"filter .* does not apply to the columns of .*part-0.parquet "
                                         r"\(key: int64, x: double, s: string\): Function 'equal' has no kernel"):
        ParquetSource(str(folder), filter=pc.field("s") == 3)
    with pytest.raises(ValueError, match=r"filter \(x > 1\) uses column 'x', which does not exist in"):
        ParquetSource(str(folder), columns=["key"]).with_filter(pc.field("x") > 1)
    with pytest.raises(TypeError, match="filter must be a pyarrow.compute.Expression"):
        ParquetSource(str(folder), filter="key > 1")


def test_files_whose_types_disagree_name_both_files_and_the_column(tmp_path):
    pq.write_table(pa.table({"a": [1], "b": ["x"]}), tmp_path / "1.parquet")
    pq.write_table(pa.table({"a": ["one"], "b": ["y"]}), tmp_path / "2.parquet")
    source = ParquetSource(str(tmp_path))
    with pytest.raises(ValueError, match=r"column 'a' is int64 in .*/1.parquet but string in .*/2.parquet; "
                                         r"the files of one read must agree on column types"):
        read_all(source)
    assert read_all(source.with_columns(["b"])).column("b").to_pylist() == ["x", "y"]


def test_file_missing_a_column_names_both_files_and_the_column(tmp_path):
    pq.write_table(pa.table({"a": [1], "b": [2]}), tmp_path / "1.parquet")
    pq.write_table(pa.table({"a": [3]}), tmp_path / "2.parquet")
    source = ParquetSource(str(tmp_path))
    with pytest.raises(ValueError, match=r"column 'b' of .*/1.parquet is missing from .*/2.parquet"):
        read_all(source)
    with pytest.raises(ValueError, match=r"column 'b' of .*/1.parquet is missing from .*/2.parquet"):
        read_all(ParquetSource(str(tmp_path), columns=["a"], filter=pc.field("b") > 0))
    assert read_all(source.with_columns(["a"])).column("a").to_pylist() == [1, 3]


def test_missing_path_and_non_parquet_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"'.*/missing' does not exist"):
        ParquetSource(str(tmp_path / "missing"))
    (tmp_path / "a.parquet").write_text("hello")
    with pytest.raises(ValueError, match=r".*/a.parquet is not a readable Parquet file"):
        ParquetSource(str(tmp_path))
    with pytest.raises(ValueError, match=r"partitioning='directory' is not supported; use 'hive' or None"):
        ParquetSource(str(tmp_path), partitioning="directory")
