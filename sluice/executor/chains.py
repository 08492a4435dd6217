"""Actor chains: a compiled Plan's run of actor calls, forwarded actor to actor.

When each call of a chain reads only the previous call's result, the values
never pass through the driver:

- **Set up once.** The first time a chain runs on a set of actor processes, the
  driver sends each of them one CHAIN_SETUP message over its pipe: the chain's
  id and its hops, each ``(address, method, args_blob, name)`` (see
  :mod:`sluice.executor.chain_table`). An actor opens its chain socket (a Unix
  datagram socket in a directory only this user can enter, made by the driver)
  on its first set-up and acknowledges each set-up on the driver's chain socket;
  until every actor of the chain has, the driver makes ordinary calls. A chain
  whose actor is replaced (restart) is set up anew under a new id.
- **Run.** Per execute the driver sends the first actor one CHAIN message (in
  order with that actor's other calls) holding the first value; each actor runs
  its hop and sends the value to the next hop's actor as one CHAIN_RELAY
  datagram; the last hop sends the result to the driver's chain socket. Per
  execute the driver sends one message and receives one.
- **Idle actors poll.** An actor process that just ran a hop expects the next
  one within microseconds, far sooner than a sleeping process wakes up, so for
  :data:`SPIN_SECONDS` after a hop it polls its chain socket and its driver pipe
  without sleeping (yielding the CPU to any other runnable process on each turn),
  then sleeps in ``poll`` on both. Ordinary calls keep arriving on the pipe and
  run in arrival order with hops, one at a time (a threaded or async actor's
  ordinary calls still run on its threads or loop).
- **Values.** A chained value up to :data:`CHAIN_INLINE_MAX` serialized bytes
  travels in the datagram (a plain int, float, str... as itself); a larger one
  in a shared-memory segment the next actor maps and then unlinks
  (``DEP_SHM_ONCE``).
- **Failures.** A hop that raises reports the error to the driver (``get``
  raises the actor's exception). An actor process that dies fails every chain
  through it with ActorDiedError (the driver sees its pipe close); a hop whose
  next actor's socket is gone reports ActorDiedError itself.

Only the local runtime forwards chains. A cluster driver and code inside a task
make ordinary calls (``submit_actor_chain`` returns None there), with the same
results, as does a chain whose actors are not all constructed yet.
"""

from __future__ import annotations

import os
import pickle
import select
import socket
import tempfile
import time
from collections import deque
from typing import Any

from sluice.exceptions import ActorDiedError, InternalError
from sluice.executor import protocol as P
from sluice.executor.calls import decode_call
from sluice.executor.chain_table import ChainTable

CHAIN_INLINE_MAX = 16 * 1024
"""Chained values up to this size travel in the hop's datagram; larger ones in shared memory.
A relay also carries the per-execute arguments of later hops (at most this many bytes, or
the driver makes ordinary calls), so a datagram stays under :data:`RELAY_MAX`."""

RELAY_MAX = 64 * 1024
"""The largest CHAIN_RELAY datagram (a longer one would be cut at the receiver)."""

RESULT_MAX = P.INLINE_MAX + 8 * 1024
"""The largest result datagram a chain's last hop sends the driver (a result inline in a
message is at most INLINE_MAX bytes; one that does not fit goes over the pipe)."""

CHAIN_DIR_PREFIX = "sluice-chains-"
"""Chain sockets live in ``{tempdir}/sluice-chains-{session}-XXXX/`` (mode 0700), one per driver."""

SPIN_SECONDS = 0.0003
"""How long an actor keeps polling (not sleeping) after a hop: the next hop of a chain
arrives within microseconds, and waking a sleeping process costs tens of them."""

SEND_RETRY_SECONDS = 0.00005
"""How long a hop waits before sending again to an actor whose socket queue is full."""


def pack_hop_args(args: tuple, kwargs: dict, slot: int | str) -> bytes:
    """Pack a hop's arguments; the chained value goes to ``slot`` (a position or keyword)."""
    packed_args, packed_kwargs = list(args), dict(kwargs)
    if isinstance(slot, int):
        packed_args[slot] = None
    else:
        packed_kwargs[slot] = None
    return pickle.dumps((packed_args, packed_kwargs, [slot]), protocol=5)


def make_chain_dir(session: str) -> str:
    """A new private directory for the chain sockets of ``session`` (removing those of
    drivers that died without removing theirs)."""
    cleanup_stale_chain_dirs()
    return tempfile.mkdtemp(prefix=f"{CHAIN_DIR_PREFIX}{session}-")


def cleanup_stale_chain_dirs() -> int:
    """Remove chain socket directories whose driver (the pid in the name) is gone."""
    from sluice.store.shm import remove_dead_drivers_dirs

    return remove_dead_drivers_dirs(CHAIN_DIR_PREFIX)


def actor_address(directory: str, index: int) -> str:
    """Where actor process ``index`` takes chain hops: a socket in the driver's chain directory."""
    return os.path.join(directory, f"c{index}")


class ChainBroken(Exception):
    """The next hop's actor process is gone (its chain socket no longer exists)."""


class ChainLink:
    """An actor process's end of its chains: its chain socket, its chain table, its polling.

    Made at the process's first CHAIN_SETUP (``directory`` and ``driver``, the
    driver's chain socket, come with it); only the process's main thread uses it.
    """

    def __init__(self, directory: str, index: int, pipe_fd: int, driver: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(actor_address(directory, index))
        self.driver = driver
        self.fd = self.sock.fileno()
        self.table = ChainTable()
        self.poller = select.poll()
        self.poller.register(self.fd, select.POLLIN)
        self.poller.register(pipe_fd, select.POLLIN)
        self.spin_until = 0.0  # poll without sleeping until then (set after each hop)

    def take(self, local: deque) -> bool:
        """Queue every relayed hop waiting on the socket, without blocking; True if any."""
        recv = self.sock.recv
        got = False
        while True:
            try:
                data = recv(RELAY_MAX, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return got
            local.append(pickle.loads(data))
            got = True

    def wait(self, local: deque) -> bool:
        """With nothing to run: wait for a relayed hop or a driver message.

        Returns True when hops were queued on ``local``, False when the driver
        pipe is readable (and no hop came).
        """
        poll = self.poller.poll
        now = time.perf_counter
        ready = poll(0)
        if not ready and now() < self.spin_until:
            until = self.spin_until
            pause = os.sched_yield
            while not ready and now() < until:
                pause()
                ready = poll(0)
        if not ready:
            ready = poll()
        for fd, _ in ready:
            if fd == self.fd:
                return self.take(local)
        return False

    def acknowledge(self, chain_id: int, index: int, local: deque) -> None:
        """Tell the driver this process knows chain ``chain_id`` and takes its hops."""
        try:
            self.send(self.driver, pickle.dumps((P.CHAIN_READY, chain_id, index)), local)
        except ChainBroken:
            pass  # the driver is shutting down

    def report(self, worker: Any, task_id: int, name: str, value: Any, return_ids: list[int],
               start: float) -> None:
        """The last hop's value: to the driver's chain socket as one datagram (over the
        pipe when it is too large, or holds refs whose counts travel on the pipe)."""
        try:
            results = worker.encode_results(name, value, return_ids)
        except Exception as err:
            worker.fail_call(task_id, name, err, start)
            return
        seconds = time.time() - start
        if not any(contained for _, _, contained in results):
            data = pickle.dumps((P.DONE, task_id, results, seconds, start), protocol=5)
            if len(data) <= RESULT_MAX:
                try:
                    self.send(self.driver, data, worker.local, RESULT_MAX)
                    return
                except ChainBroken:
                    pass  # no chain socket at the driver: the pipe always works
        worker.emit((P.DONE, task_id, results, seconds, start))

    def send(self, address: str, data: bytes, local: deque, limit: int = RELAY_MAX) -> None:
        """Send one datagram to ``address`` (at most ``limit`` bytes).

        A full queue at the receiver (it is busy) is waited out; meanwhile hops
        sent to this process are moved to ``local``, so two actors sending to each
        other never both wait. Raises ChainBroken when the receiver is gone.
        """
        if len(data) > limit:
            raise InternalError(f"a chain datagram of {len(data)} bytes exceeds its limit {limit}")
        while True:
            try:
                self.sock.sendto(data, socket.MSG_DONTWAIT, address)
                return
            except (BlockingIOError, InterruptedError):
                self.take(local)
                time.sleep(SEND_RETRY_SECONDS)
            except (ConnectionRefusedError, FileNotFoundError) as err:
                raise ChainBroken(str(err)) from None

    def close(self) -> None:
        self.sock.close()


_PLAIN = frozenset({int, float, bool, type(None)})
_PLAIN_SIZED = frozenset({str, bytes})


def hand_over(worker: Any, value: Any) -> tuple:
    """The dependency spec that carries ``value`` to the next actor of a chain.

    A small plain value travels as itself (pickled once, with the relay); other
    small values in their serialized form; a large value goes into a segment the next actor maps and then unlinks
    (DEP_SHM_ONCE): the driver never tracks it, and a session's shutdown removes
    it if the next actor died first.
    """
    kind = type(value)
    if kind in _PLAIN or (kind in _PLAIN_SIZED and len(value) <= CHAIN_INLINE_MAX):
        return (P.DEP_VALUE, value)
    from sluice.store import serialization, shm

    sobj = serialization.serialize(value)
    if sobj.nbytes <= CHAIN_INLINE_MAX:
        return (P.DEP_INLINE, serialization.to_bytes(sobj))
    name = shm.segment_name(worker.session, worker.new_object_id())
    shm.write_segment(name, sobj)
    return (P.DEP_SHM_ONCE, name)


def run_link(worker: Any, msg: tuple) -> None:
    """Run one hop of a chain on ``worker`` (an actor) and pass its value on.

    ``msg`` is the driver's ``(CHAIN, task_id, chain_id, deps, overrides, return_ids)``
    (the first hop) or a ``(CHAIN_RELAY, chain_id, task_id, index, spec, overrides,
    return_ids)`` from the previous hop's actor. ``overrides`` (None, or hop index ->
    args blob) replaces the set-up arguments of hops whose arguments change per execute.
    """
    if msg[0] == P.CHAIN:
        _, task_id, chain_id, deps, overrides, return_ids = msg
        index = 0
    else:
        _, chain_id, task_id, index, spec, overrides, return_ids = msg
        deps = [spec]
    link = worker.link
    table = link.table
    if chain_id not in table:
        return  # a relay of a chain the driver has dropped (an actor of it died): it failed
    _, method, _, name = table.hop(chain_id, index)
    start = time.time()
    try:
        if worker.actor_error is not None:
            worker.emit((P.FAILED, task_id, worker.actor_error, False, 0.0, start))
            return
        try:
            spec = deps[0]
            value = spec[1] if spec[0] == P.DEP_VALUE else worker.value_of(spec)
            if overrides and index in overrides:
                args, kwargs = decode_call(overrides[index], [value])
            else:
                args, kwargs = table.arguments(chain_id, index, value)
            value = worker.call_method(method, args, kwargs)
            if table.is_last(chain_id, index):
                link.report(worker, task_id, name, value, return_ids, start)
                return
            address = table.next_address(chain_id, index)
            data = pickle.dumps((P.CHAIN_RELAY, chain_id, task_id, index + 1, hand_over(worker, value),
                                 overrides, return_ids), protocol=5)
            link.send(address, data, worker.local)
        except ChainBroken as err:
            from sluice.store import serialization

            died = ActorDiedError(f"actor of {table.hop(chain_id, index + 1)[3]}",
                                  f"its process is gone, so the chain could not hand it the "
                                  f"value of {name} ({err})")
            worker.emit((P.FAILED, task_id, serialization.dumps(died), False, time.time() - start,
                         start))
        except worker.exit_errors:
            worker.exit_call(task_id, name, start)
        except Exception as err:
            worker.fail_call(task_id, name, err, start)
    finally:
        link.spin_until = time.perf_counter() + SPIN_SECONDS
