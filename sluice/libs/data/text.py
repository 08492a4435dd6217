"""Reading CSV, JSON-lines and plain-text files with pyarrow's readers.

Each source lists its files in the driver (names and sizes only), groups small
files into tasks of about 32 MB and reads each group in a worker. Compressed
files (``.gz``, ``.bz2``, ``.zst``, ...) are decompressed from their name. CSV
supports column pushdown through pyarrow's ``include_columns``.
"""

from __future__ import annotations

import functools
import io
import json
import re
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson

from sluice.libs.data.datasource import (
    Datasource,
    ReadTask,
    check_columns,
    check_parallelism,
)
from sluice.libs.data.files import FileEntry, describe_paths, group_by_size, list_files

# Small files are read together until a task holds about this many bytes on disk.
GROUP_TARGET_BYTES = 32 * 1024 * 1024


def _option_names(cls: type) -> frozenset[str]:
    return frozenset(n for n in dir(cls) if not n.startswith("_") and n not in ("equals", "validate"))


def _option_kwargs(cls: type, base: Any, overrides: dict[str, Any]) -> dict[str, Any]:
    """The settings of ``base`` (a ``cls`` or None) that differ from the defaults, plus ``overrides``.

    Sources keep options as these plain dicts and build the pyarrow object where it is
    used: a pickled pyarrow.csv.ParseOptions comes back with a broken invalid-row
    handler (it sets the handler to None, which pyarrow then tries to call).
    """
    if base is not None and not isinstance(base, cls):
        raise TypeError(f"expected a {cls.__module__}.{cls.__name__}, got {type(base).__name__}")
    kwargs: dict[str, Any] = {}
    if base is not None:
        default = cls()
        for name in _option_names(cls):
            value = getattr(base, name)
            if value != getattr(default, name):
                kwargs[name] = value
    kwargs.update(overrides)
    return {name: value for name, value in kwargs.items() if not (name == "invalid_row_handler" and value is None)}


def _split_options(options: dict[str, Any], classes: dict[str, type], api: str) -> dict[str, dict[str, Any]]:
    """``options`` keyword arguments sorted by the pyarrow options class that takes them."""
    sorted_options: dict[str, dict[str, Any]] = {kind: {} for kind in classes}
    for name, value in options.items():
        kind = next((k for k, cls in classes.items() if name in _option_names(cls)), None)
        if kind is None:
            known = sorted(set().union(*(_option_names(cls) for cls in classes.values())))
            raise TypeError(f"{api} got an unknown option {name!r}; options are {known}")
        sorted_options[kind][name] = value
    return sorted_options


class _FileSource(Datasource):
    """What the text formats share: listing, grouping, describing."""

    _entries: tuple[FileEntry, ...]
    _inputs: str

    def _reader(self) -> functools.partial:
        raise NotImplementedError

    def read_tasks(self, parallelism: int) -> list[ReadTask]:
        """Small files grouped to about 32 MB a task, at least ``min(parallelism, files)`` tasks."""
        check_parallelism(parallelism)
        groups = group_by_size(self._entries, parallelism, GROUP_TARGET_BYTES)
        reader = self._reader()
        return [ReadTask(functools.partial(_read_group, reader, tuple(e.path for e in group)), None,
                         sum(e.size for e in group), _label(group))
                for group in groups]

    @property
    def paths(self) -> list[str]:
        """The files this source reads (absolute paths)."""
        return [e.path for e in self._entries]

    def describe(self) -> str:
        """``ReadCSV[<paths>, N files]`` and the like."""
        return f"{self.name}[{self._inputs}, {len(self._entries)} files{self._describe_extra()}]"

    def _describe_extra(self) -> str:
        return ""

    def __repr__(self) -> str:
        return self.describe()


class CSVSource(_FileSource):
    """CSV files, folders or globs (``.csv`` files inside folders, optionally compressed).

    ``read_options``, ``parse_options`` and ``convert_options`` are pyarrow.csv's; any
    of their fields may also be given by name (``delimiter="|"``,
    ``column_names=[...]``, ``include_columns=[...]``). ``file_extensions=None``
    reads every non-hidden file of a folder.
    """

    name = "ReadCSV"

    def __init__(self, paths: Any, *, file_extensions: Sequence[str] | None = ("csv",),
                 read_options: pacsv.ReadOptions | None = None,
                 parse_options: pacsv.ParseOptions | None = None,
                 convert_options: pacsv.ConvertOptions | None = None, **options: Any):
        classes = {"read": pacsv.ReadOptions, "parse": pacsv.ParseOptions, "convert": pacsv.ConvertOptions}
        by_kind = _split_options(options, classes, "read_csv")
        self._read = _option_kwargs(pacsv.ReadOptions, read_options, by_kind["read"])
        self._parse = _option_kwargs(pacsv.ParseOptions, parse_options, by_kind["parse"])
        self._convert = _option_kwargs(pacsv.ConvertOptions, convert_options, by_kind["convert"])
        self._entries = tuple(list_files(paths, tuple(file_extensions or ())))
        self._inputs = describe_paths(paths)

    def _reader(self) -> functools.partial:
        return functools.partial(_read_csv, read=self._read, parse=self._parse, convert=self._convert)

    def schema(self) -> pa.Schema:
        """The first file's schema, inferred from its first block."""
        path = self._entries[0].path
        try:
            with pacsv.open_csv(path, **_csv_options(self._read, self._parse, self._convert)) as reader:
                return reader.schema
        except pa.ArrowInvalid as err:
            raise ValueError(f"could not read {path} as CSV: {err}") from None

    def column_names(self, *, read: bool = False) -> list[str] | None:
        """The first file's columns (its header), only when ``read`` allows opening it.

        A file of the read without one of them fails its read task anyway, so a
        column missing here is missing from the dataset.
        """
        return list(self.schema().names) if read else None

    def schema_hint(self, column: str | None, kinds: tuple[str | None, str | None]) -> str:
        """What to pass so that every file reads ``column`` (seen with types ``kinds``) alike."""
        return _csv_hint(column, kinds)

    def _describe_extra(self) -> str:
        columns = self._convert.get("include_columns")
        return f", columns={list(columns)}" if columns else ""

    def with_columns(self, columns: list[str]) -> CSVSource:
        """This read parsing only ``columns`` (pyarrow's ``include_columns``)."""
        columns = check_columns(columns, self.schema(), self._entries[0].path)
        derived = object.__new__(CSVSource)
        derived.__dict__.update(self.__dict__)
        derived._convert = {**self._convert, "include_columns": columns}
        return derived


class JSONSource(_FileSource):
    """JSON-lines files, folders or globs (``.json``/``.jsonl`` inside folders, optionally compressed).

    One JSON object per line; ``read_options``/``parse_options`` (or their fields by
    name, e.g. ``explicit_schema=``) are pyarrow.json's.
    """

    name = "ReadJSON"

    def __init__(self, paths: Any, *, file_extensions: Sequence[str] | None = ("json", "jsonl"),
                 read_options: pajson.ReadOptions | None = None,
                 parse_options: pajson.ParseOptions | None = None, **options: Any):
        classes = {"read": pajson.ReadOptions, "parse": pajson.ParseOptions}
        by_kind = _split_options(options, classes, "read_json")
        self._read = _option_kwargs(pajson.ReadOptions, read_options, by_kind["read"])
        self._parse = _option_kwargs(pajson.ParseOptions, parse_options, by_kind["parse"])
        self._entries = tuple(list_files(paths, tuple(file_extensions or ())))
        self._inputs = describe_paths(paths)

    def _reader(self) -> functools.partial:
        return functools.partial(_read_json, read=self._read, parse=self._parse)

    def column_names(self, *, read: bool = False) -> list[str] | None:
        """Never known up front: any line may add a key (a column)."""
        return None

    def schema_hint(self, column: str | None, kinds: tuple[str | None, str | None]) -> str:
        """What to pass so that every file reads ``column`` (seen with types ``kinds``) alike."""
        return _json_hint(column, kinds)

    def schema(self) -> pa.Schema:
        """The first file's schema, inferred from its first block."""
        path = self._entries[0].path
        try:
            with pajson.open_json(path, read_options=pajson.ReadOptions(**self._read),
                                  parse_options=pajson.ParseOptions(**self._parse)) as reader:
                return reader.schema
        except pa.ArrowInvalid as err:
            raise ValueError(f"could not read {path} as JSON lines: {err}") from None


class TextSource(_FileSource):
    """Text files, one row per line in column ``text`` (every non-hidden file of a folder).

    ``drop_empty_lines`` (default True, as in Ray) skips lines that are only whitespace.
    """

    name = "ReadText"

    def __init__(self, paths: Any, *, encoding: str = "utf-8", drop_empty_lines: bool = True,
                 file_extensions: Sequence[str] | None = None):
        self._encoding = encoding
        self._drop_empty_lines = drop_empty_lines
        self._entries = tuple(list_files(paths, tuple(file_extensions or ())))
        self._inputs = describe_paths(paths)

    def _reader(self) -> functools.partial:
        return functools.partial(_read_text, encoding=self._encoding, drop_empty_lines=self._drop_empty_lines)

    def schema(self) -> pa.Schema:
        """``text: string``."""
        return pa.schema([("text", pa.string())])


def _common_type(kinds: tuple[str | None, ...]) -> str:
    """The pyarrow type function that holds values of both ``kinds`` (type names)."""
    numeric = ("int", "uint", "float", "double", "halffloat", "bool")
    if all(k is not None and k.startswith(numeric) for k in kinds):
        return "float64"
    return "string"


def _csv_hint(column: str | None, kinds: tuple[str | None, ...]) -> str:
    if column is None or None in kinds:
        return ("give every file the same header, or name the columns with column_names=[...] "
                "and skip the headers (skip_rows=1)")
    kind = _common_type(kinds)
    return (f"name its type, e.g. read_csv(..., convert_options=pyarrow.csv.ConvertOptions("
            f"column_types={{{column!r}: pyarrow.{kind}()}})), or column_types={{{column!r}: "
            f"pyarrow.{kind}()}} for short")


def _json_hint(column: str | None, kinds: tuple[str | None, ...]) -> str:
    if column is not None and None not in kinds and _common_type(kinds) == "float64":
        return (f"name its type, e.g. read_json(..., explicit_schema=pyarrow.schema([({column!r}, "
                "pyarrow.float64())])); the other columns are still inferred")
    # pyarrow reads a JSON number only into a number column, a string only into a string column.
    return (f"make the values of {column!r} one JSON type in every file (e.g. write the numbers as "
            "strings); an explicit_schema cannot turn a JSON number into a string")


def _schema_difference(a: pa.Schema, b: pa.Schema) -> tuple[str, str | None, str | None] | None:
    """The first column whose type differs between ``a`` and ``b`` (None: missing there)."""
    for field in a:
        index = b.get_field_index(field.name)
        if index < 0:
            return field.name, str(field.type), None
        other = b.field(index).type
        if other != field.type and not pa.types.is_null(other) and not pa.types.is_null(field.type):
            return field.name, str(field.type), str(other)
    extra = next((f for f in b if a.get_field_index(f.name) < 0), None)
    return None if extra is None else (extra.name, None, str(extra.type))


def _read_group(reader: functools.partial, paths: tuple[str, ...]) -> pa.Table:
    tables = [reader(path) for path in paths]
    if len(tables) == 1:
        return tables[0]
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        hint = _csv_hint if reader.func is _read_csv else _json_hint
        for path, table in zip(paths[1:], tables[1:]):
            diff = _schema_difference(tables[0].schema, table.schema)
            if diff is None:
                continue
            column, first, then = diff
            how = (f"is {first} in {paths[0]} but {then} in {path}" if first and then else
                   f"is in {paths[0]} but not in {path}" if first else f"is in {path} but not in {paths[0]}")
            raise ValueError(f"column {column!r} {how}; the read infers each file's column types "
                             f"from that file alone: {hint(column, (first, then))}") from None
        raise ValueError(f"the files {paths[0]} .. {paths[-1]} do not combine into one block ({err}); "
                         "give the read explicit column types") from None


def _csv_options(read: dict, parse: dict, convert: dict) -> dict[str, Any]:
    return {"read_options": pacsv.ReadOptions(**read), "parse_options": pacsv.ParseOptions(**parse),
            "convert_options": pacsv.ConvertOptions(**convert)}


def _read_csv(path: str, *, read: dict, parse: dict, convert: dict) -> pa.Table:
    try:
        return pacsv.read_csv(path, **_csv_options(read, parse, convert))
    except pa.ArrowInvalid as err:
        raise ValueError(f"could not read {path} as CSV: {err}") from None


_TYPE_CHANGE_RE = re.compile(r"Column\(/([^)]*)\) changed from (\w+) to (\w+)")


def _read_json(path: str, *, read: dict, parse: dict) -> pa.Table:
    try:
        return pajson.read_json(path, read_options=pajson.ReadOptions(**read),
                                parse_options=pajson.ParseOptions(**parse))
    except pa.ArrowInvalid as err:
        change = _TYPE_CHANGE_RE.search(str(err))
        if change is not None:
            raise ValueError(_json_type_change(path, change.group(1).replace("/", "."), change.group(2),
                                               change.group(3), bool(parse.get("explicit_schema")))) from None
        raise ValueError(f"could not read {path} as JSON lines (one object per line): {err}") from None


def _json_type_change(path: str, column: str, was: str, becomes: str, explicit: bool) -> str:
    """The message for a column of one file whose JSON type changes from line to line."""
    lines = _lines_of_kinds(path, column, (was, becomes))
    where = (f" (line {lines[0]} holds a {was}, line {lines[1]} a {becomes})" if lines else "")
    why = ("the explicit schema says otherwise" if explicit
           else "the read takes a column's type from its first values")
    kinds = tuple("double" if kind == "number" else kind for kind in (was, becomes))
    return f"{path}: column {column!r} changes from {was} to {becomes}{where}; {why}: {_json_hint(column, kinds)}"


_JSON_KINDS = {bool: "boolean", int: "number", float: "number", str: "string", list: "array", dict: "object"}


def _lines_of_kinds(path: str, column: str, kinds: tuple[str, str], limit: int = 1_000_000
                    ) -> tuple[int, int] | None:
    """The first line where ``column`` holds a ``kinds[0]`` and the first later line where it
    holds a ``kinds[1]`` (1-based), scanning at most ``limit`` lines; None if not found."""
    first = None
    try:
        with pa.input_stream(path, compression="detect") as stream:
            for number, line in enumerate(io.TextIOWrapper(stream, encoding="utf-8"), start=1):
                if number > limit:
                    return None
                try:
                    value = json.loads(line)
                except ValueError:
                    continue
                kind = _JSON_KINDS.get(type(value.get(column))) if isinstance(value, dict) else None
                if first is None and kind == kinds[0]:
                    first = number
                elif first is not None and kind == kinds[1]:
                    return first, number
    except (OSError, UnicodeDecodeError, pa.ArrowException):
        return None
    return None


def _read_text(path: str, *, encoding: str, drop_empty_lines: bool) -> pa.Table:
    with pa.input_stream(path, compression="detect") as stream:
        data = stream.read()
    try:
        lines = data.decode(encoding).splitlines()
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not {encoding} text ({err}); pass encoding=") from None
    if drop_empty_lines:
        lines = [line for line in lines if line.strip()]
    return pa.table({"text": pa.array(lines, pa.string())})


def _label(group: list[FileEntry]) -> str:
    text = group[0].path
    if len(group) > 1:
        text += f" and {len(group) - 1} more file(s)"
    return text
