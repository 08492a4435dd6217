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


# --------------------------------------------------------------------------- columns

@pytest.mark.parametrize("pushable", [True, False], ids=["into-read", "in-task"])
def test_select_columns_of_a_column_that_does_not_exist_is_a_key_error_naming_it(pushable):
    # The same call raises the same type whether or not the projection moved into the read.
    ds = two_blocks() if pushable else two_blocks().map_batches(lambda b: b, batch_format="pyarrow")
    with pytest.raises(KeyError, match=r"column 'nope' does not exist.*\['x', 'y', 's'\]"):
        ds.select_columns(["x", "nope"]).take_all()


def test_drop_and_rename_of_a_column_that_does_not_exist_name_it():
    with pytest.raises(KeyError, match=r"DropColumns\(nope\): column 'nope' does not exist"):
        two_blocks().drop_columns("nope").take_all()
    with pytest.raises(KeyError, match=r"RenameColumns\(nope->z\): column 'nope' does not exist"):
        two_blocks().rename_columns({"nope": "z"}).take_all()


def test_groupby_or_aggregate_of_a_column_that_does_not_exist_names_it():
    with pytest.raises(KeyError, match=r"column 'nope' does not exist; the dataset has columns \['x', 'y', 's'\]"):
        two_blocks().groupby("nope").count().take_all()
    with pytest.raises(KeyError, match=r"column 'nope' does not exist"):
        two_blocks().groupby("x").sum("nope").take_all()
    with pytest.raises(KeyError, match=r"column 'nope' does not exist"):
        two_blocks().mean("nope")


def test_sort_by_a_column_that_does_not_exist_names_it():
    with pytest.raises(KeyError, match=r"sort\(nope\): column 'nope' does not exist"):
        two_blocks().sort("nope").take_all()


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
