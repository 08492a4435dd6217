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
import json
import math
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator


METADATA_FILE = ".metadata.json"
"""Where a checkpoint's metadata lives in its directory (Ray's name)."""


class Checkpoint:
    """A checkpoint: the directory at ``path`` (Ray's ``Checkpoint``, shared by sluice.tune
    and sluice.train)."""

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

    def get_metadata(self) -> dict:
        """The checkpoint's metadata (a JSON-able dict kept beside its files; {} if none)."""
        try:
            with open(os.path.join(self.path, METADATA_FILE)) as f:
                return dict(json.load(f))
        except FileNotFoundError:
            return {}

    def set_metadata(self, metadata: dict) -> None:
        """Replace the checkpoint's metadata with ``metadata`` (a JSON-able dict)."""
        with open(os.path.join(self.path, METADATA_FILE), "w") as f:
            json.dump(dict(metadata), f)

    def update_metadata(self, metadata: dict) -> None:
        """Add ``metadata``'s keys to the checkpoint's metadata."""
        self.set_metadata({**self.get_metadata(), **metadata})

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


def retention_victims(kept: list[tuple[str, dict]], latest: str, num_to_keep: int | None,
                      score_attribute: str | None, score_order: str = "max"
                      ) -> list[tuple[str, dict]]:
    """Which of the ``(path, metrics)`` checkpoints ``kept`` to drop so that ``num_to_keep``
    remain: the worst by ``score_attribute`` (in ``score_order``; a missing or NaN score is
    the worst), else the oldest; never ``latest``, which a restart resumes from.

    >>> kept = [("a", {"acc": 0.9}), ("b", {"acc": 0.5}), ("c", {"acc": 0.7})]
    >>> [p for p, _ in retention_victims(kept, "c", 2, "acc")]
    ['b']
    >>> [p for p, _ in retention_victims(kept, "c", 1, None)]
    ['a', 'b']
    """
    if num_to_keep is None or len(kept) <= num_to_keep:
        return []
    if score_attribute is None:
        ranked = list(kept)  # oldest first: the newest are kept
    else:
        sign = 1.0 if score_order == "max" else -1.0

        def score(item: tuple[str, dict]) -> float:
            value = item[1].get(score_attribute)
            try:
                number = float(value)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                return -math.inf
            return sign * number if math.isfinite(number) else -math.inf
        ranked = sorted(kept, key=score)  # worst first
    victims = [item for item in ranked if item[0] != latest]
    return victims[:len(kept) - num_to_keep]
