"""The object store: the bottom layer of sluice.

Values are serialized to a flat, self-describing layout (:mod:`.serialization`),
kept one per file in /dev/shm (:mod:`.shm`) and accounted under a capacity with
spilling to disk (:mod:`.object_store`). Nothing here knows of tasks or graphs;
the only sluice import allowed below this package is :mod:`sluice.exceptions`.
"""

from __future__ import annotations

from sluice.store.object_store import ObjectStore
from sluice.store.serialization import (
    ARROW,
    PICKLE5,
    SerializedObject,
    deserialize,
    dumps,
    loads,
    note_contained_id,
    serialize,
    to_bytes,
    write_to,
)
from sluice.store.shm import (
    SegmentReader,
    cleanup_session,
    cleanup_stale_sessions,
    create_segment,
    new_session_id,
    segment_name,
    unlink_segment,
    write_segment,
)

__all__ = [
    "ARROW",
    "PICKLE5",
    "ObjectStore",
    "SegmentReader",
    "SerializedObject",
    "cleanup_session",
    "cleanup_stale_sessions",
    "create_segment",
    "deserialize",
    "dumps",
    "loads",
    "new_session_id",
    "note_contained_id",
    "segment_name",
    "serialize",
    "to_bytes",
    "unlink_segment",
    "write_segment",
    "write_to",
]
