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

import time
from multiprocessing.connection import Client, Connection, Listener
from typing import Any

from sluice.executor import protocol as P
from sluice.executor.calls import decode_call


def actor_address(session: str, index: int) -> str:
    """The abstract Unix socket address where actor process ``index`` takes chain hops."""
    return f"\0sluice-{session}-w{index}"


class ChainEndpoint:
    """An actor process's side: a listener for incoming hops, connections to peers."""

    def __init__(self, session: str, index: int):
        self.listener = Listener(actor_address(session, index), family="AF_UNIX")
        self.incoming: list[Connection] = []
        self.outgoing: dict[str, Connection] = {}

    def sources(self) -> list[Any]:
        """What the worker's main loop waits on besides the driver pipe."""
        return [self.listener._listener._socket, *self.incoming]  # type: ignore[attr-defined]

    def accept(self) -> None:
        self.incoming.append(self.listener.accept())

    def send(self, address: str, msg: tuple) -> None:
        conn = self.outgoing.get(address)
        if conn is None:
            conn = self.outgoing[address] = Client(address, family="AF_UNIX")
        conn.send_bytes(P.pack([msg]))

    def close(self) -> None:
        for conn in [*self.incoming, *self.outgoing.values()]:
            conn.close()
        self.listener.close()


def run_hop(worker: Any, msg: tuple) -> None:
    """Run one hop of a chain on ``worker`` (an actor) and pass its result on."""
    from sluice.executor.worker import DependencyFailed, error_blob

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
            results = worker.encode_results(name, value, return_ids)
            worker.emit((P.DONE, task_id, results, time.perf_counter() - start))
            return
        spec, _ = worker.store_value(worker.new_object_id(), value)
        if spec[0] == P.DEP_SHM:
            raise ValueError(f"{name} returned {spec[1]} bytes; chained actor calls pass values "
                             f"up to {P.INLINE_MAX} bytes (return a sluice.put() ref for more)")
        worker.chains.send(hops[index + 1][0], (P.CHAIN, task_id, hops, index + 1, [spec], return_ids))
    except DependencyFailed as dep:
        worker.emit((P.FAILED, task_id, dep.blob, False, time.perf_counter() - start))
    except Exception as err:
        worker.emit((P.FAILED, task_id, error_blob(name, err), False, time.perf_counter() - start))
