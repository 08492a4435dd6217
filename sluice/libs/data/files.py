"""Finding the files a read covers: paths, folders and globs to ``(path, size)`` lists.

Listing only lists and stats: no file is opened here, so planning a read of
thousands of small files costs one ``os.scandir`` per folder. Files and folders
whose names start with ``.`` or ``_`` inside a listed folder are skipped, as
pyarrow and Spark do (``_SUCCESS`` markers, ``.crc`` checksums, ``_temporary``
folders, the hidden temporary files sluice's writers use).

Hive partitions are folders named ``key=value``; :func:`hive_partition_values`
reads them from a file's path below the folder the listing started from.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol, TypeVar
from urllib.parse import unquote

# Compression suffixes a text file may carry after its format's own suffix
# ("data.csv.gz" is a CSV file); pyarrow decompresses these from the name.
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".zst", ".lz4", ".br")

_GLOB_CHARS = frozenset("*?[")


class HasSize(Protocol):
    """Anything with a ``size`` in bytes (a :class:`FileEntry`, a piece of a file)."""

    @property
    def size(self) -> int: ...


SizedT = TypeVar("SizedT", bound=HasSize)


class FileEntry(NamedTuple):
    """One listed file: absolute ``path``, ``size`` in bytes, and ``base``, the folder its
    hive partitions are read below ("" reads every folder of the path)."""

    path: str
    size: int
    base: str


def expand_paths(paths: str | os.PathLike | Sequence[str | os.PathLike],
                 suffixes: tuple[str, ...] = ()) -> list[tuple[str, int]]:
    """``(absolute path, size)`` of every file that ``paths`` names, in sorted order per input.

    Each input may be a file (read whatever its name), a folder (listed recursively,
    keeping the files whose name ends in one of ``suffixes``, optionally followed by a
    compression suffix such as ``.gz``; every file when ``suffixes`` is empty) or a glob
    pattern (``**`` recurses; the files it matches are read whatever their name, the
    folders it matches are listed like folders). A path that does not
    exist raises ``FileNotFoundError`` naming it; inputs that hold no matching file
    raise ``ValueError`` naming them.

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "a.csv").write_text("x\\n1\\n"); _ = (folder / "_SUCCESS").write_text("")
    >>> [(os.path.basename(p), size) for p, size in expand_paths(str(folder), (".csv",))]
    [('a.csv', 4)]
    """
    return [(entry.path, entry.size) for entry in list_files(paths, suffixes)]


def list_files(paths: str | os.PathLike | Sequence[str | os.PathLike],
               suffixes: tuple[str, ...] = ()) -> list[FileEntry]:
    """Like :func:`expand_paths`, with the folder each file's hive partitions hang from."""
    inputs = _normalize_inputs(paths)
    wanted = tuple(_dotted(s) for s in suffixes)
    found: list[FileEntry] = []
    skipped: list[str] = []
    for raw in inputs:
        found.extend(_list_one(raw, wanted, skipped))
    if not found:
        raise ValueError(_nothing_found_message(inputs, wanted, skipped))
    return found


def hive_partition_values(path: str, base: str) -> dict[str, str]:
    """``{key: value}`` of the ``key=value`` folders between ``base`` and the file ``path``.

    Values are URL-unquoted as Hive and pyarrow escape them. With ``base=""`` every
    folder of ``path`` counts.

    >>> hive_partition_values("/data/year=2024/city=New%20York/part-0.parquet", "/data")
    {'year': '2024', 'city': 'New York'}
    """
    folder = os.path.dirname(path)
    if base:
        relative = os.path.relpath(folder, base)
        parts = [] if relative == os.curdir else relative.split(os.sep)
    else:
        parts = folder.split(os.sep)
    values: dict[str, str] = {}
    for part in parts:
        key, sep, value = part.partition("=")
        if sep and key:
            values[unquote(key)] = unquote(value)
    return values


def group_by_size(files: Sequence[SizedT], parallelism: int, target_bytes: int) -> list[list[SizedT]]:
    """Consecutive runs of ``files``, each about ``target_bytes`` (a bigger file stands alone).

    The target shrinks so there are at least ``min(parallelism, len(files))`` runs when
    the files allow it: small files share a task, but a read never runs on fewer tasks
    than asked while there are enough files to go around.
    """
    if parallelism < 1:
        raise ValueError(f"parallelism={parallelism} must be at least 1")
    if not files:
        return []
    total = sum(f.size for f in files)
    wanted = min(parallelism, len(files))
    target = max(1, min(target_bytes, total // wanted))
    groups: list[list[SizedT]] = []
    current: list[SizedT] = []
    current_bytes = 0
    for entry in files:
        # Close the run before it would pass the target, so runs stay near the
        # target instead of doubling it when files are almost target-sized.
        if current and current_bytes + entry.size > target:
            groups.append(current)
            current, current_bytes = [], 0
        current.append(entry)
        current_bytes += entry.size
    groups.append(current)
    return groups


def describe_paths(paths: Any) -> str:
    """``paths`` shortened for one line of ``explain()`` or an error (three shown, then a count)."""
    if isinstance(paths, (list, tuple)):
        shown = [os.fspath(p) if isinstance(p, os.PathLike) else str(p) for p in paths[:3]]
        more = f" and {len(paths) - 3} more" if len(paths) > 3 else ""
        return ", ".join(shown) + more
    return os.fspath(paths) if isinstance(paths, os.PathLike) else str(paths)


def _normalize_inputs(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not isinstance(paths, Sequence):
        raise TypeError(f"paths must be a path or a list of paths, not {type(paths).__name__}")
    if not paths:
        raise ValueError("paths is an empty list; pass at least one file, folder or glob")
    inputs = []
    for p in paths:
        if not isinstance(p, (str, os.PathLike)):
            raise TypeError(f"paths holds {p!r} of type {type(p).__name__}; each path must be a str "
                            "or os.PathLike")
        text = os.fspath(p)
        text = text.removeprefix("file://")
        inputs.append(os.path.expanduser(text))
    return inputs


def _dotted(suffix: str) -> str:
    suffix = suffix.lower()
    return suffix if suffix.startswith(".") else "." + suffix


def _matches(name: str, suffixes: tuple[str, ...]) -> bool:
    if not suffixes:
        return True
    lower = name.lower()
    for compression in COMPRESSION_SUFFIXES:
        if lower.endswith(compression):
            lower = lower[: -len(compression)]
            break
    return lower.endswith(suffixes)


def _hidden(name: str) -> bool:
    return name.startswith((".", "_"))


def _list_one(raw: str, suffixes: tuple[str, ...], skipped: list[str]) -> list[FileEntry]:
    if any(c in _GLOB_CHARS for c in raw):
        return _list_glob(raw, suffixes, skipped)
    path = os.path.abspath(raw)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{raw!r} does not exist (looked for {path}); check the path, "
                                "or use a glob such as 'folder/*.parquet'") from None
    if os.path.isdir(path):
        return _walk(path, path, suffixes, skipped)
    # A file named outright is read whatever its suffix; its whole path may hold partitions.
    return [FileEntry(path, st.st_size, "")]


def _list_glob(pattern: str, suffixes: tuple[str, ...], skipped: list[str]) -> list[FileEntry]:
    pattern = os.path.abspath(pattern)
    matches = sorted(glob.glob(pattern, recursive=True))
    if not matches:
        raise FileNotFoundError(f"no file or folder matches the pattern {pattern!r}; check the "
                                "pattern, or pass the folder itself")
    base = _glob_base(pattern)
    # "out/*" must not pick up out/_SUCCESS (nor "**" a _temporary folder); a pattern
    # with a component of its own starting with "_" or "." may.
    keep_hidden = any(_hidden(part) for part in os.path.relpath(pattern, base).split(os.sep))
    found: list[FileEntry] = []
    for match in matches:
        if not keep_hidden and any(_hidden(part) for part in os.path.relpath(match, base).split(os.sep)):
            continue
        if os.path.isdir(match):
            found.extend(_walk(match, base, suffixes, skipped))
        else:
            # The pattern is the caller's own filter: the files it matches are read whatever their suffix.
            found.append(FileEntry(match, os.stat(match).st_size, base))
    return found


def _glob_base(pattern: str) -> str:
    """The folder above the first component holding a glob character."""
    parts = pattern.split(os.sep)
    for i, part in enumerate(parts):
        if any(c in _GLOB_CHARS for c in part):
            return os.sep.join(parts[:i]) or os.sep
    return os.path.dirname(pattern)


def _walk(folder: str, base: str, suffixes: tuple[str, ...], skipped: list[str]) -> list[FileEntry]:
    """Files below ``folder`` (sorted by path), iteratively so deep trees cannot overflow the stack."""
    found: list[FileEntry] = []
    pending = [folder]
    while pending:
        current = pending.pop()
        with os.scandir(current) as entries:
            for entry in entries:
                if _hidden(entry.name):
                    continue
                if entry.is_dir():
                    pending.append(entry.path)
                elif not _matches(entry.name, suffixes):
                    skipped.append(entry.path)
                else:
                    found.append(FileEntry(entry.path, entry.stat().st_size, base))
    found.sort(key=lambda f: f.path)
    return found


def _nothing_found_message(inputs: list[str], suffixes: tuple[str, ...], skipped: list[str]) -> str:
    where = ", ".join(repr(p) for p in inputs)
    if skipped:
        example = os.path.basename(skipped[0])
        return (f"no file ending in {' or '.join(suffixes)} under {where} ({len(skipped)} other "
                f"file(s), e.g. {example!r}); pass file_extensions=None to read every file")
    return f"no files under {where} (folders are empty, or hold only hidden/_-prefixed files)"
