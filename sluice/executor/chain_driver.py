"""The driver's side of forwarded actor chains: each chain set up once on its actors.

A chain is known by its hops' ``(actor id, method, name)``. The first time it runs
on a given set of actor processes the driver gives it a fresh id and sends each
process one CHAIN_SETUP (the hops: each actor's chain socket address, method,
packed arguments and name; see :mod:`sluice.executor.chains`), and makes ordinary
calls until every process has acknowledged it (CHAIN_READY on the driver's chain
socket). Later runs send only the first value, and the arguments of hops that
differ from the set-up ones (a hop that also reads the execute() input packs new
arguments each time).

The set-ups change under the scheduler's lock, like the rest of the actor manager.

Results: the last hop of a chain sends its value to the driver's chain socket
(:class:`ChainResults`), where a thread blocked in ``recv`` applies it as the I/O
thread applies pipe batches. One blocking ``recv`` is cheaper than the I/O
thread's wait over every pipe, and a thread in ``get`` does not poll for it:
measured, a third process polling on two cores slows the actors more than it
saves.
"""

from __future__ import annotations

import itertools
import os
import pickle
import shutil
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sluice.executor import protocol as P
from sluice.executor.backend import ChainHop
from sluice.executor.chains import CHAIN_INLINE_MAX, RESULT_MAX, actor_address, make_chain_dir
from sluice.executor.object_ref import ObjectRef
from sluice.executor.records import ActorRecord, WorkerHandle
from sluice.store import serialization

if TYPE_CHECKING:
    from sluice.executor.scheduler import Scheduler


class ChainSetup:
    """One chain as set up on a set of actor processes."""

    __slots__ = ("chain_id", "blobs", "members", "actor_ids", "pending")

    def __init__(self, chain_id: int, blobs: tuple[bytes, ...],
                 members: tuple[tuple[ActorRecord, WorkerHandle], ...]):
        self.chain_id = chain_id
        self.blobs = blobs            # each hop's packed arguments as set up
        self.members = members        # each distinct actor with the process it was set up on
        self.actor_ids = tuple(actor.actor_id for actor, _ in members)
        self.pending = {w.index for _, w in members}  # processes yet to acknowledge the set-up

    def current(self) -> bool:
        """Whether every actor still runs in the process the chain was set up on."""
        for actor, w in self.members:
            if actor.state != ActorRecord.ALIVE or actor.worker is not w or not w.alive:
                return False
        return True


class ChainSetups:
    """Every chain set up in this runtime, by its hops' ``(actor id, method, name)``."""

    def __init__(self, scheduler: Scheduler):
        self.s = scheduler
        self.ids = itertools.count(1)
        self.setups: dict[tuple, ChainSetup] = {}
        self.by_id: dict[int, ChainSetup] = {}
        self.results: ChainResults | None = None  # the driver's chain socket, from the first set-up
        self.unavailable = False      # no chain socket could be made here: never forward

    def prepare(self, hops: list[ChainHop]) -> tuple[ChainSetup, dict[int, bytes] | None] | None:
        """The set-up of chain ``hops`` (made now if needed) and the per-execute arguments
        (hop index -> args blob) that differ from it; None when the chain cannot be
        forwarded now (an actor not started or not constructed yet, or arguments too
        large to travel with the chain): the caller makes ordinary calls."""
        key = tuple([h[:3] for h in hops])
        setup = self.setups.get(key)
        if setup is not None and not setup.current():
            self.drop(key)
            setup = None
        if setup is None:
            self.set_up(key, hops)
            return None  # ordinary calls until every actor has acknowledged the set-up
        if setup.pending:
            return None
        overrides = None
        size = 0
        for i, (hop, blob) in enumerate(zip(hops, setup.blobs)):
            given = hop[3]
            if given is not blob and given != blob:
                if overrides is None:
                    overrides = {}
                overrides[i] = given
                size += len(given)
        if size > CHAIN_INLINE_MAX:
            return None
        return setup, overrides

    def set_up(self, key: tuple, hops: list[ChainHop]) -> None:
        """Send CHAIN_SETUP to every actor of the chain, if all are alive and constructed."""
        if self.unavailable:
            return
        actors = self.s.actors
        members: dict[int, tuple[ActorRecord, WorkerHandle]] = {}
        for actor_id, *_ in hops:
            actor = actors.get(actor_id)
            w = actor.worker if actor is not None else None
            if actor is None or actor.state != ActorRecord.ALIVE or not actor.ready \
                    or w is None or not w.alive or w.node is not None:
                return  # not ready (or on a cluster node: not forwarded there)
            members[actor_id] = (actor, w)
        if self.results is None:
            try:
                self.results = ChainResults(self.s, self)
            except OSError:  # e.g. a temp dir path too long for a socket address
                self.unavailable = True
                return
        directory = self.results.directory
        table = tuple((actor_address(directory, members[actor_id][1].index), method, blob, name)
                      for actor_id, method, name, blob in hops)
        setup = ChainSetup(next(self.ids), tuple(h[3] for h in hops), tuple(members.values()))
        for _, w in setup.members:
            w.out.append((P.CHAIN_SETUP, setup.chain_id, table, directory, self.results.address))
            self.s.send(w)
        self.setups[key] = setup
        self.by_id[setup.chain_id] = setup

    def acknowledged(self, chain_id: int, index: int) -> None:
        """Worker ``index`` applied the set-up of chain ``chain_id`` (under the lock)."""
        setup = self.by_id.get(chain_id)
        if setup is not None:
            setup.pending.discard(index)

    def drop(self, key: tuple) -> None:
        """Forget a set-up; its actors that still run drop their table entry."""
        setup = self.setups.pop(key)
        self.by_id.pop(setup.chain_id, None)
        for actor, w in setup.members:
            if w.alive and actor.worker is w:
                w.out.append((P.CHAIN_FORGET, [setup.chain_id]))
                self.s.mark_dirty(w)

    def close(self) -> None:
        """Stop taking results and remove the chain sockets (at shutdown)."""
        if self.results is not None:
            self.results.close()

    def forget_actor(self, actor_id: int) -> None:
        """An actor died or restarted: drop the set-ups of chains through it."""
        for key in [k for k, setup in self.setups.items() if actor_id in setup.actor_ids]:
            self.drop(key)


def chain_input(first: Any, put: Callable[[Any], ObjectRef]) -> tuple[ObjectRef | None, tuple | None]:
    """How a chain's first value reaches its first actor: ``(ref, None)`` for a ref (or a
    value stored with ``put``: large, or holding refs), ``(None, spec)`` for a small value
    sent inline in the CHAIN message."""
    if isinstance(first, ObjectRef):
        return first, None
    kind = type(first)
    if kind in (int, float, bool, type(None)) or (kind in (str, bytes) and len(first) <= CHAIN_INLINE_MAX):
        return None, (P.DEP_VALUE, first)
    sobj = serialization.serialize(first)
    if sobj.nbytes <= CHAIN_INLINE_MAX and not sobj.contained_ids:
        return None, (P.DEP_INLINE, serialization.to_bytes(sobj))
    return put(first), None


class ChainResults:
    """The driver's chain socket: set-up acknowledgements and the last hops' values.

    A result datagram is the DONE message of the chain's task; it is applied like
    a worker's batch (queued on the scheduler's inbox and drained by whoever holds
    the lock), as if the chain's first actor had reported it, since the driver
    counts the chain as running there.
    """

    def __init__(self, scheduler: Scheduler, setups: ChainSetups):
        self.s = scheduler
        self.setups = setups
        self.directory = make_chain_dir(scheduler.session)
        self.address = os.path.join(self.directory, "driver")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.sock.bind(self.address)
        except OSError:
            self.sock.close()
            shutil.rmtree(self.directory, ignore_errors=True)
            raise
        self.closed = False
        self.thread = threading.Thread(target=self._serve, name="sluice-chain-results", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        recv = self.sock.recv
        while True:
            try:
                data = recv(RESULT_MAX)
            except OSError:
                return
            if self.closed:
                return
            self.apply(pickle.loads(data))

    def apply(self, msg: tuple) -> None:
        """Apply one datagram."""
        s = self.s
        if msg[0] == P.CHAIN_READY:
            with s.locked():
                self.setups.acknowledged(msg[1], msg[2])
            return
        task = s.tasks.get(msg[1])  # read without the lock: a task's worker is set before it runs
        w = task.worker if task is not None else None
        if w is None:
            return  # it already failed (an actor of the chain died): the result is stale
        s.inbox.append((w, [msg]))
        s.io.drain_if_free()

    def close(self) -> None:
        self.closed = True
        try:
            self.sock.sendto(b"", socket.MSG_DONTWAIT, self.address)  # wake the thread
        except OSError:
            pass
        self.thread.join(timeout=5)
        self.sock.close()
        shutil.rmtree(self.directory, ignore_errors=True)
