"""The driver's bookkeeping records: objects, tasks, worker processes and actors.

Plain slotted classes (mutable: the scheduler updates them in place under its
lock). Field comments state the invariants the scheduler keeps.
"""

from __future__ import annotations

import subprocess
from time import time
from collections import deque
from multiprocessing.connection import Connection
from typing import Any

from sluice.executor.resources import ResourceKey
from sluice.executor.strategies import NodeAffinitySchedulingStrategy

PENDING, READY, FAILED = 0, 1, 2


class JobInfo:
    """A driver's job: its id (hex, as Ray prints it) and the namespace its actor names live in."""

    __slots__ = ("job_id", "namespace")

    def __init__(self, job_id: str, namespace: str):
        self.job_id = job_id
        self.namespace = namespace

    def __repr__(self) -> str:
        return f"JobInfo({self.job_id!r}, {self.namespace!r})"


def anonymous_namespace() -> str:
    """A fresh namespace of one job's own, as Ray gives a driver that names none."""
    import uuid

    return str(uuid.uuid4())


def job_id_hex(number: int) -> str:
    """A job id as Ray formats one (8 hex digits)."""
    return f"{number:08x}"


class ObjectEntry:
    """One object the driver tracks."""

    __slots__ = ("state", "spec", "refs", "holds", "contained", "waiters", "producer")

    def __init__(self, producer: TaskRecord | None = None):
        self.state = PENDING
        self.spec: tuple | None = None       # (DEP_INLINE, bytes) | (DEP_SHM, size) | (DEP_ERROR, blob)
        self.refs = 0                        # live ObjectRefs, in the driver and borrowed by workers
        self.holds = 0                       # pending tasks that read it + objects that contain it
        self.contained: tuple[int, ...] = ()  # ids this object's value refers to (each holds +1)
        self.waiters: list = []              # TaskRecords and Waiters to notify once not PENDING
        self.producer = producer             # the task computing it, while PENDING

    @property
    def freeable(self) -> bool:
        return self.refs <= 0 and self.holds <= 0 and self.state != PENDING


class TaskRecord:
    """A task or actor call from submission until its results are stored."""

    __slots__ = ("task_id", "fn_id", "name", "args_blob", "deps", "contained", "return_ids",
                 "key", "retries_left", "retry_exc", "unresolved", "worker", "actor", "method",
                 "cancelled", "pinned", "keep", "local_to", "chain", "chain_actors", "strategy",
                 "lane", "from_task", "job", "env", "stream", "group", "parent", "max_calls",
                 "submitted", "started", "ran")

    def __init__(self, task_id: int, fn_id: int, name: str, args_blob: bytes, deps: list[int],
                 contained: tuple[int, ...], return_ids: list[int], key: ResourceKey,
                 retries_left: int, retry_exc: Any, keep: list,
                 strategy: NodeAffinitySchedulingStrategy | str | None = None):
        self.task_id = task_id
        self.fn_id = fn_id                   # function id; 0 for actor calls
        self.name = name
        self.args_blob = args_blob
        self.deps = deps                     # object ids whose values fill argument slots
        self.contained = contained           # ids nested in the arguments (held, passed as refs)
        self.return_ids = return_ids
        self.key = key
        self.retries_left = retries_left
        self.retry_exc = retry_exc
        self.unresolved = 0                  # deps still PENDING (not counting local pipelining)
        self.worker: WorkerHandle | None = None  # where it was sent, while in flight
        self.actor: ActorRecord | None = None
        self.method: str | None = None
        self.cancelled = False
        self.pinned: list[int] = []          # shm deps pinned in the store while in flight
        self.keep = keep                     # ObjectRefs of auto-put arguments, dropped when done
        self.local_to: WorkerHandle | None = None  # set when pipelined behind its producer
        self.chain: tuple | None = None      # hops of an actor chain (executor/chains.py)
        self.chain_actors: tuple[int, ...] = ()  # every actor a chain passes through
        self.strategy = strategy             # its scheduling_strategy (None: the placement's choice)
        # The ready queue it waits in: its demand, and its node when a hard affinity pins it
        # there (waiting for that node's room must not hold back tasks that may run elsewhere).
        self.lane: Any = key if strategy is None or strategy == "SPREAD" or strategy.soft \
            else (key, strategy.node_id)
        # Submitted by a task in a pool worker: never queued behind another task on a busy
        # worker (that task may wait in a get, and the waiting task may run this one nested).
        self.from_task = False
        self.job: JobInfo | None = None      # the driver's job it belongs to (None: the local driver's)
        self.env: Any = None                 # its PreparedEnv (runtime_env), set by set_env
        self.stream: Any = None              # a streaming call's Stream (executor/generators.py)
        self.group: Any = None               # its PlacementGroupSchedulingStrategy, if any
        self.parent: int | None = None       # the task that submitted it (a nested task), if any
        self.max_calls = 0                   # its function's max_calls (0: no limit)
        self.submitted = time()              # wall time it was made (the state API's)
        self.started = 0.0                   # wall time its last attempt began in a worker
        self.ran = 0.0                       # seconds that attempt ran

    def set_env(self, env: Any) -> None:
        """Run only on workers started with ``env`` (a PreparedEnv; None: the plain pool)."""
        self.env = env
        if env is not None:
            self.lane = (self.lane, env.env_id)


class WorkerHandle:
    """A worker process as the driver sees it."""

    __slots__ = ("index", "proc", "conn", "out", "inflight", "lease", "gpu_ids", "known_fns",
                 "blocked", "actor", "alive", "pending_gets", "queued_bytes", "unsent", "node",
                 "nested", "nest_waits", "lent", "env_id", "calls", "used_up")

    def __init__(self, index: int, proc: subprocess.Popen, conn: Connection):
        self.index = index
        self.proc = proc
        self.conn = conn
        self.out: list = []                  # messages to send at the next flush
        self.inflight: dict[int, TaskRecord] = {}  # sent, no result yet (insertion = send order)
        self.lease: ResourceKey | None = None  # resources held while inflight is non-empty
        self.gpu_ids: list[int] = []
        self.known_fns: set[int] = set()     # function ids this process has unpickled
        self.blocked = 0                     # nested gets waiting in the driver
        self.actor: ActorRecord | None = None  # set for an actor's dedicated process
        self.alive = True
        self.pending_gets = 0
        self.unsent = 0                      # task messages in ``out`` (not yet written)
        self.queued_bytes = 0                # argument bytes of in-flight tasks (bounds pipelining)
        self.node: Any = None                # the cluster node it runs on (None: the local runtime)
        # A task waiting in a nested get may run the tasks it waits for itself (nesting.py).
        # Its main thread is a stack: task, get, nested tasks, get, ... so these lists nest too.
        self.nested: list[list[int]] = []    # per get depth, ids of the tasks sent to run inside
                                             # that get (the first one runs), innermost last
        self.nest_waits: list[WorkerRequest] = []  # gets that may run them, innermost last
        self.lent = False                    # its lease's CPUs are lent out while it waits
        self.env_id: str | None = None       # the runtime_env it started with (None: none)
        # Calls sent to it per function with max_calls; used_up once one reached its limit: it
        # is sent nothing more and exits when its last task ends (Ray's max_calls).
        self.calls: dict[int, int] | None = None
        self.used_up = False


class ActorRecord:
    """An actor: its options, its process, and its calls in submission order."""

    __slots__ = ("actor_id", "name", "class_name", "cls_id", "cls_bytes", "args_blob", "deps",
                 "contained", "options", "key", "gpu_ids", "worker", "state", "restarts_left",
                 "queue", "death", "keep", "unresolved", "ready", "node", "job", "restarted",
                 "namespace", "env")

    PENDING, ALIVE, DEAD = 0, 1, 2

    def __init__(self, actor_id: int, class_name: str, cls_id: int, cls_bytes: bytes,
                 args_blob: bytes, deps: list[int], contained: tuple[int, ...], options: dict,
                 key: ResourceKey, keep: list):
        self.actor_id = actor_id
        self.name: str | None = options.get("name")
        self.class_name = class_name
        self.cls_id = cls_id
        self.cls_bytes = cls_bytes
        self.args_blob = args_blob
        self.deps = deps
        self.contained = contained
        self.options = options
        self.key = key
        self.gpu_ids: list[int] | None = None  # granted at start; None until then
        self.worker: WorkerHandle | None = None
        self.state = ActorRecord.PENDING
        self.restarts_left = int(options.get("max_restarts", 0))
        self.queue: deque[TaskRecord] = deque()  # calls not yet sent, in submission order
        self.death: bytes | None = None      # error blob every later call fails with
        self.keep = keep
        self.unresolved = 0                  # constructor deps still pending
        self.ready = False                   # constructor finished
        self.node: Any = None                # the cluster node it was placed on
        self.job: JobInfo | None = None      # the job that created it (None: the local driver's)
        self.restarted = False               # its process was started again after a crash
        self.namespace: str | None = options.get("namespace")  # where its name lives
        self.env: Any = None                 # its PreparedEnv (runtime_env), None: none


class Waiter:
    """A driver thread blocked in get/wait until ``remaining`` objects are ready."""

    __slots__ = ("remaining", "event")

    def __init__(self, remaining: int, event: Any):
        self.remaining = remaining
        self.event = event


class WorkerRequest:
    """A worker blocked in a nested get/wait, answered when ``remaining`` hits 0."""

    __slots__ = ("worker", "req_id", "ids", "remaining", "is_wait")

    def __init__(self, worker: WorkerHandle, req_id: int, ids: list[int], remaining: int, is_wait: bool):
        self.worker = worker
        self.req_id = req_id
        self.ids = ids
        self.remaining = remaining
        self.is_wait = is_wait
