"""ObjectRef: a handle to a value in the object store (ready now or later)."""

from __future__ import annotations

from sluice.executor import context
from sluice.store.serialization import note_contained_id

ObjectID = int
"""Object ids are ints: the owner process index in the high bits, a counter below."""

OWNER_SHIFT = 40


class ObjectRef:
    """A reference to an object that a task returns or :func:`sluice.put` stores.

    Holding an ObjectRef keeps its object alive; the object is freed when no
    ref (in any process) and no pending task needs it. ``await ref`` works
    inside async actors.
    """

    __slots__ = ("id", "_runtime", "__weakref__")

    def __init__(self, object_id: ObjectID, runtime=None):
        self.id = object_id
        # The runtime that counts this ref: a ref outliving its runtime counts nowhere.
        self._runtime = rt = runtime if runtime is not None else context.current()
        if rt is not None:
            rt.add_local_ref(object_id)

    def __del__(self) -> None:
        rt = self._runtime
        if rt is not None:
            try:
                rt.remove_local_ref(self.id)
            except Exception:  # interpreter shutdown: nothing left to count
                pass

    def __reduce__(self):
        # Serializing a ref inside a value records it, so the value keeps it alive.
        note_contained_id(self.id)
        return (ObjectRef, (self.id,))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectRef) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"ObjectRef({self.id >> OWNER_SHIFT}:{self.id & ((1 << OWNER_SHIFT) - 1)})"

    def hex(self) -> str:
        """The id as hex text, as Ray's ``ObjectRef.hex()``."""
        return f"{self.id:016x}"

    def __await__(self):
        import asyncio

        rt = context.current()
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(None, lambda: rt.get([self], None)[0]).__await__()

    def future(self):
        """A ``concurrent.futures.Future`` resolved with the value."""
        import concurrent.futures
        import threading

        fut: concurrent.futures.Future = concurrent.futures.Future()

        def resolve() -> None:
            try:
                fut.set_result(context.current().get([self], None)[0])
            except BaseException as err:  # the future carries the task's error
                fut.set_exception(err)

        threading.Thread(target=resolve, daemon=True).start()
        return fut
