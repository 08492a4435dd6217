"""Reading CSV, JSON lines and text (sluice/libs/data/text.py) against pandas on the same files."""

from __future__ import annotations

import gzip

import cloudpickle
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from sluice.libs.data.text import CSVSource, JSONSource, TextSource


def read_all(source, parallelism: int = 4) -> pa.Table:
    """Every block of ``source``, each task pickled and run as a worker would."""
    tasks = [cloudpickle.loads(cloudpickle.dumps(t)) for t in source.read_tasks(parallelism)]
    return pa.concat_tables([task() for task in tasks], promote_options="permissive")


@pytest.fixture
def csv_folder(tmp_path):
    root = tmp_path / "csv"
    (root / "nested").mkdir(parents=True)
    (root / "a.csv").write_text("id,name,score\n1,ann,1.5\n2,bob,\n")
    (root / "nested" / "b.csv").write_text("id,name,score\n3,cy,2.5\n")
    with gzip.open(root / "nested" / "c.csv.gz", "wt") as f:
        f.write("id,name,score\n4,dee,4.0\n")
    (root / "_SUCCESS").write_text("")
    (root / "README.md").write_text("not data")
    return root


def test_csv_matches_pandas(csv_folder):
    source = CSVSource(str(csv_folder))
    got = read_all(source).to_pandas()
    expected = pd.concat([pd.read_csv(csv_folder / "a.csv"), pd.read_csv(csv_folder / "nested" / "b.csv"),
                          pd.read_csv(csv_folder / "nested" / "c.csv.gz")], ignore_index=True)
    pd.testing.assert_frame_equal(got, expected)
    assert source.schema() == pa.schema([("id", pa.int64()), ("name", pa.string()), ("score", pa.float64())])
    assert source.count_rows() is None
    assert source.describe().startswith(f"ReadCSV[{csv_folder}, 3 files")


def test_csv_small_files_share_a_task(csv_folder):
    assert len(CSVSource(str(csv_folder)).read_tasks(1)) == 1
    assert len(CSVSource(str(csv_folder)).read_tasks(8)) == 3


def test_csv_files_of_one_task_promote_their_types(tmp_path):
    (tmp_path / "1.csv").write_text("v\n1\n")
    (tmp_path / "2.csv").write_text("v\n2.5\n")
    (task,) = CSVSource(str(tmp_path)).read_tasks(1)
    assert task().column("v").to_pylist() == [1.0, 2.5]


def test_csv_options_by_name_or_as_pyarrow_objects(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("a|b\n1|x\n2|y\n")
    by_name = read_all(CSVSource(str(path), delimiter="|", column_types={"a": pa.float32()}))
    as_objects = read_all(CSVSource(str(path), parse_options=pacsv.ParseOptions(delimiter="|"),
                                    convert_options=pacsv.ConvertOptions(column_types={"a": pa.float32()})))
    assert by_name.equals(as_objects)
    assert by_name.schema.field("a").type == pa.float32()
    headerless = read_all(CSVSource(str(path), delimiter="|", column_names=["p", "q"]))
    assert headerless.column("p").to_pylist() == ["a", "1", "2"]


def test_csv_unknown_option_lists_the_options(tmp_path):
    with pytest.raises(TypeError, match=r"read_csv got an unknown option 'delimeter'; options are \[.*'delimiter'"):
        CSVSource(str(tmp_path), delimeter=";")


def test_csv_column_pushdown_parses_only_those_columns(csv_folder):
    source = CSVSource(str(csv_folder)).with_columns(["score", "id"])
    got = read_all(source)
    assert got.column_names == ["score", "id"]
    assert got.column("id").to_pylist() == [1, 2, 3, 4]
    assert "columns=['score', 'id']" in source.describe()
    with pytest.raises(ValueError, match=r"column 'nope' does not exist in .*a.csv; available columns: "
                                         r"\['id', 'name', 'score'\]"):
        CSVSource(str(csv_folder)).with_columns(["nope"])


def test_csv_every_file_with_extensions_off(csv_folder):
    source = CSVSource(str(csv_folder), file_extensions=None)
    assert [p.rsplit("/", 1)[1] for p in source.paths] == ["README.md", "a.csv", "b.csv", "c.csv.gz"]


def test_csv_parse_error_names_the_file(tmp_path):
    (tmp_path / "ok.csv").write_text("a,b\n1,2\n")
    (tmp_path / "bad.csv").write_text("a,b\n1,2,3\n")
    with pytest.raises(ValueError, match=r"could not read .*/bad.csv as CSV: .*Expected 2 columns, got 3"):
        read_all(CSVSource(str(tmp_path)), 1)


def test_csv_files_that_cannot_combine_are_named(tmp_path):
    (tmp_path / "1.csv").write_text("v\n1\n")
    (tmp_path / "2.csv").write_text("v\nhello\n")
    (task,) = CSVSource(str(tmp_path)).read_tasks(1)
    with pytest.raises(ValueError, match=r"column 'v' is int64 in .*/1.csv but string in .*/2.csv; the read "
                                         r"infers each file's column types from that file alone: .*"
                                         r"column_types=\{'v': pyarrow.string\(\)\}"):
        task()
    (task,) = CSVSource(str(tmp_path), column_types={"v": pa.string()}).read_tasks(1)
    assert task().column("v").to_pylist() == ["1", "hello"]


def test_csv_missing_folder_or_no_csv_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        CSVSource(str(tmp_path / "nope"))
    (tmp_path / "data.tsv").write_text("a\tb\n")
    with pytest.raises(ValueError, match=r"no file ending in .csv under .* e.g. 'data.tsv'\); pass file_extensions=None"):
        CSVSource(str(tmp_path))


def test_json_lines_match_pandas(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"k": 1, "v": "x"}\n{"k": 2, "v": null}\n')
    with gzip.open(tmp_path / "b.json.gz", "wt") as f:
        f.write('{"k": 3, "v": "z"}\n')
    source = JSONSource(str(tmp_path))
    got = read_all(source).to_pandas()
    expected = pd.concat([pd.read_json(tmp_path / "a.jsonl", lines=True),
                          pd.read_json(tmp_path / "b.json.gz", lines=True)], ignore_index=True)
    pd.testing.assert_frame_equal(got, expected)
    assert source.schema() == pa.schema([("k", pa.int64()), ("v", pa.string())])
    assert source.with_columns(["k"]) is None


def test_json_explicit_schema_by_name(tmp_path):
    (tmp_path / "a.json").write_text('{"k": 1}\n')
    got = read_all(JSONSource(str(tmp_path), explicit_schema=pa.schema([("k", pa.float64())])))
    assert got.schema.field("k").type == pa.float64()


def test_json_parse_error_names_the_file(tmp_path):
    (tmp_path / "a.json").write_text('{"k": 1}\n{"k": \n')
    with pytest.raises(ValueError, match=r"could not read .*/a.json as JSON lines \(one object per line\)"):
        read_all(JSONSource(str(tmp_path)))


def test_text_lines(tmp_path):
    (tmp_path / "a.txt").write_text("first\n\n  \nsecond\r\nthird")
    with gzip.open(tmp_path / "b.txt.gz", "wt") as f:
        f.write("fourth\n")
    assert read_all(TextSource(str(tmp_path))).column("text").to_pylist() == ["first", "second", "third", "fourth"]
    kept = read_all(TextSource(str(tmp_path / "a.txt"), drop_empty_lines=False))
    assert kept.column("text").to_pylist() == ["first", "", "  ", "second", "third"]
    assert TextSource(str(tmp_path)).schema() == pa.schema([("text", pa.string())])


def test_text_wrong_encoding_names_the_file(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"caf\xe9\n")
    with pytest.raises(ValueError, match=r".*/a.txt is not utf-8 text .*; pass encoding="):
        read_all(TextSource(str(tmp_path)))
    assert read_all(TextSource(str(tmp_path), encoding="latin-1")).column("text").to_pylist() == ["café"]


def test_csv_row_handler_travels_to_the_worker(tmp_path):
    (tmp_path / "a.csv").write_text("a,b\n1,2\n3,4,5\n6,7\n")
    source = CSVSource(str(tmp_path), parse_options=pacsv.ParseOptions(invalid_row_handler=lambda row: "skip"))
    assert read_all(source).to_pydict() == {"a": [1, 6], "b": [2, 7]}
