"""Ending a process when the process that started it dies.

A worker (and the worker template, :mod:`sluice.executor.template`) must not
outlive its driver or node daemon: a worker left running its task after a
SIGKILL of the driver would run beside the retry a resumed workflow makes.
Two signals are used, whichever comes first:

- the kernel's parent-death signal (Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)``),
  set by :func:`die_with_parent`. It fires when the *thread* that forked the
  process exits, so it is only asked for where that thread lives as long as the
  process is wanted: the template's one thread for a worker, the template's own
  thread in the driver for the template. A worker started directly by a driver
  thread (which may be a short-lived user thread) does without it.
- end of file on the process's socket to its parent, seen by
  :func:`exit_on_hangup`'s thread even while the main thread runs a long task.
"""

from __future__ import annotations

import os
import select
import signal
import threading

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int, death_signal: bool) -> None:
    """End this process now unless its parent is still ``parent``; with ``death_signal``,
    also ask the kernel to SIGKILL it when the thread that forked it exits (Linux)."""
    if death_signal:
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # not Linux: the socket's end of file still ends the process
    # Checked after the prctl: a parent that died before it was set re-parented us already.
    if os.getppid() != parent:
        os._exit(0)


def exit_on_hangup(fd: int) -> None:
    """Start a daemon thread that ends this process once the peer of socket ``fd`` is gone.

    It polls for the hang-up only (no data is read), so the main thread keeps sole
    use of the socket.
    """
    thread = threading.Thread(target=_watch, args=(fd,), name="sluice-lifeline", daemon=True)
    thread.start()


def _watch(fd: int) -> None:
    poller = select.poll()
    poller.register(fd, 0)  # no events asked: POLLHUP and POLLERR are always reported
    while True:
        for _, events in poller.poll():
            if events & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
                os._exit(0)
