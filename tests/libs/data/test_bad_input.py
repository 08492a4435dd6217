"""Bad input fails early and clearly: the error names the file, column or stage and says what to do.

Errors raised inside tasks reach the driver as sluice TaskErrors that are also
instances of the original exception type, so ``pytest.raises(KeyError, ...)`` works
on them; every message is pinned with ``match=``.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import sluice.data as sd
from sluice.exceptions import TaskError

pytestmark = pytest.mark.usefixtures("runtime")

DF = pd.DataFrame({"x": np.arange(12), "y": np.linspace(0.0, 1.0, 12), "s": [f"v{i}" for i in range(12)]})


def two_blocks() -> sd.Dataset:
    return sd.from_pandas([DF.iloc[:6].reset_index(drop=True), DF.iloc[6:].reset_index(drop=True)])


# --------------------------------------------------------------------------- files

@pytest.mark.parametrize("read, name", [(sd.read_parquet, "gone.parquet"), (sd.read_csv, "gone.csv"),
                                        (sd.read_json, "gone.json")])
def test_a_missing_path_names_it(tmp_path, read, name):
    path = str(tmp_path / name)
    with pytest.raises(FileNotFoundError, match=rf"'{path}' does not exist.*check the path"):
        read(path).take_all()


@pytest.fixture
def parquet_file(tmp_path) -> str:
    path = str(tmp_path / "one.parquet")
    pq.write_table(pa.table({"x": [1, 2, 3], "y": [0.5, 1.5, 2.5]}), path)
    return path


def test_read_parquet_of_a_column_that_does_not_exist_names_it_and_the_file(parquet_file):
    with pytest.raises(ValueError, match=rf"column 'nope' does not exist in {parquet_file}; "
                                         r"available columns: \['x', 'y'\]"):
        sd.read_parquet(parquet_file, columns=["x", "nope"]).take_all()
    with pytest.raises(ValueError, match=r"filter \(nope > 1\) uses column 'nope', which does not exist"):
        sd.read_parquet(parquet_file, filter=pc.field("nope") > 1).take_all()


def test_parquet_files_that_disagree_on_a_column_type_name_both_files_and_the_column(tmp_path):
    first, second = str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")
    pq.write_table(pa.table({"x": [1, 2], "y": [1.0, 2.0]}), first)
    pq.write_table(pa.table({"x": ["u", "v"], "y": [3.0, 4.0]}), second)
    with pytest.raises(ValueError, match=rf"column 'x' is int64 in {first} but string in {second}; "
                                         "the files of one read must agree"):
        sd.read_parquet(str(tmp_path)).take_all()


def two_csv_files(tmp_path, second: str) -> tuple[str, str]:
    first, other = tmp_path / "1.csv", tmp_path / "2.csv"
    first.write_text("k,v\n1,10\n2,20\n")
    other.write_text(second)
    return str(first), str(other)


def test_csv_files_whose_inferred_types_differ_name_the_files_the_column_and_the_option(tmp_path):
    first, second = two_csv_files(tmp_path, "k,v\n3,ten\n4,twenty\n")
    with pytest.raises(ValueError) as info:
        sd.read_csv(str(tmp_path)).take_all()
    text = str(info.value)
    assert text.startswith(f"ReadCSV: column 'v' is int64 in {first} but string in {second}; the read "
                           "infers each file's column types from that file alone: name its type, e.g. "
                           "read_csv(..., convert_options=pyarrow.csv.ConvertOptions(column_types={'v': "
                           "pyarrow.string()}))")
    assert "batch function" not in text      # none is involved
    # The remedy the message gives works.
    rows = sd.read_csv(str(tmp_path), column_types={"v": pa.string()}).take_all()
    assert [r["v"] for r in rows] == ["10", "20", "ten", "twenty"]


def test_csv_files_of_ints_and_floats_are_told_to_read_floats(tmp_path):
    two_csv_files(tmp_path, "k,v\n3,0.5\n")
    with pytest.raises(ValueError, match=r"column 'v' is int64 in .*1.csv but double in .*2.csv; .*"
                                         r"column_types=\{'v': pyarrow.float64\(\)\}"):
        sd.read_csv(str(tmp_path)).take_all()
    assert sd.read_csv(str(tmp_path), column_types={"v": pa.float64()}).sum("v") == 30.5


def test_csv_files_with_other_headers_are_named(tmp_path):
    two_csv_files(tmp_path, "k,w\n3,4\n")
    with pytest.raises(ValueError, match=r"ReadCSV: column 'v' is in .*1.csv but not in .*2.csv; .*give every "
                                         "file the same header"):
        sd.read_csv(str(tmp_path)).take_all()


def test_csv_type_clash_behind_a_batch_function_names_the_files_and_the_function(tmp_path):
    two_csv_files(tmp_path, "k,v\n3,ten\n")
    with pytest.raises(ValueError, match=r"ReadCSV\+MapBatches\(<lambda>\): column 'v' is int64 in the block "
                                         r"of .*1.csv but string in that of .*2.csv; .*column_types=.*; or, if "
                                         r"MapBatches\(<lambda>\) made the difference"):
        sd.read_csv(str(tmp_path)).map_batches(lambda b: b).take_all()


def test_json_lines_whose_type_changes_say_so_first_naming_the_lines(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('{"a": 1, "b": "x"}\n{"a": 2, "b": "y"}\n{"a": "three", "b": "z"}\n')
    with pytest.raises(ValueError) as info:
        sd.read_json(str(path)).take_all()
    assert isinstance(info.value, TaskError)
    assert str(info.value).startswith(
        f"task ReadJSON failed: ValueError: {path}: column 'a' changes from number to string (line 1 holds "
        "a number, line 3 a string); the read takes a column's type from its first values: make the values "
        "of 'a' one JSON type in every file")


def test_json_files_of_ints_and_floats_are_told_their_schema(tmp_path):
    (tmp_path / "1.json").write_text('{"a": 1}\n')
    (tmp_path / "2.json").write_text('{"a": 0.5}\n')
    with pytest.raises(ValueError, match=r"ReadJSON: column 'a' is int64 in .*1.json but double in .*2.json; "
                                         r".*explicit_schema=pyarrow.schema\(\[\('a', pyarrow.float64\(\)\)\]\)"):
        sd.read_json(str(tmp_path)).take_all()
    assert sd.read_json(str(tmp_path), explicit_schema=pa.schema([("a", pa.float64())])).sum("a") == 1.5


# --------------------------------------------------------------------------- columns

@pytest.mark.parametrize("pushable", [True, False], ids=["into-read", "in-task"])
def test_select_columns_of_a_column_that_does_not_exist_is_a_key_error_naming_it(pushable):
    # The same call raises the same type whether or not the projection moved into the read.
    ds = two_blocks() if pushable else two_blocks().map_batches(lambda b: b, batch_format="pyarrow")
    with pytest.raises(KeyError, match=r"column 'nope' does not exist.*\['x', 'y', 's'\]"):
        ds.select_columns(["x", "nope"]).take_all()


def test_drop_and_rename_of_a_column_that_does_not_exist_name_it():
    # The columns are known: the call itself raises.
    with pytest.raises(KeyError, match=r"drop_columns\(\['nope'\]\): column 'nope' does not exist; the "
                                       r"dataset has columns \['x', 'y', 's'\]"):
        two_blocks().drop_columns("nope")
    with pytest.raises(KeyError, match=r"rename_columns\(\{'nope': 'z'\}\): column 'nope' does not exist"):
        two_blocks().rename_columns({"nope": "z"})
    # Behind a batch function they are not: the task that meets the block raises.
    opaque = two_blocks().map_batches(lambda b: b, batch_format="pyarrow")
    with pytest.raises(KeyError, match=r"DropColumns\(nope\): column 'nope' does not exist"):
        opaque.drop_columns("nope").take_all()
    with pytest.raises(KeyError, match=r"RenameColumns\(nope->z\): column 'nope' does not exist"):
        opaque.rename_columns({"nope": "z"}).take_all()


def test_groupby_or_aggregate_of_a_column_that_does_not_exist_names_it():
    with pytest.raises(KeyError, match=r"column 'nope' does not exist; the dataset has columns \['x', 'y', 's'\]"):
        two_blocks().groupby("nope").count().take_all()
    with pytest.raises(KeyError, match=r"column 'nope' does not exist"):
        two_blocks().groupby("x").sum("nope").take_all()
    with pytest.raises(KeyError, match=r"column 'nope' does not exist"):
        two_blocks().mean("nope")


def test_sort_by_a_column_that_does_not_exist_names_it():
    with pytest.raises(KeyError, match=r"sort\('nope'\): column 'nope' does not exist"):
        two_blocks().sort("nope")
    with pytest.raises(KeyError, match=r"sort\(nope\): column 'nope' does not exist"):
        two_blocks().map_batches(lambda b: b).sort("nope").take_all()


@pytest.mark.parametrize("build, message", [
    (lambda ds: ds.groupby("nope"), r"groupby\('nope'\): column 'nope' does not exist"),
    (lambda ds: ds.groupby(["x", "nope"]), r"groupby\(\['x', 'nope'\]\): column 'nope' does not exist"),
    (lambda ds: ds.groupby("x").sum("yy"), r"sum\(yy\): column 'yy' does not exist.* \(did you mean 'y'\?\)"),
    (lambda ds: ds.groupby("x").aggregate(sd.Mean("x"), sd.Max("nope")), r"max\(nope\): column 'nope'"),
    (lambda ds: ds.mean("nope"), r"mean\(nope\): column 'nope' does not exist"),
    (lambda ds: ds.aggregate(sd.Count(), sd.Std("nope")), r"std\(nope\): column 'nope' does not exist"),
    (lambda ds: ds.select_columns(["x"]).groupby("y"),
     r"groupby\('y'\): column 'y' does not exist; the dataset has columns \['x'\]"),
    (lambda ds: ds.rename_columns({"y": "w"}).filter(lambda r: True).limit(3).groupby("y"),
     r"column 'y' does not exist; the dataset has columns \['x', 'w', 's'\]"),
    (lambda ds: ds.groupby("x").count().groupby("x").sum("count"),
     r"sum\(count\): column 'count' does not exist; the dataset has columns \['x', 'count\(\)'\]"),
    (lambda ds: ds.filter(expr=(pc.field("x") > 1) & (pc.field("nope") < 2)),
     r"filter\(expr=\(\(x > 1\) and \(nope < 2\)\)\): column 'nope' does not exist"),
], ids=["key", "one-of-keys", "on", "one-of-aggs", "mean", "global-aggregate", "after-select",
        "after-rename", "after-aggregate", "filter-expression"])
def test_a_missing_column_is_refused_by_the_call_that_names_it_before_anything_runs(build, message):
    ds = two_blocks()
    with pytest.raises(ValueError, match=message) as info:   # a ValueError, as Ray Data raises
        build(ds)
    assert isinstance(info.value, KeyError) and not isinstance(info.value, TaskError)
    assert ds._last is None   # nothing ran


def test_a_missing_column_of_a_parquet_read_is_refused_from_its_footer(parquet_file):
    ds = sd.read_parquet(parquet_file)
    with pytest.raises(ValueError, match=r"groupby\('nope'\): column 'nope' does not exist; the dataset "
                                         r"has columns \['x', 'y'\]"):
        ds.groupby("nope")
    with pytest.raises(ValueError, match=r"sum\(z\): column 'z' does not exist"):
        ds.sum("z")
    assert ds._last is None


def test_a_missing_column_of_a_csv_read_is_refused_at_compile_from_its_header(tmp_path):
    (tmp_path / "a.csv").write_text("k,v\n1,2\n")
    ds = sd.read_csv(str(tmp_path)).groupby("nope").count()   # building reads no file
    with pytest.raises(ValueError, match=r"Aggregate\(nope: count\(\)\): column 'nope' does not exist; "
                                         r"the dataset has columns \['k', 'v'\]") as info:
        ds.take_all()
    assert not isinstance(info.value, TaskError) and ds._last is None   # raised before any task


def test_json_columns_are_not_guessed_from_the_first_lines(tmp_path):
    # A key may first appear on any line: the plan does not refuse it up front.
    (tmp_path / "a.json").write_text('{"k": 1}\n{"k": 2, "late": 5}\n')
    assert sd.read_json(str(tmp_path)).groupby("late").count().take_all() == [
        {"late": 5, "count()": 1}]


def test_sum_of_a_string_column_names_the_column_and_its_type():
    with pytest.raises(TypeError, match=r"sum\(s\) needs a numeric column, but column 's' has type"):
        two_blocks().sum("s")


# --------------------------------------------------------------------------- what user functions return

def returns_list(batch):
    return [1, 2]


def returns_int(batch):
    return 3


def switch_columns(batch):
    return {"a": batch["x"]} if batch["x"][0] == 0 else {"b": batch["x"]}


def switch_types(batch):
    return {"a": batch["x"]} if batch["x"][0] == 0 else {"a": batch["x"].astype(str)}


@pytest.mark.parametrize("fn, what", [(returns_list, "list"), (returns_int, "int")])
def test_a_batch_function_returning_the_wrong_type_names_the_stage(fn, what):
    with pytest.raises(TypeError, match=rf"MapBatches\({fn.__name__}\) returned {what}; a batch function "
                                        "must return a pyarrow.Table, a pandas.DataFrame or a dict"):
        two_blocks().map_batches(fn).take_all()
    with pytest.raises(TaskError, match=rf"stage FromPandas\+MapBatches\({fn.__name__}\), block 0"):
        two_blocks().map_batches(fn).take_all()


def message_and_trace(fn) -> tuple[str, str]:
    """What a user reads first when ``fn`` fails in a batch, and the traceback after it."""
    with pytest.raises(TaskError) as info:
        two_blocks().map_batches(fn).take_all()
    text = str(info.value)
    head, _, trace = text.partition("Traceback (most recent call last):")
    return head, trace


def ragged(batch):
    return {"a": batch["x"], "b": batch["x"][:2]}


def scalar_column(batch):
    return {"a": 3}


def divides_by_a_missing_column(batch):
    return {"x": batch["x"] / batch["nope"]}


@pytest.mark.parametrize("fn, first", [
    (returns_list, "TypeError: MapBatches(returns_list) returned list; a batch function must return a "
                   "pyarrow.Table, a pandas.DataFrame or a dict"),
    (ragged, "ValueError: MapBatches(ragged) returned columns of different lengths {'a': 6, 'b': 2}; "
             "every column of a batch must have one value per row"),
    (scalar_column, "TypeError: MapBatches(scalar_column) returned column 'a' as int (3), which is not a "
                    "column"),
    (divides_by_a_missing_column, "KeyError: 'nope'"),
], ids=["wrong-type", "ragged", "scalar-column", "user-error"])
def test_a_batch_function_error_reads_as_one_message_first_then_the_worker_traceback(fn, first):
    head, trace = message_and_trace(fn)
    assert head.startswith(f"task FromPandas+MapBatches({fn.__name__}) failed: {first}")
    assert f"in sluice.data stage FromPandas+MapBatches({fn.__name__}), block 0" in head
    assert len(head) < 400          # the message, not internals, comes first
    assert trace                    # and the worker's traceback follows it
    assert "sluice/libs/data/transforms.py" not in trace   # sluice's frames above the user's are cut


def test_a_batch_function_error_shows_the_users_frame_first():
    _, trace = message_and_trace(divides_by_a_missing_column)
    frames = [line for line in trace.splitlines() if line.startswith('  File "')]
    users = [i for i, line in enumerate(frames) if "divides_by_a_missing_column" in line]
    assert users and all("sluice/libs" not in line for line in frames[:users[0]])


def test_a_row_function_returning_values_of_two_types_names_the_key():
    with pytest.raises(TypeError, match=r"Map\(<lambda>\) returned rows whose values for 'v' do not fit one "
                                        "type"):
        two_blocks().map(lambda r: {"k": 1, "v": r["x"] if r["x"] < 3 else "many"}).take_all()


def test_a_row_function_returning_the_wrong_type_names_the_stage():
    with pytest.raises(TypeError, match=r"Map\(returns_int\) returned a row of type int \(3\)"):
        two_blocks().map(returns_int).take_all()
    with pytest.raises(TypeError, match=r"FlatMap\(<lambda>\) returned dict; a flat_map function must "
                                        "return a list of row dicts"):
        two_blocks().flat_map(lambda r: {"a": 1}).take_all()
    with pytest.raises(TypeError, match=r"map_groups\(returns_int\) returned int"):
        two_blocks().groupby("x").map_groups(returns_int).take_all()


def test_add_column_returning_the_wrong_number_of_values_names_the_column():
    with pytest.raises(ValueError, match=r"AddColumn\(z\): the function returned 1 values for a batch of 6 rows"):
        two_blocks().add_column("z", lambda df: [1]).take_all()


def test_a_batch_function_returning_other_columns_for_another_block_names_the_stage():
    with pytest.raises(ValueError, match=r"stage FromPandas\+MapBatches\(switch_columns\) produced blocks with "
                                         r"different columns: \{a: int64\} and then \{b: int64\}"):
        two_blocks().map_batches(switch_columns).take_all()


def test_a_batch_function_returning_other_column_types_for_another_block_names_the_stage():
    with pytest.raises(ValueError, match=r"MapBatches\(switch_types\).*int64.*string"):
        two_blocks().map_batches(switch_types).take_all()


class BrokenAtBirth:
    def __init__(self, setting: str):
        raise KeyError(f"missing setting {setting}")

    def __call__(self, batch):
        return batch


def test_a_callable_class_whose_constructor_raises_reaches_the_driver_as_its_error():
    with pytest.raises(KeyError, match=r"missing setting host"):
        two_blocks().map_batches(BrokenAtBirth, concurrency=1, fn_constructor_args=("host",)).take_all()


# --------------------------------------------------------------------------- bad arguments

def test_bad_batch_formats_are_refused_when_called():
    pattern = r"batch_format='xml' is not one of \['pyarrow', 'pandas', 'numpy', 'default'\]"
    ds = two_blocks()
    with pytest.raises(ValueError, match=pattern):
        ds.map_batches(returns_list, batch_format="xml")
    with pytest.raises(ValueError, match=pattern):
        ds.add_column("z", len, batch_format="xml")
    with pytest.raises(ValueError, match=pattern):
        ds.groupby("x").map_groups(returns_list, batch_format="xml")
    with pytest.raises(ValueError, match=pattern):
        ds.take_batch(3, batch_format="xml")
    with pytest.raises(ValueError, match=pattern):
        next(ds.iter_batches(batch_format="xml"))


def test_bad_counts_and_sizes_are_refused_when_called():
    ds = two_blocks()
    with pytest.raises(ValueError, match=r"limit\(-1\): give a row count, an int >= 0"):
        ds.limit(-1)
    with pytest.raises(ValueError, match=r"limit\(-1\)"):
        ds.take(-1)
    with pytest.raises(ValueError, match=r"repartition\(0\): give a block count, an int >= 1"):
        ds.repartition(0)
    with pytest.raises(ValueError, match=r"map_batches\(batch_size=0\): give a positive int, or None"):
        ds.map_batches(returns_list, batch_size=0)
    with pytest.raises(ValueError, match=r"range\(-1\): give a row count"):
        sd.range(-1)


def test_iter_batches_refuses_a_batch_size_of_zero():
    with pytest.raises(ValueError, match=r"batch_size=0"):
        next(two_blocks().iter_batches(batch_size=0))


def test_an_actor_pool_of_zero_actors_is_refused():
    with pytest.raises(ValueError, match=r"map_batches\(concurrency=0\): give the number of actors"):
        two_blocks().map_batches(BrokenAtBirth, concurrency=0)


def test_filter_needs_exactly_one_of_a_function_and_an_expression():
    ds = two_blocks()
    with pytest.raises(TypeError, match=r"filter takes either a row function or expr=<pyarrow.compute expression>"):
        ds.filter()
    with pytest.raises(TypeError, match=r"filter takes either a row function or expr="):
        ds.filter(lambda r: True, expr=pc.field("x") > 1)
    with pytest.raises(TypeError, match=r"filter\(expr='x > 1'\): give a pyarrow.compute expression"):
        ds.filter(expr="x > 1")


def test_other_bad_arguments_say_what_to_pass():
    ds = two_blocks()
    with pytest.raises(TypeError, match=r"map takes a function \(or a callable class\), not str"):
        ds.map("x")
    with pytest.raises(TypeError, match=r"map_batches: unknown option\(s\) \['cpus'\]"):
        ds.map_batches(returns_list, cpus=1)
    with pytest.raises(TypeError, match=r"fn_constructor_args are for a callable class"):
        ds.map_batches(returns_list, fn_constructor_args=(1,))
    with pytest.raises(TypeError, match=r"rename_columns\(\['a'\]\): give a dict"):
        ds.rename_columns(["a"])
    with pytest.raises(ValueError, match=r"sort needs at least one key column"):
        ds.sort([])
    with pytest.raises(ValueError, match=r"aggregate needs at least one aggregate"):
        ds.groupby("x").aggregate()
    with pytest.raises(TypeError, match=r"union takes Datasets, not DataFrame"):
        ds.union(DF)


# --------------------------------------------------------------------------- writes

def fail_past_ten(batch: dict) -> dict:
    if batch["id"].max() >= 10:
        raise RuntimeError(f"boom at id {batch['id'].max()}")
    return batch


def test_a_write_that_fails_midway_leaves_no_success_marker(tmp_path):
    out = tmp_path / "out"
    sd.range(8).write_parquet(str(out))  # an earlier complete write into the same folder
    assert (out / "_SUCCESS").exists()
    with pytest.raises(RuntimeError, match=r"boom at id \d+"):
        sd.range(40).map_batches(fail_past_ten).write_parquet(str(out))
    assert not (out / "_SUCCESS").exists()


def test_a_write_that_fails_midway_removes_the_files_it_wrote(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match=r"boom at id \d+"):
        sd.range(40).map_batches(fail_past_ten).write_parquet(str(out))
    assert sorted(os.listdir(out)) == []
