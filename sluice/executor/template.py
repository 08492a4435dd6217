"""The worker template: a warm process that forks workers on request.

A fresh interpreter that imports the worker's modules takes a good part of a
second; a fork of one that already has takes milliseconds. The driver (or a
node daemon) starts one template, ``python -m sluice.executor.template FD
PARENT``, and asks it for each worker (:class:`~sluice.executor.process.WorkerTemplate`).
The driver never forks itself: it has threads. The template has one thread, so
fork is safe there, and it imports nothing of the user's. (numpy, which it
preloads, starts OpenBLAS threads at import; OpenBLAS's own fork handler stops
them before each fork, and the template never calls BLAS, so they do not come back.)

Its socket to the driver (FD, ``SOCK_SEQPACKET``: one message a request) carries
pickled tuples:

- driver -> template: ``(request_id, session, index, env, cwd, std_fds)``, with
  the worker's end of its socket pair and the driver's current stdout/stderr
  (those that are open; ``std_fds`` names which) passed as file descriptors;
- template -> driver: ``("ready",)`` once, then ``("spawned", request_id, pid)``
  for each fork (``("failed", request_id, why)`` if it could not fork) and
  ``("exited", request_id, exit_code)`` when it reaps a worker (the code as
  :attr:`subprocess.Popen.returncode` gives it).

A forked worker takes the driver's environment, working directory, ``sys.path``
(``SLUICE_SYS_PATH``) and stdout/stderr as they are at its request, as a worker
started directly would. The template ends at the end of file on its socket or
when the driver thread that started it ends (its parent-death signal); its
workers then get theirs.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import socket
import sys
import traceback

MAX_REQUEST = 1 << 20
"""The largest request read (the environment travels in it)."""


class Template:
    """The template's state: its socket, its base ``sys.path``, its live workers."""

    def __init__(self, control: socket.socket):
        self.control = control
        self.base_path = list(sys.path)
        self.cwd = os.getcwd()
        self.requests: dict[int, int] = {}  # pid -> request id, until reaped
        self.wake_r, self.wake_w = os.pipe()

    def serve(self) -> None:
        """Fork workers on request and report their exits, until the driver is gone."""
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # wakes the select below
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is for the driver and its workers
        self.send(("ready",))
        control = self.control.fileno()
        while True:
            ready, _, _ = select.select([control, self.wake_r], [], [])
            if self.wake_r in ready:
                os.read(self.wake_r, 4096)
                self.reap()
            if control in ready:
                data, fds, _, _ = socket.recv_fds(self.control, MAX_REQUEST, 8)
                if not data:
                    os._exit(0)  # the driver is gone (or closed us): its workers follow
                self.spawn(pickle.loads(data), fds)

    def send(self, msg: tuple) -> None:
        try:
            self.control.send(pickle.dumps(msg))
        except OSError:
            os._exit(0)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            request_id = self.requests.pop(pid, None)
            if request_id is not None:
                self.send(("exited", request_id, os.waitstatus_to_exitcode(status)))

    def spawn(self, request: tuple, fds: list[int]) -> None:
        request_id = request[0]
        me = os.getpid()
        try:
            pid = os.fork()
        except OSError as err:
            for fd in fds:
                os.close(fd)
            self.send(("failed", request_id, f"{type(err).__name__}: {err}"))
            return
        if pid == 0:
            try:
                self.become_worker(me, request, fds)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(70)  # become_worker never returns: the worker failed to start
        for fd in fds:
            os.close(fd)
        self.requests[pid] = request_id
        self.send(("spawned", request_id, pid))

    def become_worker(self, template_pid: int, request: tuple, fds: list[int]) -> None:
        """In the forked child: drop the template's state, take the driver's, serve."""
        self.control.close()  # only the template may hold it: its end of file is the driver's signal
        signal.set_wakeup_fd(-1)
        os.close(self.wake_r)
        os.close(self.wake_w)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _, session, index, env, cwd, std_fds = request
        from sluice.executor.lifeline import die_with_parent
        from sluice.executor.worker import add_driver_path, serve

        die_with_parent(template_pid, death_signal=True)  # forked by the template's one thread
        worker_fd, *passed = fds
        for target, fd in zip(std_fds, passed):
            os.dup2(fd, target)
            os.close(fd)
        os.environ.clear()
        os.environ.update(env)
        try:
            os.chdir(cwd)
        except OSError:
            pass  # the driver's directory is gone; stay where the template is
        sys.path[:] = self.base_path
        if sys.path and sys.path[0] == self.cwd:  # ``-m`` put the directory it started in first
            sys.path[0] = cwd
        add_driver_path()
        reseed_numpy()
        serve(worker_fd, session, index)


def reseed_numpy() -> None:
    """Give numpy's global generator fresh entropy, as a new interpreter would have.

    (The standard library's ``random`` reseeds itself after a fork.)
    """
    random = sys.modules.get("numpy.random")
    if random is not None:
        random.seed()


def main(argv: list[str]) -> None:
    fd, parent = int(argv[0]), int(argv[1])
    from sluice.executor.lifeline import die_with_parent

    die_with_parent(parent, death_signal=True)  # started by a thread that lives as long as we do
    control = socket.socket(fileno=fd)
    template = Template(control)
    from sluice.executor.worker import add_driver_path

    add_driver_path()
    from sluice.store import serialization

    serialization.preload_decoders()
    template.serve()


if __name__ == "__main__":
    main(sys.argv[1:])
