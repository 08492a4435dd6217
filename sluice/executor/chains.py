"""Actor chains: a compiled Plan's run of actor calls, forwarded actor to actor.

When each call of a chain reads only the previous call's result, the driver
sends the whole chain to the first actor as one CHAIN message; every actor runs
its call and hands the result straight to the next actor over a direct socket
(each actor listens on an abstract Unix address named after its session and
index). Only the last result goes back to the driver, so a hop costs one pipe
write instead of two plus the driver's bookkeeping.

A hop is ``(address, method, args_blob, name)``; ``args_blob`` is packed like a
call's arguments with one dependency slot, which receives the chained value.
"""

from __future__ import annotations

import selectors
import time
from multiprocessing.connection import Client, Connection, Listener
from typing import Any

from sluice.executor import protocol as P
from sluice.executor.calls import decode_call


def pack_hop_args(args: tuple, kwargs: dict, slot: int | str) -> bytes:
    """Pack a hop's arguments; the chained value goes to ``slot`` (a position or keyword)."""
    import pickle

    args = list(args)
    kwargs = dict(kwargs)
    if isinstance(slot, int):
        args[slot] = None
    else:
        kwargs[slot] = None
    return pickle.dumps((args, kwargs, [slot]), protocol=5)


def actor_address(session: str, index: int) -> str:
    """The abstract Unix socket address where actor process ``index`` takes chain hops."""
    return f"\0sluice-{session}-w{index}"


class ChainEndpoint:
    """An actor process's side: a listener for incoming hops, connections to peers.

    ``selector`` watches the driver pipe, the listener and every incoming peer; it
    is kept across waits (registering fds anew per wait costs more than a hop).
    """

    def __init__(self, session: str, index: int, driver: Connection):
        self.listener = Listener(actor_address(session, index), family="AF_UNIX")
        self.listening = self.listener._listener._socket  # type: ignore[attr-defined]
        self.incoming: list[Connection] = []
        self.outgoing: dict[str, Connection] = {}
        self.selector = selectors.DefaultSelector()
        self.selector.register(driver, selectors.EVENT_READ)
        self.selector.register(self.listening, selectors.EVENT_READ)

    def accept(self) -> None:
        conn = self.listener.accept()
        self.incoming.append(conn)
        self.selector.register(conn, selectors.EVENT_READ)

    def drop(self, conn: Connection) -> None:
        """Forget a peer that hung up."""
        self.selector.unregister(conn)
        self.incoming.remove(conn)

    def send(self, address: str, msg: tuple) -> None:
        conn = self.outgoing.get(address)
        if conn is None:
            conn = self.outgoing[address] = Client(address, family="AF_UNIX")
        conn.send_bytes(P.pack([msg]))

    def close(self) -> None:
        self.selector.close()
        for conn in [*self.incoming, *self.outgoing.values()]:
            conn.close()
        self.listener.close()


CHAIN_INLINE_MAX = 16 * 1024
"""Chained values up to this size travel in the hop message; larger ones in shared memory."""


def hand_over(worker: Any, value: Any) -> tuple:
    """The dependency spec that carries ``value`` to the next actor of a chain.

    A large value goes into a segment the next actor maps and then unlinks
    (DEP_SHM_ONCE): the driver never tracks it, and a session's shutdown removes
    it if the next actor died first.
    """
    from sluice.store import serialization, shm

    sobj = serialization.serialize(value)
    if sobj.nbytes <= CHAIN_INLINE_MAX:
        return (P.DEP_INLINE, serialization.to_bytes(sobj))
    name = shm.segment_name(worker.session, worker.new_object_id())
    shm.write_segment(name, sobj)
    return (P.DEP_SHM_ONCE, name)


def run_hop(worker: Any, msg: tuple) -> None:
    """Run one hop of a chain on ``worker`` (an actor) and pass its result on."""
    _, task_id, hops, index, deps, return_ids = msg
    _, method, args_blob, name = hops[index]
    start = time.perf_counter()
    if worker.actor_error is not None:
        worker.emit((P.FAILED, task_id, worker.actor_error, False, 0.0))
        return
    try:
        args, kwargs = decode_call(args_blob, worker.resolve_deps(deps))
        value = getattr(worker.actor, method)(*args, **kwargs)
        if index + 1 == len(hops):
            worker.complete_call(task_id, name, value, return_ids, start)
            return
        spec = hand_over(worker, value)
        rest = hops[index + 1:]  # the message shrinks as the chain goes on
        worker.chains.send(rest[0][0], (P.CHAIN, task_id, rest, 0, [spec], return_ids))
    except Exception as err:
        worker.fail_call(task_id, name, err, start)
