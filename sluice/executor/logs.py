"""Worker output: each worker's stdout and stderr in files of the session's log folder, and
the monitor that shows their lines at the driver as they are written, as Ray does.

A worker points its file descriptors 1 and 2 at ``worker-{index}-{pid}.out`` / ``.err``
under :func:`log_dir` when it starts (so what C code and child processes write lands
there too). Its Python ``sys.stdout``/``sys.stderr`` note which task or actor writes: on
the first write after the name changed, a marker line (:data:`MARK` + name) goes first.
Setting the name is one assignment per task; only output pays for the marker.

The driver's :class:`LogMonitor` reads what the files gained every :data:`POLL_S` while
workers write, backing off to :data:`IDLE_POLL_S` while they are quiet (so a runtime that
prints nothing pays a few stat calls a second), takes the markers out, and hands each line
to its sink as a :class:`LogLine`; :class:`ConsolePrinter` prints them prefixed like Ray's
``(square pid=1234)``, deduplicating a line many processes print alike within
:data:`DEDUP_WINDOW_S` (``[repeated 3x across cluster]``). The files stay after the run, for
``sluice logs`` and the dashboard's logs page: the newest :data:`KEEP_SESSIONS` sessions'
folders are kept.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

MARK = "\x1esluice-name:"
"""Starts a marker line: the rest of the line is the name of what writes next."""

POLL_S = 0.05
IDLE_POLL_S = 0.4
DEDUP_WINDOW_S = 5.0
KEEP_SESSIONS = 20


def logs_root() -> Path:
    """Where the sessions' log folders live: ``$TMPDIR/sluice-{uid}/logs``."""
    return Path(tempfile.gettempdir()) / f"sluice-{os.getuid()}" / "logs"


def log_dir(session: str) -> Path:
    """The log folder of session ``session``."""
    return logs_root() / f"session_{session}"


# -- in a worker ----------------------------------------------------------------------------

class _Current:
    """The name output is attributed to (a worker's task, or its actor's class)."""

    __slots__ = ("name",)

    def __init__(self) -> None:
        self.name = ""


current = _Current()
"""Set ``current.name`` when a worker starts running something else."""


class NamedStream(io.TextIOBase):
    """A text stream that writes a marker line naming :data:`current` before the first
    write after the name changed."""

    def __init__(self, stream: TextIO):
        self._stream = stream
        self._written = ""

    def write(self, text: str) -> int:
        name = current.name
        if name != self._written:
            self._written = name
            self._stream.write(f"{MARK}{name}\n")
        return self._stream.write(text)

    def flush(self) -> None:
        self._stream.flush()

    def fileno(self) -> int:
        return self._stream.fileno()

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._stream.encoding

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def redirect_worker_output(session: str, index: int) -> None:
    """In worker ``index``: stdout and stderr to this process's files in the session's
    log folder, line by line, each write attributed to :data:`current`."""
    folder = log_dir(session)
    folder.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    sys.stdout.flush()
    sys.stderr.flush()
    for fd, suffix in ((1, "out"), (2, "err")):
        target = os.open(folder / f"worker-{index}-{pid}.{suffix}",
                         os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(target, fd)
        os.close(target)
    sys.stdout = NamedStream(io.TextIOWrapper(os.fdopen(1, "wb", closefd=False),
                                              line_buffering=True, write_through=True))
    sys.stderr = NamedStream(io.TextIOWrapper(os.fdopen(2, "wb", closefd=False),
                                              line_buffering=True, write_through=True))


# -- at the driver --------------------------------------------------------------------------

@dataclass(frozen=True)
class LogLine:
    """One line a worker wrote: its ``pid``, the task or actor ``name`` that wrote it, the
    ``stream`` (``out`` or ``err``), the ``text`` and the ``node`` (None: this machine)."""

    pid: int
    name: str
    stream: str
    text: str
    node: str | None = None
    index: int = 0                 # the worker's index (its file's name says)


_FILE = re.compile(r"worker-(\d+)-(\d+)\.(out|err)$")


class _Tail:
    __slots__ = ("path", "pid", "stream", "offset", "partial", "name", "index")

    def __init__(self, path: Path, pid: int, stream: str, index: int = 0):
        self.path = path
        self.index = index
        self.pid = pid
        self.stream = stream
        self.offset = 0
        self.partial = b""
        self.name = ""


class LogMonitor:
    """Reads new lines of the worker files in ``folder`` and gives them to ``sink`` (a
    batch at a time), on a thread, until :meth:`stop` (which reads what is left first)."""

    def __init__(self, folder: Path, sink: Callable[[list[LogLine]], None],
                 node: str | None = None, tick: Callable[[], None] | None = None):
        self.folder = folder
        self.sink = sink
        self.tick = tick  # called at every poll (the printer shows held repeats in time)
        self.node = node
        self.tails: dict[str, _Tail] = {}
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="sluice-log-monitor",
                                       daemon=True)
        self.thread.start()

    def _run(self) -> None:
        delay = POLL_S
        while not self.stopping.wait(delay):
            # Quiet files: wait twice as long each time, up to IDLE_POLL_S; output: POLL_S.
            delay = POLL_S if self.poll() else min(2 * delay, IDLE_POLL_S)

    def poll(self) -> bool:
        """Read what every file gained; hand the complete lines to the sink. Whether any
        file had grown."""
        with self.lock:
            lines, grew = self._read()
        try:
            if lines:
                self.sink(lines)
            if self.tick is not None:
                self.tick()
        except Exception:  # noqa: BLE001 - a closed terminal must not stop the monitor
            pass
        return grew

    def _read(self) -> tuple[list[LogLine], bool]:
        try:
            entries = list(os.scandir(self.folder))
        except OSError:
            return [], False
        out: list[LogLine] = []
        grew = False
        for entry in entries:
            tail = self.tails.get(entry.name)
            if tail is None:
                match = _FILE.match(entry.name)
                if match is None:
                    continue
                tail = self.tails[entry.name] = _Tail(Path(entry.path), int(match[2]), match[3],
                                                      int(match[1]))
            try:
                size = entry.stat().st_size
                if size <= tail.offset:
                    continue
                with open(tail.path, "rb") as f:
                    f.seek(tail.offset)
                    data = f.read(size - tail.offset)
            except OSError:
                continue
            grew = True
            tail.offset += len(data)
            *complete, tail.partial = (tail.partial + data).split(b"\n")
            for raw in complete:
                text = raw.decode("utf-8", "replace")
                if text.startswith(MARK):  # (a function defined in a function: its own name)
                    tail.name = text[len(MARK):].rsplit("<locals>.", 1)[-1]
                    continue
                out.append(LogLine(tail.pid, tail.name, tail.stream, text, self.node,
                                   tail.index))
        return out, grew

    def stop(self) -> None:
        """Read what is left, then stop."""
        self.stopping.set()
        self.thread.join(timeout=5)
        self.poll()


class LogCopies:
    """A cluster head's copies of its nodes' worker output: the lines nodes send up,
    written to files of ``folder`` named as on the node (``worker-{index}-{pid}.out``,
    worker indices being the cluster's), with the same marker lines, so
    :func:`log_files` and :func:`read_log` serve them from the head."""

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.names: dict[str, str] = {}  # file name -> the name its last marker gave

    def write(self, lines: list[tuple]) -> None:
        """Append ``lines`` (``(index, pid, name, stream, text)`` each) to their files."""
        by_file: dict[str, list[str]] = {}
        for index, pid, name, stream, text in lines:
            filename = f"worker-{index}-{pid}.{stream}"
            parts = by_file.setdefault(filename, [])
            if self.names.get(filename) != name:
                self.names[filename] = name
                parts.append(MARK + name)
            parts.append(text)
        for filename, parts in by_file.items():
            try:
                with open(self.folder / filename, "a", encoding="utf-8") as f:
                    f.write("\n".join(parts) + "\n")
            except OSError:
                pass  # (a full disk loses the copy; the node's own file still has it)


def _pattern(text: str) -> str:
    """A line with its words that hold digits blanked (Ray's rule for lines alike)."""
    return " ".join("*" if any(c.isdigit() for c in word) else word for word in text.split())


class ConsolePrinter:
    """Prints worker lines at the driver, ``(name pid=N)`` or ``(name pid=N, ip=NODE)``
    first; a line that other processes print alike within :data:`DEDUP_WINDOW_S` is
    held and shown once, with how many times it repeated (``SLUICE_DEDUP_LOGS=0``: no
    deduplication)."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None,
                 dedup: bool | None = None, window_s: float = DEDUP_WINDOW_S,
                 clock: Callable[[], float] = time.monotonic):
        self.out = out
        self.err = err
        self.window_s = window_s
        self.clock = clock
        self.dedup = (os.environ.get("SLUICE_DEDUP_LOGS", "1") != "0") if dedup is None \
            else dedup
        # pattern -> [first seen, first pid, repeats held, the last held line]
        self.seen: dict[str, list[Any]] = {}

    def __call__(self, lines: list[LogLine]) -> None:
        now = self.clock()
        for line in lines:
            if self.dedup and line.text.strip():
                key = f"{line.stream}:{_pattern(line.text)}"
                entry = self.seen.get(key)
                if entry is not None and now - entry[0] < self.window_s \
                        and line.pid != entry[1]:
                    entry[2] += 1
                    entry[3] = line
                    continue
                if entry is None or now - entry[0] >= self.window_s:
                    self._flush_entry(entry)
                    self.seen[key] = [now, line.pid, 0, None]
            self._print(line, "")
        self.flush_expired(now)

    def flush_expired(self, now: float | None = None) -> None:
        """Print the repeats of lines whose window has passed."""
        now = self.clock() if now is None else now
        for key in [k for k, e in self.seen.items() if now - e[0] >= self.window_s]:
            self._flush_entry(self.seen.pop(key))

    def flush_all(self) -> None:
        """Print every held repeat now (at shutdown)."""
        for entry in self.seen.values():
            self._flush_entry(entry)
        self.seen.clear()

    def _flush_entry(self, entry: list[Any] | None) -> None:
        if entry is not None and entry[2]:
            self._print(entry[3], f" [repeated {entry[2]}x across cluster]")
            entry[2] = 0

    def _print(self, line: LogLine, suffix: str) -> None:
        where = f"pid={line.pid}" + (f", ip={line.node}" if line.node else "")
        stream = (self.err or sys.stderr) if line.stream == "err" else (self.out or sys.stdout)
        stream.write(f"({line.name or 'worker'} {where}) {line.text}{suffix}\n")
        stream.flush()


def cleanup_old_logs(keep: int = KEEP_SESSIONS) -> None:
    """Remove all but the newest ``keep`` sessions' log folders."""
    try:
        folders = sorted((p for p in logs_root().iterdir() if p.name.startswith("session_")),
                         key=lambda p: p.stat().st_mtime)
    except OSError:
        return
    for old in folders[:-keep] if keep else folders:
        shutil.rmtree(old, ignore_errors=True)


def log_files(folder: Path) -> list[dict[str, Any]]:
    """The worker log files of ``folder``: name, pid, worker index, stream, size."""
    out = []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return []
    for entry in entries:
        match = _FILE.match(entry.name)
        if match is not None:
            out.append({"filename": entry.name, "worker_index": int(match[1]),
                        "pid": int(match[2]), "stream": match[3],
                        "size": entry.stat().st_size})
    return out


def read_log(folder: Path, filename: str, tail: int = -1) -> list[str]:
    """The lines of log file ``filename`` in ``folder`` (the last ``tail``; -1: all),
    markers left out; a clear error for a name that is not one of its files."""
    if not _FILE.match(filename) or "/" in filename:
        raise ValueError(f"{filename!r} is not a worker log file; list them with "
                         f"`sluice logs` (worker-INDEX-PID.out or .err)")
    path = folder / filename
    try:
        text = path.read_text("utf-8", "replace")
    except FileNotFoundError:
        raise ValueError(f"no log file {filename!r} in {folder}; list them with "
                         f"`sluice logs`") from None
    # (split on newlines only: str.splitlines() would also split at the marker's \x1e)
    lines = [line for line in text.split("\n") if not line.startswith(MARK)]
    if lines and lines[-1] == "":
        lines.pop()
    return lines if tail < 0 else lines[-tail:] if tail else []
