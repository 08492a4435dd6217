"""Starting worker processes.

Workers are never forks of the driver: the driver has threads. They are forks
of a warm, single-threaded template process (:class:`WorkerTemplate`, one per
runtime or node daemon, :mod:`sluice.executor.template`), which has imported the
worker's modules once, so a worker starts in milliseconds; or, where no template
runs, fresh interpreters (:func:`spawn_worker`). Either way the driver's
``sys.path`` travels in ``SLUICE_SYS_PATH`` so a worker can import every module
the driver can, and a worker stops when its driver dies
(:mod:`sluice.executor.lifeline`). ``SLUICE_WORKER_TEMPLATE=0`` in the
environment makes :func:`start_template` start none (every worker a fresh
interpreter), to compare or to rule the template out.
"""

from __future__ import annotations

import itertools
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection

TEMPLATE_START_S = 60.0
"""How long a spawn waits for a template to come up before starting workers directly."""


def worker_env(env_overrides: dict[str, str] | None) -> dict[str, str]:
    """The environment of a worker: the driver's now, its ``sys.path`` and ``env_overrides``."""
    env = dict(os.environ)
    env["SLUICE_SYS_PATH"] = os.pathsep.join(p for p in sys.path if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    if env_overrides:
        env.update(env_overrides)
    return env


def spawn_worker(session: str, index: int, env_overrides: dict[str, str] | None = None,
                 cwd: str | None = None, python: str | None = None
                 ) -> tuple[subprocess.Popen, Connection]:
    """Start worker ``index`` as a fresh interpreter (``python``, None: this one's) in
    ``cwd`` (None: this process's directory); returns the process and the driver's end of
    its pipe.
    (:meth:`WorkerTemplate.spawn` is the fast way.)"""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    proc = subprocess.Popen(
        [python or sys.executable, "-m", "sluice.executor.worker", str(child.fileno()), session,
         str(index),
         str(os.getpid())],
        pass_fds=(child.fileno(),),
        env=worker_env(env_overrides),
        stdin=subprocess.DEVNULL,
        cwd=cwd,
    )
    child.close()
    conn = Connection(os.dup(parent.fileno()))
    parent.close()
    return proc, conn


def start_template() -> WorkerTemplate | None:
    """A :class:`WorkerTemplate` for this process's workers, or None where
    ``SLUICE_WORKER_TEMPLATE=0`` asks for fresh interpreters (or the system has no
    sockets for one)."""
    if os.environ.get("SLUICE_WORKER_TEMPLATE", "1") == "0":
        return None
    try:
        return WorkerTemplate()
    except OSError:  # no SOCK_SEQPACKET Unix sockets here
        return None


class WorkerTemplate:
    """A template process that forks workers for this process (see :mod:`sluice.executor.template`).

    Made once per runtime (or node daemon); :meth:`spawn` is safe from any thread.
    The template is started by, and read by, a thread of its own that lives until
    :meth:`close`: the template's parent-death signal fires when that thread ends,
    so it must not be a caller's thread (which may be short-lived). Should the
    template die, workers are started directly (:func:`spawn_worker`).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.send_lock = threading.Lock()
        self.ids = itertools.count(1)
        self.ready = False
        self.dead = False
        self.pids: dict[int, int] = {}       # request id -> pid, once forked
        self.failures: dict[int, str] = {}   # request id -> why it could not fork
        self.codes: dict[int, int] = {}      # request id -> exit code, once reaped
        self.proc: subprocess.Popen | None = None
        self.sock, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.thread = threading.Thread(target=self._run, args=(child,), name="sluice-template",
                                       daemon=True)
        self.thread.start()

    def _run(self, child: socket.socket) -> None:
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sluice.executor.template", str(child.fileno()),
                 str(os.getpid())],
                pass_fds=(child.fileno(),), env=worker_env(None), stdin=subprocess.DEVNULL)
        except OSError:
            self._set_dead()
            return
        finally:
            child.close()
        try:
            while True:
                try:
                    data = self.sock.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    break
                self._note(pickle.loads(data))
        finally:  # whatever ended the loop, no answer will come: spawn directly from now on
            self._set_dead()
        self.proc.wait()  # the template exits at the end of file on its socket

    def _note(self, msg: tuple) -> None:
        with self.lock:
            if msg[0] == "spawned":
                self.pids[msg[1]] = msg[2]
            elif msg[0] == "exited":
                self.codes[msg[1]] = msg[2]
            elif msg[0] == "failed":
                self.failures[msg[1]] = msg[2]
            elif msg[0] == "ready":
                self.ready = True
            self.changed.notify_all()

    def _set_dead(self) -> None:
        with self.lock:
            self.dead = True
            self.changed.notify_all()

    def spawn(self, session: str, index: int, env_overrides: dict[str, str] | None = None,
              cwd: str | None = None) -> tuple[WorkerProcess | subprocess.Popen, Connection]:
        """Fork worker ``index`` (in ``cwd``, None: this process's directory); returns its
        process and the driver's end of its pipe."""
        with self.lock:
            came_up = self.changed.wait_for(lambda: self.ready or self.dead, TEMPLATE_START_S)
            request_id = next(self.ids)
        if not came_up:  # stuck: start workers directly from now on
            self._set_dead()
            if self.proc is not None:
                self.proc.kill()
        if self.dead:
            return spawn_worker(session, index, env_overrides, cwd)
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        std = [fd for fd in (1, 2) if fd_open(fd)]
        request = (request_id, session, index, worker_env(env_overrides), cwd or os.getcwd(), std)
        try:
            with self.send_lock:
                socket.send_fds(self.sock, [pickle.dumps(request)], [child.fileno(), *std])
        except OSError:
            parent.close()
            child.close()
            self._set_dead()
            return spawn_worker(session, index, env_overrides, cwd)
        child.close()
        with self.lock:
            self.changed.wait_for(lambda: request_id in self.pids or request_id in self.failures
                                  or self.dead)
            pid = self.pids.pop(request_id, None)
            why = self.failures.pop(request_id, None)
        if pid is None:
            parent.close()
            if why is not None:
                raise OSError(f"cannot start worker {index}: the template could not fork ({why})")
            return spawn_worker(session, index, env_overrides, cwd)
        conn = Connection(os.dup(parent.fileno()))
        parent.close()
        return WorkerProcess(pid, process_start(pid), request_id, self), conn

    def exit_code(self, request_id: int, pid: int, start: str | None, timeout: float | None
                  ) -> int | None:
        """The exit code of the worker of ``request_id``, waiting up to ``timeout`` (None:
        without limit) for it to exit; None if it is still running."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.lock:
            while True:
                code = self.codes.get(request_id)
                if code is not None:
                    return code
                if self.dead:  # no report will come; its parent-death signal is on its way
                    break
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self.changed.wait(left)
        while process_alive(pid, start):
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(0.005)
        return -signal.SIGKILL

    def forget(self, request_id: int) -> None:
        with self.lock:
            self.codes.pop(request_id, None)

    def close(self) -> None:
        """Stop the template (its owner has stopped its workers; any left die with it)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the reading thread; the template sees EOF
        except OSError:
            pass
        self.thread.join(timeout=10)
        self.sock.close()


class WorkerProcess:
    """A worker forked by a :class:`WorkerTemplate`: the part of :class:`subprocess.Popen`
    the runtime uses (``pid``, ``returncode``, ``poll``, ``wait``, ``send_signal``, ``kill``).
    Its parent is the template, which reaps it and reports its exit code."""

    def __init__(self, pid: int, start: str | None, request_id: int, template: WorkerTemplate):
        self.pid = pid
        self.start = start  # tells it apart from a later process given the same pid
        self.request_id = request_id
        self.template = template
        self.returncode: int | None = None

    def __repr__(self) -> str:
        return f"WorkerProcess(pid={self.pid}, returncode={self.returncode})"

    def poll(self) -> int | None:
        """The exit code, or None while it runs."""
        return self._code(0.0)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to exit; raises :class:`subprocess.TimeoutExpired` after ``timeout``."""
        code = self._code(timeout)
        if code is None:
            raise subprocess.TimeoutExpired(f"worker pid {self.pid}", timeout or 0.0)
        return code

    def _code(self, timeout: float | None) -> int | None:
        if self.returncode is None:
            code = self.template.exit_code(self.request_id, self.pid, self.start, timeout)
            if code is not None:
                self.returncode = code
                self.template.forget(self.request_id)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` unless it has exited (and its pid may be another process's)."""
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


def fd_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux), which tells a reused pid apart."""
    stat = proc_stat(pid)
    return stat[19] if stat is not None and len(stat) > 19 else None


def proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/{pid}/stat from the state on (index 0 = state), or None off Linux."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def process_alive(pid: int, start: str | None) -> bool:
    """Whether ``pid`` on this machine is alive and is the process that started at ``start``."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by someone else
    stat = proc_stat(pid)
    if stat is None:
        return True
    if stat[0] in ("Z", "X"):
        return False  # exited, not yet reaped by its parent
    return start is None or len(stat) <= 19 or stat[19] == start

