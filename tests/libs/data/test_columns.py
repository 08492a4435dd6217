"""What a plan knows of its columns before it runs (no runtime: nothing here runs a task)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import sluice.data as sd
from sluice.libs.data.block import ColumnNotFoundError
from sluice.libs.data.columns import check_plan, output_columns


def columns(ds: sd.Dataset, read: bool = False) -> list[str] | None:
    return output_columns(ds._op, read=read)


ITEMS = [{"k": 1, "x": 1.0, "s": "a"}]


@pytest.mark.parametrize("build, expected", [
    (lambda ds: ds, ["k", "x", "s"]),
    (lambda ds: ds.select_columns(["s", "k"]), ["s", "k"]),
    (lambda ds: ds.drop_columns("x"), ["k", "s"]),
    (lambda ds: ds.rename_columns({"x": "y"}), ["k", "y", "s"]),
    (lambda ds: ds.add_column("z", len), ["k", "x", "s", "z"]),
    (lambda ds: ds.filter(expr=pc.field("x") > 0).limit(3).sort("k").random_shuffle(), ["k", "x", "s"]),
    (lambda ds: ds.groupby("k").aggregate(sd.Sum("x"), sd.Count()), ["k", "sum(x)", "count()"]),
    (lambda ds: ds.union(ds), ["k", "x", "s"]),
    (lambda ds: ds.map(lambda r: r), None),                 # a function hides them
    (lambda ds: ds.map_batches(lambda b: b).select_columns("k"), ["k"]),
    (lambda ds: ds.union(ds.select_columns("k")), None),    # inputs that disagree
], ids=["source", "select", "drop", "rename", "add", "row-keeping", "aggregate", "union", "map",
        "select-after-map", "union-of-others"])
def test_each_op_derives_its_columns_from_its_inputs(build, expected):
    assert columns(build(sd.from_items(ITEMS))) == expected


def test_a_parquet_read_knows_its_columns_from_the_footer(tmp_path):
    pq.write_table(pa.table({"a": [1], "b": [2]}), tmp_path / "f.parquet")
    assert columns(sd.read_parquet(str(tmp_path))) == ["a", "b"]
    assert columns(sd.read_parquet(str(tmp_path), columns=["b"])) == ["b"]


def test_a_csv_header_is_read_only_when_compiling_and_json_keys_are_never_guessed(tmp_path):
    (tmp_path / "a.csv").write_text("p,q\n1,2\n")
    (tmp_path / "a.json").write_text('{"p": 1}\n')
    csv = sd.read_csv(str(tmp_path / "a.csv"))
    assert columns(csv) is None and columns(csv, read=True) == ["p", "q"]
    assert columns(sd.read_json(str(tmp_path / "a.json")), read=True) is None


def test_check_plan_names_the_op_the_column_and_the_columns_there_are(tmp_path):
    (tmp_path / "a.csv").write_text("p,q\n1,2\n")
    ds = sd.read_csv(str(tmp_path / "a.csv")).sort("pp")
    with pytest.raises(ColumnNotFoundError, match=r"Sort\(pp\): column 'pp' does not exist; the dataset has "
                                                  r"columns \['p', 'q'\] \(did you mean 'p'\?\)"):
        check_plan(ds._op)
    check_plan(sd.read_csv(str(tmp_path / "a.csv")).sort("q")._op)   # a good plan passes
