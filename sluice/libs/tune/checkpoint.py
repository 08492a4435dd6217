"""``tune.Checkpoint``: a directory of files a trial saved, as Ray's ``Checkpoint``.

A trainable makes one from a directory it wrote (:meth:`Checkpoint.from_directory`) and
passes it to ``tune.report``; sluice copies it into the trial's folder, so the checkpoint
a result points to outlives the trainable's temporary directory.

>>> import tempfile, pathlib
>>> d = tempfile.mkdtemp(); _ = pathlib.Path(d, "w.txt").write_text("3")
>>> with Checkpoint.from_directory(d).as_directory() as path:
...     pathlib.Path(path, "w.txt").read_text()
'3'
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator


class Checkpoint:
    """A checkpoint: the directory at ``path``."""

    def __init__(self, path: str | os.PathLike, filesystem: object = None):
        if filesystem is not None:
            raise ValueError("Checkpoint(filesystem=...) is not supported: sluice checkpoints "
                             "are local directories")
        self.path = os.fspath(path)

    @classmethod
    def from_directory(cls, path: str | os.PathLike) -> Checkpoint:
        """The checkpoint held in directory ``path``."""
        path = os.fspath(path)
        if not os.path.isdir(path):
            raise FileNotFoundError(f"Checkpoint.from_directory({path!r}): no such directory; "
                                    f"write the checkpoint's files into a directory first")
        return cls(path)

    @contextlib.contextmanager
    def as_directory(self) -> Iterator[str]:
        """The checkpoint's directory to read from (do not change it)."""
        yield self.path

    def to_directory(self, path: str | os.PathLike | None = None) -> str:
        """Copy the checkpoint to ``path`` (a new temporary directory when None); that path."""
        target = os.fspath(path) if path is not None else tempfile.mkdtemp(prefix="checkpoint-")
        shutil.copytree(self.path, target, dirs_exist_ok=True)
        return target

    def __fspath__(self) -> str:
        return self.path

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Checkpoint) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    def __repr__(self) -> str:
        return f"Checkpoint(path={self.path!r})"


def pack(path: str) -> bytes:
    """The files of directory ``path`` as one (uncompressed) tar archive: how a checkpoint
    travels between nodes through the object store, with no shared file system."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.add(path, arcname=".")
    return buffer.getvalue()


def unpack(data: bytes, path: str) -> str:
    """Write the archive :func:`pack` made into directory ``path`` (made, or replaced); it."""
    if os.path.isdir(path):
        shutil.rmtree(path)
    os.makedirs(path)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as archive:
        archive.extractall(path, filter="data")
    return path
