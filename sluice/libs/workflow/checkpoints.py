"""Checkpoint files: written atomically (temporary file, fsync, rename), read back writable."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from sluice.store import serialization


def safe_name(identifier: str) -> str:
    """A filesystem-safe, collision-free file name for any id (readable prefix + hash)."""
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", identifier)[:60].lstrip(".")
    return f"{readable}-{hashlib.sha256(identifier.encode()).hexdigest()[:16]}"


def write_atomically(path: Path, value: Any) -> None:
    """Write ``value`` serialized to ``path``: all of it, or (after a crash) nothing."""
    obj = serialization.serialize(value)  # before any file exists: unpicklable values leave none
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            for piece in serialization.layout_pieces(obj):  # the buffers themselves, no copy
                f.write(piece)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not every platform can open a folder.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def read_bytes(path: Path) -> bytearray:
    # A bytearray, not bytes: arrays deserialized over it come back writable.
    with open(path, "rb") as f:
        data = bytearray(os.fstat(f.fileno()).st_size)
        f.readinto(data)
    return data
