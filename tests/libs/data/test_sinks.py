"""Writing blocks atomically with a _SUCCESS marker (sluice/libs/data/sinks.py)."""

from __future__ import annotations

import os

import cloudpickle
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from sluice.libs.data.files import expand_paths
from sluice.libs.data.parquet import ParquetSource
from sluice.libs.data.sinks import (
    SUCCESS_MARKER,
    abort_write,
    commit_write,
    prepare_write,
    read_success_marker,
    write_block,
)

BLOCK = pa.table({"k": [1, 2, 3], "x": [0.5, None, 2.5], "s": ["a", "b,c", None]})


def test_parquet_round_trip(tmp_path):
    folder = prepare_write(tmp_path / "out")
    path = write_block(BLOCK, folder, "parquet", 3, compression="zstd")
    assert path == os.path.join(folder, "part-00003.parquet")
    assert pq.read_table(path).equals(BLOCK)
    assert pq.read_metadata(path).row_group(0).column(0).compression == "ZSTD"


def test_csv_round_trip_and_options(tmp_path):
    folder = prepare_write(tmp_path)
    path = write_block(BLOCK, folder, "csv", 0)
    pd.testing.assert_frame_equal(pd.read_csv(path), BLOCK.to_pandas())
    piped = write_block(BLOCK, folder, "csv", 1, delimiter="|", include_header=False)
    with open(piped) as f:
        assert f.read().splitlines()[0] == '1|0.5|"a"'
    explicit = write_block(BLOCK, folder, "csv", 2, write_options=pacsv.WriteOptions(delimiter=";"))
    with open(explicit) as f:
        assert f.read().splitlines()[0] == '"k";"x";"s"'


def test_json_lines_round_trip(tmp_path):
    folder = prepare_write(tmp_path)
    path = write_block(BLOCK, folder, "json", 7)
    assert path.endswith("part-00007.json")
    pd.testing.assert_frame_equal(pd.read_json(path, lines=True), BLOCK.to_pandas())


def test_write_then_read_back_through_parquet_source(tmp_path):
    folder = prepare_write(tmp_path / "out")
    blocks = [pa.table({"v": np.arange(i * 10, i * 10 + 10)}) for i in range(3)]
    # Blocks are written in workers: the function and its block must pickle.
    writer = cloudpickle.loads(cloudpickle.dumps(write_block))
    paths = [writer(b, folder, "parquet", i) for i, b in enumerate(blocks)]
    marker = commit_write(folder, paths)
    assert marker == os.path.join(folder, SUCCESS_MARKER)
    assert read_success_marker(folder) == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert [p for p, _ in expand_paths(folder)] == paths
    tasks = ParquetSource(folder).read_tasks(4)
    assert pa.concat_tables([t() for t in tasks]).column("v").to_pylist() == list(range(30))


def test_failed_write_leaves_no_part_file_and_no_temporary(tmp_path):
    folder = prepare_write(tmp_path)
    nested = pa.table({"l": [[1, 2], [3]]})
    with pytest.raises(pa.ArrowInvalid):
        write_block(nested, folder, "csv", 0)
    assert os.listdir(folder) == []
    assert read_success_marker(folder) is None


def test_failed_rewrite_keeps_the_old_file_whole(tmp_path):
    folder = prepare_write(tmp_path)
    path = write_block(BLOCK, folder, "parquet", 0)
    with pytest.raises(Exception, match="(?i)compression"):
        write_block(BLOCK, folder, "parquet", 0, compression="no-such-codec")
    assert pq.read_table(path).equals(BLOCK)
    assert os.listdir(folder) == ["part-00000.parquet"]


def test_prepare_write_makes_folders_and_drops_an_old_marker(tmp_path):
    folder = prepare_write(tmp_path / "a" / "b")
    assert os.path.isdir(folder)
    commit_write(folder, [write_block(BLOCK, folder, "parquet", 0)])
    assert read_success_marker(folder) == ["part-00000.parquet"]
    prepare_write(folder)
    assert read_success_marker(folder) is None
    assert os.listdir(folder) == ["part-00000.parquet"]


def test_prepare_write_on_a_file_is_an_error(tmp_path):
    (tmp_path / "out.parquet").write_text("")
    with pytest.raises(FileExistsError, match=r"'.*out.parquet' is a file; a write goes to a folder of part files"):
        prepare_write(tmp_path / "out.parquet")


def test_abort_write_removes_parts_and_leftover_temporaries(tmp_path):
    folder = prepare_write(tmp_path)
    path = write_block(BLOCK, folder, "csv", 0)
    leftover = os.path.join(folder, ".part-00001.csv.0123.tmp")
    open(leftover, "w").close()
    assert [p for p, _ in expand_paths(folder)] == [path]
    abort_write(folder, [path])
    assert os.listdir(folder) == []


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match=r"format 'xml' is not one of \['csv', 'json', 'parquet'\]"):
        write_block(BLOCK, tmp_path, "xml", 0)
    with pytest.raises(ValueError, match="index=-1 must be an int >= 0"):
        write_block(BLOCK, tmp_path, "csv", -1)
    with pytest.raises(TypeError, match="write_block needs a pyarrow.Table, not dict"):
        write_block({"a": [1]}, tmp_path, "csv", 0)
    with pytest.raises(FileNotFoundError, match=r"folder '.*missing' does not exist; call prepare_write"):
        write_block(BLOCK, tmp_path / "missing", "csv", 0)
    with pytest.raises(FileNotFoundError, match=r"'.*part-00009.csv' is not there to commit"):
        commit_write(tmp_path, [str(tmp_path / "part-00009.csv")])
    with pytest.raises(TypeError, match="write_csv got an option pyarrow.csv.WriteOptions does not take"):
        write_block(BLOCK, tmp_path, "csv", 0, delimeter=";")
    assert os.listdir(tmp_path) == []
