"""Messages between the driver and its worker processes.

Every message is a plain tuple whose first item is one of the codes below;
messages travel in batches (a list pickled once per pipe write), which is
what keeps per-task overhead near the IPC floor.

Dependency specs (how a task's ObjectRef arguments reach a worker):
``(DEP_INLINE, bytes)`` a small serialized value, ``(DEP_SHM, name)`` a
shared-memory segment to map, ``(DEP_LOCAL, object_id)`` a result this same
worker produced just before (pipelined chains never round-trip the driver).
"""

from __future__ import annotations

import pickle
from typing import Any

# driver -> worker
TASK = 1            # (TASK, task_id, fn_id, fn_bytes|None, args_blob, deps, return_ids, retry_exc, gpu_ids, name,
                    #  stream) stream: None, or (threshold, skip, consumed) for a streaming call
                    #  (see executor/generators.py)
GET_REPLY = 2       # (GET_REPLY, req_id, [result spec per id])
ACTOR_CREATE = 3    # (ACTOR_CREATE, cls_bytes, args_blob, deps, max_concurrency, name, gpu_ids)
ACTOR_CALL = 4      # (ACTOR_CALL, task_id, method, args_blob, deps, return_ids, name, stream)
RELEASE = 5         # (RELEASE, [segment names]) forget cached mappings of freed objects
SHUTDOWN = 6        # (SHUTDOWN,)
WAIT_REPLY = 7      # (WAIT_REPLY, req_id, [ready ids])
LOOKUP_REPLY = 8    # (LOOKUP_REPLY, req_id, value) the answer to a LOOKUP or GEN_NEXT
RELINQUISH = 9      # (RELINQUISH,) a blocked worker hands back the tasks it has not started
CHAIN = 12          # (CHAIN, task_id, chain_id, deps, overrides, return_ids) run a set-up chain
CHAIN_SETUP = 13    # (CHAIN_SETUP, chain_id, hops, socket directory, driver's chain socket)
                    #  see executor/chains.py and chain_table.py
CHAIN_FORGET = 15   # (CHAIN_FORGET, [chain ids]) set-ups the driver will not run again
CANCEL_TASK = 11    # (CANCEL_TASK, task_id) drop it if not started (answered with FAILED)
GEN_ACK = 48        # (GEN_ACK, task_id, consumed) a streaming call's items taken so far
RECYCLE = 10        # (RECYCLE, [slot names]) say RELEASED once no value read from them is alive
NESTED = 17         # (NESTED, depth, TASK message) run it inside the get at that depth of the
                    #  worker's main thread: a task that get waits for (executor/nesting.py)

# worker -> driver
DONE = 20           # (DONE, task_id, [result spec], seconds, started: wall time)
FAILED = 21         # (FAILED, task_id, error_blob, retryable, seconds, started)
SUBMIT = 22         # (SUBMIT, fn_id, fn_bytes|None, args_blob, deps, contained, return_ids, options)
GET = 23            # (GET, req_id, [ids], nest): nest: the get may run NESTED tasks meanwhile
INCREF = 24         # (INCREF, id)
DECREF = 25         # (DECREF, id)
PUT = 26            # (PUT, id, result spec)
WAIT = 27           # (WAIT, req_id, [ids], num_returns, query_now)
BOUNCE = 28         # (BOUNCE, [task ids]) tasks handed back unstarted
ACTOR_READY = 30    # (ACTOR_READY,)
ACTOR_FAILED = 31   # (ACTOR_FAILED, error_blob)
CREATE_ACTOR = 32   # (CREATE_ACTOR, actor_id, cls_id, cls_bytes|None, args_blob, deps, contained, options)
CALL_ACTOR = 33     # (CALL_ACTOR, actor_id, method, args_blob, deps, contained, return_ids, options)
LOOKUP = 34         # (LOOKUP, req_id, what, arg): named actors and other driver state
KILL = 35           # (KILL, actor_id, no_restart)
CANCEL = 36         # (CANCEL, object_id, force)
RELEASED = 37       # (RELEASED, [slot names]) this process holds no view of them any more
ACTOR_HANDLE = 39   # (ACTOR_HANDLE, +1 | -1 | 0 pickled, actor_id) a cluster driver's actor handles
GEN_ITEM = 49       # (GEN_ITEM, task_id, index, object_id, result spec, contained) one yielded item
GEN_NEXT = 50       # (GEN_NEXT, req_id, generator id, give_up) the next items; answered with
                    #  (LOOKUP_REPLY, req_id, ([(object id, spec | None)], ended)) (executor/generators.py)
GEN_TAKEN = 51      # (GEN_TAKEN, generator id, [object ids]) the consumer holds its own refs to them
GEN_CLOSE = 52      # (GEN_CLOSE, generator id) the consumer dropped its generator
PULLED = 38         # (PULLED, object_id, segment name) a copy now lives in this node's store (cluster)
METRICS = 53        # (METRICS, [metric update]) user metrics since the last flush (metrics_table.py)

# head -> a cluster's driver
LOG_LINES = 54      # (LOG_LINES, [(pid, name, stream, text, node host)]) its workers' output

# datagrams on chain sockets: actor -> actor, actor -> driver
CHAIN_RELAY = 14    # (CHAIN_RELAY, chain_id, task_id, hop index, dependency spec, overrides, return_ids)
CHAIN_READY = 16    # (CHAIN_READY, chain_id, worker index) a CHAIN_SETUP was applied
                    # and (DONE, task_id, [result spec], seconds, started) from a chain's last hop

# result and dependency specs
DEP_INLINE = 0      # (DEP_INLINE, bytes)
DEP_SHM = 1         # (DEP_SHM, segment name)  for results: (DEP_SHM, size)
DEP_LOCAL = 2       # (DEP_LOCAL, object_id)
DEP_ERROR = 3       # (DEP_ERROR, error blob)
DEP_SHM_ONCE = 4    # (DEP_SHM_ONCE, segment name) read once, then unlinked (actor chains)
DEP_VALUE = 6       # (DEP_VALUE, value) a small plain value (int, float, str, ...) itself (actor chains)
DEP_REMOTE = 5      # (DEP_REMOTE, (object_id, source Flight location, segment name there,
                    #  segment name for this node's copy)) on another node of a cluster

INLINE_MAX = 100 * 1024
"""Values up to this many serialized bytes travel inside messages; larger ones go to shared memory."""


def pack(messages: list) -> bytes:
    """One pipe write for a batch of messages."""
    return pickle.dumps(messages, protocol=5)


def unpack(data: bytes) -> list[Any]:
    """The batch of messages of one pipe read."""
    return pickle.loads(data)
