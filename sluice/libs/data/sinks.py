"""Writing blocks to a folder of files, atomically, with a ``_SUCCESS`` marker at commit.

A write is three steps: :func:`prepare_write` in the driver makes the folder;
:func:`write_block` in a worker writes one block as ``part-{index:05d}.{ext}``;
:func:`commit_write` in the driver, once every block is written, lists the files
in ``_SUCCESS``. Each file is written under a hidden temporary name in the same
folder and renamed into place with ``os.replace``, so a reader (or a job that
fails halfway) never sees a half-written ``part-`` file, and a folder without
``_SUCCESS`` is a write that did not finish.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

SUCCESS_MARKER = "_SUCCESS"
# Format -> file extension of the files written.
EXTENSIONS = {"parquet": "parquet", "csv": "csv", "json": "json"}
_TEMP_SUFFIX = ".tmp"


def prepare_write(folder: str | os.PathLike) -> str:
    """Make ``folder`` (and its parents) and drop an earlier write's ``_SUCCESS``; its absolute path.

    Files already in the folder stay; a part file this write produces replaces the
    one of the same name.
    """
    path = os.path.abspath(os.fspath(folder))
    if os.path.exists(path) and not os.path.isdir(path):
        raise FileExistsError(f"{os.fspath(folder)!r} is a file; a write goes to a folder of part files: "
                              "pass a folder path, or remove the file")
    os.makedirs(path, exist_ok=True)
    # The old marker would vouch for a folder this write has not finished.
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(path, SUCCESS_MARKER))
    return path


def write_block(block: pa.Table, folder: str | os.PathLike, fmt: str, index: int, **opts: Any) -> str:
    """Write ``block`` to ``{folder}/part-{index:05d}.{ext}`` atomically; the path written.

    ``opts`` go to the format's writer: ``pyarrow.parquet.write_table`` (e.g.
    ``compression=``, ``row_group_size=``), ``pyarrow.csv.WriteOptions`` fields (e.g.
    ``include_header=``, ``delimiter=``) or ``pandas.DataFrame.to_json`` (JSON lines).
    """
    if fmt not in EXTENSIONS:
        raise ValueError(f"format {fmt!r} is not one of {sorted(EXTENSIONS)}")
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"index={index!r} must be an int >= 0")
    if not isinstance(block, pa.Table):
        raise TypeError(f"write_block needs a pyarrow.Table, not {type(block).__name__}")
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"folder {folder!r} does not exist; call prepare_write({folder!r}) "
                                "in the driver before writing blocks")
    name = f"part-{index:05d}.{EXTENSIONS[fmt]}"
    final = os.path.join(folder, name)
    # Hidden (leading "."), so listings skip it; unique, so retries of one block never collide.
    temp = os.path.join(folder, f".{name}.{uuid.uuid4().hex}{_TEMP_SUFFIX}")
    try:
        _WRITERS[fmt](block, temp, opts)
        os.replace(temp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temp)
        raise
    return final


def commit_write(folder: str | os.PathLike, paths: Sequence[str]) -> str:
    """Write ``{folder}/_SUCCESS`` listing the files of the write (one name a line); its path.

    Every path must exist: a missing one means a block was never written.
    """
    folder = os.path.abspath(os.fspath(folder))
    names = []
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path!r} is not there to commit; every block must be written "
                                    "before commit_write")
        names.append(os.path.relpath(os.path.abspath(path), folder))
    marker = os.path.join(folder, SUCCESS_MARKER)
    temp = os.path.join(folder, f".{SUCCESS_MARKER}.{uuid.uuid4().hex}{_TEMP_SUFFIX}")
    with open(temp, "w", encoding="utf-8") as f:
        f.write("".join(name + "\n" for name in names))
    os.replace(temp, marker)
    return marker


def abort_write(folder: str | os.PathLike, paths: Sequence[str]) -> None:
    """Remove the files a failed write produced and the temporary files it left behind."""
    folder = os.fspath(folder)
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
    with contextlib.suppress(FileNotFoundError), os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(".part-") and entry.name.endswith(_TEMP_SUFFIX):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(entry.path)


def read_success_marker(folder: str | os.PathLike) -> list[str] | None:
    """The file names a committed write listed, or ``None`` when the folder holds no ``_SUCCESS``."""
    try:
        with open(os.path.join(os.fspath(folder), SUCCESS_MARKER), encoding="utf-8") as f:
            return [line for line in f.read().splitlines() if line]
    except FileNotFoundError:
        return None


def _write_parquet(block: pa.Table, path: str, opts: dict[str, Any]) -> None:
    pq.write_table(block, path, **opts)


def _write_csv(block: pa.Table, path: str, opts: dict[str, Any]) -> None:
    options = opts.pop("write_options", None)
    if options is None:
        try:
            options = pacsv.WriteOptions(**opts)
        except TypeError as err:
            raise TypeError(f"write_csv got an option pyarrow.csv.WriteOptions does not take ({err})") from None
    elif opts:
        raise TypeError(f"write_csv got write_options and also {sorted(opts)}; pass one or the other")
    pacsv.write_csv(block, path, write_options=options)


def _write_json(block: pa.Table, path: str, opts: dict[str, Any]) -> None:
    settings = {"orient": "records", "lines": True, "date_format": "iso", "force_ascii": False, **opts}
    block.to_pandas().to_json(path, **settings)


_WRITERS: dict[str, Callable[[pa.Table, str, dict[str, Any]], None]] = {
    "parquet": _write_parquet,
    "csv": _write_csv,
    "json": _write_json,
}
