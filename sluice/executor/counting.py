"""Reference and handle counting shared by every backend.

ObjectRefs and actor handles report their births and deaths from ``__init__``
and ``__del__``, in any thread and even inside garbage collection, so they only
append to a deque. The backend that owns the counts drains the events under
its own lock, in order, and acts on the transitions: a worker tells its driver
of the first and last ref it holds, the Dask backend drops a future when its
last ref dies, a driver stops an unnamed actor once its last handle is gone.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

ObjectID = int
ActorID = int


class RefCounts:
    """How many ObjectRefs this process holds to each object. See the module docstring.

    Invariant: ``counts`` holds an id only while its count is positive.
    """

    __slots__ = ("events", "counts")

    def __init__(self) -> None:
        self.events: deque[tuple[int, ObjectID]] = deque()  # (+1 | -1, id), appended by any thread
        self.counts: dict[ObjectID, int] = {}

    def add(self, oid: ObjectID) -> None:
        """A ref to ``oid`` was made (queued only)."""
        self.events.append((1, oid))

    def remove(self, oid: ObjectID) -> None:
        """A ref to ``oid`` died (queued only)."""
        self.events.append((-1, oid))

    def pin(self, oid: ObjectID) -> None:
        """Count one more holder at once (the owner's lock held); undo with :meth:`remove`."""
        self.counts[oid] = self.counts.get(oid, 0) + 1

    def drain(self) -> Iterator[tuple[ObjectID, bool]]:
        """Apply the queued events in order (the owner's lock held), yielding ``(id, True)``
        when the first ref to an object appears and ``(id, False)`` when its last one died."""
        events, counts = self.events, self.counts
        while events:
            delta, oid = events.popleft()
            n = counts.get(oid, 0) + delta
            if n > 0:
                counts[oid] = n
                if delta > 0 and n == 1:
                    yield oid, True
            else:
                counts.pop(oid, None)
                yield oid, False


class HandleCounts:
    """Live actor handles per actor in a driver. See the module docstring.

    ``events`` may be shared with whoever receives handle events (a cluster head
    appends those its drivers send).
    """

    __slots__ = ("events", "handles", "escaped")

    def __init__(self, events: deque[tuple[int, ActorID]] | None = None) -> None:
        self.events: deque[tuple[int, ActorID]] = events if events is not None else deque()
        self.handles: dict[ActorID, int] = {}  # actor id -> live handles
        self.escaped: set[ActorID] = set()     # a handle was pickled: it may live anywhere now

    def event(self, actor_id: ActorID, delta: int) -> None:
        """A handle was made (+1), dropped (-1) or pickled (0) (queued only)."""
        self.events.append((delta, actor_id))

    def drain(self) -> Iterator[ActorID]:
        """Apply the queued events (the owner's lock held), yielding each actor whose last
        handle is gone and none of whose handles was ever pickled: nothing can call it."""
        events = self.events
        while events:
            delta, actor_id = events.popleft()
            if delta == 0:
                self.escaped.add(actor_id)
                continue
            n = self.handles.get(actor_id, 0) + delta
            if n > 0:
                self.handles[actor_id] = n
                continue
            self.handles.pop(actor_id, None)
            if actor_id not in self.escaped:
                yield actor_id
