"""Read tasks, the in-memory sources and file listing (sluice/libs/data/datasource.py, files.py)."""

from __future__ import annotations

import os

import cloudpickle
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from sluice.exceptions import InternalError
from sluice.libs.data.block import column_to_numpy
from sluice.libs.data.datasource import (
    Datasource,
    ReadTask,
    arrow_source,
    items_source,
    numpy_source,
    pandas_source,
    range_source,
)
from sluice.libs.data.files import (
    FileEntry,
    expand_paths,
    group_by_size,
    hive_partition_values,
    list_files,
)


def read_all(source: Datasource, parallelism: int = 4) -> pa.Table:
    """Every block of ``source``, each task pickled and run as a worker would."""
    tasks = [cloudpickle.loads(cloudpickle.dumps(t)) for t in source.read_tasks(parallelism)]
    return pa.concat_tables([task() for task in tasks])


# --------------------------------------------------------------------------- ReadTask


def _fails() -> pa.Table:
    raise OSError("disk on fire")


def test_read_task_pickles_and_runs():
    task = ReadTask(lambda: pa.table({"a": [1, 2]}), 2, 16, "two rows")
    again = cloudpickle.loads(cloudpickle.dumps(task))
    assert again().to_pydict() == {"a": [1, 2]}
    assert (again.num_rows, again.size_bytes, again.label) == (2, 16, "two rows")


def test_read_task_error_keeps_its_type_and_names_the_label():
    task = ReadTask(_fails, None, None, "/data/part-7.parquet")
    with pytest.raises(OSError, match="disk on fire") as info:
        task()
    assert "while reading /data/part-7.parquet" in info.value.__notes__


def test_read_task_returning_a_non_table_is_an_internal_error():
    task = ReadTask(lambda: [1, 2], None, None, "a list")
    with pytest.raises(InternalError, match="read task for a list returned list, not a pyarrow.Table"):
        task()


def test_datasource_defaults_support_no_pushdown():
    source = Datasource()
    assert source.with_columns(["a"]) is None
    assert source.with_filter(None) is None
    assert source.with_limit(3) is None
    assert (source.schema(), source.count_rows(), source.describe()) == (None, None, "Read")
    with pytest.raises(NotImplementedError, match="Datasource does not define read_tasks"):
        source.read_tasks(1)


# --------------------------------------------------------------------------- range


def test_range_splits_evenly_and_counts_without_reading():
    source = range_source(10)
    tasks = source.read_tasks(3)
    assert [t.num_rows for t in tasks] == [3, 3, 4]
    assert read_all(source, 3).column("id").to_pylist() == list(range(10))
    assert source.count_rows() == 10
    assert source.schema() == pa.schema([("id", pa.int64())])
    assert source.describe() == "Range[n=10]"


def test_range_with_fewer_rows_than_parallelism_and_zero_rows():
    assert len(range_source(2).read_tasks(8)) == 2
    empty = range_source(0).read_tasks(8)
    assert len(empty) == 1 and empty[0]().num_rows == 0
    assert empty[0]().schema == pa.schema([("id", pa.int64())])


def test_range_limit_pushdown():
    limited = range_source(1000).with_limit(5)
    assert limited.count_rows() == 5
    assert read_all(limited).column("id").to_pylist() == [0, 1, 2, 3, 4]
    assert range_source(3).with_limit(10).count_rows() == 3


@pytest.mark.parametrize("bad", [-1, 2.5, "3", True])
def test_range_rejects_bad_n(bad):
    with pytest.raises(ValueError, match=r"range\(n\) needs an int n >= 0, got"):
        range_source(bad)


def test_parallelism_must_be_positive():
    with pytest.raises(ValueError, match="parallelism=0 must be an int >= 1"):
        range_source(3).read_tasks(0)


def test_limit_must_be_non_negative():
    with pytest.raises(ValueError, match="limit=-1 must be an int >= 0"):
        range_source(3).with_limit(-1)


# --------------------------------------------------------------------------- from_items


def test_items_of_dicts_become_rows_with_missing_keys_as_nulls():
    source = items_source([{"a": 1, "b": "x"}, {"a": 2}, {"b": "z", "c": 1.5}])
    table = read_all(source, 2)
    assert table.to_pydict() == {"a": [1, 2, None], "b": ["x", None, "z"], "c": [None, None, 1.5]}
    assert source.count_rows() == 3


def test_items_of_scalars_go_in_column_item_and_split_by_parallelism():
    source = items_source(range(10))
    tasks = source.read_tasks(4)
    assert len(tasks) == 4 and sum(t.num_rows for t in tasks) == 10
    assert read_all(source, 4).column("item").to_pylist() == list(range(10))
    assert source.describe() == "FromItems[rows=10, tables=1]"


def test_items_holding_arrays_become_a_tensor_column():
    images = [np.full((2, 3), i, dtype=np.uint8) for i in range(4)]
    table = read_all(items_source([{"image": im, "label": i} for i, im in enumerate(images)]))
    assert np.array_equal(column_to_numpy(table.column("image")), np.stack(images))
    assert table.column("label").to_pylist() == [0, 1, 2, 3]


def test_items_pushdown():
    source = items_source([{"a": i, "b": -i} for i in range(6)])
    assert read_all(source.with_columns(["b"])).column_names == ["b"]
    assert read_all(source.with_limit(4)).column("a").to_pylist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match=r"column 'zz' does not exist in the FromItems data; available columns: \['a', 'b'\]"):
        source.with_columns(["zz"])


def test_items_mixing_dicts_and_values_is_rejected():
    with pytest.raises(TypeError, match=r"from_items got a mix of dicts and non-dicts \(item 1 is int, item 0 is dict\)"):
        items_source([{"a": 1}, 2])


def test_items_must_be_a_list():
    with pytest.raises(TypeError, match="from_items needs a list of items, not dict; wrap a single item in a list"):
        items_source({"a": 1})


def test_items_of_incompatible_values_name_the_column():
    with pytest.raises(TypeError, match="the values of column 'a' do not fit one Arrow type"):
        items_source([{"a": 1}, {"a": "x"}])


# --------------------------------------------------------------------------- from_pandas / from_arrow / from_numpy


def test_pandas_source_round_trips_and_drops_the_index():
    frames = [pd.DataFrame({"x": [1.5, 2.5], "s": ["a", "b"]}, index=[10, 11]),
              pd.DataFrame({"x": [3.5], "s": ["c"]})]
    source = pandas_source(frames)
    assert len(source.read_tasks(8)) == 2
    got = read_all(source).to_pandas()
    pd.testing.assert_frame_equal(got, pd.concat(frames, ignore_index=True))
    assert source.count_rows() == 3


def test_pandas_source_rejects_other_types():
    with pytest.raises(TypeError, match="from_pandas got dict at position 1; pass a pandas.DataFrame"):
        pandas_source([pd.DataFrame({"a": [1]}), {"a": [1]}])
    with pytest.raises(ValueError, match="from_pandas got an empty list; pass at least one DataFrame"):
        pandas_source([])


def test_arrow_source_keeps_one_block_per_table():
    tables = [pa.table({"a": [1, 2]}), pa.record_batch({"a": [3]})]
    source = arrow_source(tables)
    assert [t.num_rows for t in source.read_tasks(1)] == [2, 1]
    assert read_all(source).column("a").to_pylist() == [1, 2, 3]
    assert source.with_limit(2).count_rows() == 2
    with pytest.raises(TypeError, match="from_arrow got list at position 0; pass a pyarrow.Table"):
        arrow_source([[1, 2]])


def test_numpy_source_one_and_two_dimensions():
    flat = np.arange(5, dtype=np.float32)
    grid = np.arange(24, dtype=np.int64).reshape(4, 2, 3)
    assert np.array_equal(column_to_numpy(read_all(numpy_source(flat)).column("data")), flat)
    got = column_to_numpy(read_all(numpy_source([grid, grid + 100])).column("data"))
    assert np.array_equal(got, np.concatenate([grid, grid + 100]))
    matrix = np.asfortranarray(np.arange(6.0).reshape(3, 2))
    assert np.array_equal(column_to_numpy(read_all(numpy_source(matrix)).column("data")), matrix)


def test_numpy_source_rejects_scalars():
    with pytest.raises(ValueError, match=r"from_numpy got a 0-d array .* at position 0; pass an array of at least 1 dimension"):
        numpy_source(np.array(3))
    with pytest.raises(TypeError, match="from_numpy needs a numpy.ndarray or a list of them, not int"):
        numpy_source(3)


def test_in_memory_sources_pickle():
    for source in [range_source(4), items_source([1, 2]), arrow_source(pa.table({"a": [1]}))]:
        again = cloudpickle.loads(cloudpickle.dumps(source))
        assert read_all(again).equals(read_all(source))


# --------------------------------------------------------------------------- files


@pytest.fixture
def tree(tmp_path):
    """A folder with data files, markers, hidden files and a nested folder."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "_temporary").mkdir()
    files = {"a.csv": "x\n1\n", "b.CSV": "x\n22\n", "sub/c.csv": "x\n3\n", "sub/d.csv.gz": "",
             "notes.txt": "hi", "_SUCCESS": "", ".a.csv.crc": "", "_temporary/e.csv": "x\n5\n"}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def names(entries, root) -> list[str]:
    return [os.path.relpath(path, root) for path, _ in entries]


def test_folders_are_listed_recursively_skipping_hidden_and_markers(tree):
    got = expand_paths(str(tree), (".csv",))
    assert names(got, tree) == ["a.csv", "b.CSV", "sub/c.csv", "sub/d.csv.gz"]
    assert dict(got)[str(tree / "b.CSV")] == os.stat(tree / "b.CSV").st_size
    assert names(expand_paths(tree, ()), tree) == ["a.csv", "b.CSV", "notes.txt", "sub/c.csv", "sub/d.csv.gz"]
    assert names(expand_paths(str(tree), ("csv",)), tree) == names(got, tree)


def test_files_named_outright_are_read_whatever_their_suffix(tree):
    got = expand_paths([str(tree / "notes.txt"), str(tree / "a.csv")], (".csv",))
    assert names(got, tree) == ["notes.txt", "a.csv"]


def test_relative_paths_become_absolute(tree, monkeypatch):
    monkeypatch.chdir(tree)
    assert expand_paths("a.csv") == [(str(tree / "a.csv"), 4)]


def test_globs_match_files_and_folders_but_not_markers(tree):
    assert names(expand_paths(str(tree / "*.csv")), tree) == ["a.csv"]
    assert names(expand_paths(str(tree / "**" / "*.csv"), ()), tree) == ["a.csv", "sub/c.csv"]
    assert names(expand_paths(str(tree / "*"), (".csv",)), tree) == ["a.csv", "b.CSV", "notes.txt",
                                                                     "sub/c.csv", "sub/d.csv.gz"]
    assert names(expand_paths(str(tree / "_SUC*")), tree) == ["_SUCCESS"]


def test_missing_path_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"'nope/data.parquet' does not exist \(looked for .*nope/data.parquet\)"):
        expand_paths("nope/data.parquet")
    with pytest.raises(FileNotFoundError, match=r"no file or folder matches the pattern '.*/\*.parquet'"):
        expand_paths(str(tmp_path / "*.parquet"))


def test_folder_without_matching_files_names_the_paths_and_the_remedy(tree, tmp_path):
    with pytest.raises(ValueError, match=r"no file ending in .parquet under '.*' \(5 other file\(s\), e.g. 'a.csv'\); "
                                         r"pass file_extensions=None to read every file"):
        expand_paths(str(tree), (".parquet",))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "_SUCCESS").write_text("")
    with pytest.raises(ValueError, match="no files under '.*empty'"):
        expand_paths(str(empty))


def test_bad_paths_argument():
    with pytest.raises(ValueError, match="paths is an empty list"):
        expand_paths([])
    with pytest.raises(TypeError, match="paths holds 3 of type int"):
        expand_paths(["a", 3])


def test_hive_partition_values():
    assert hive_partition_values("/d/year=2024/city=New%20York/p.parquet", "/d") == {"year": "2024", "city": "New York"}
    assert hive_partition_values("/d/year=2024/p.parquet", "/d/year=2024") == {}
    assert hive_partition_values("/x=1/d/y=2/p.parquet", "") == {"x": "1", "y": "2"}
    assert hive_partition_values("/d/plain/p.parquet", "/d") == {}


def test_list_files_records_the_partition_base(tmp_path):
    (tmp_path / "k=1").mkdir()
    (tmp_path / "k=1" / "p.parquet").write_bytes(b"x")
    (entry,) = list_files(str(tmp_path))
    assert entry == FileEntry(str(tmp_path / "k=1" / "p.parquet"), 1, str(tmp_path))
    (from_glob,) = list_files(str(tmp_path / "k=*"))
    assert from_glob.base == str(tmp_path)


def test_group_by_size_groups_small_files_and_honors_parallelism():
    small = [FileEntry(f"f{i}", 10, "") for i in range(100)]
    assert [len(g) for g in group_by_size(small, 200, 1000)] == [1] * 100
    groups = group_by_size(small, 4, 1000)
    assert [len(g) for g in groups] == [25, 25, 25, 25]
    assert [len(g) for g in group_by_size(small, 4, 95)] == [9] * 11 + [1]
    big = [FileEntry(f"b{i}", 5000, "") for i in range(3)]
    assert [len(g) for g in group_by_size(big, 1, 1000)] == [1, 1, 1]
    assert [e.path for g in groups for e in g] == [e.path for e in small]
