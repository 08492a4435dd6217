"""User metrics (``sluice.util.metrics``) as the driver, or a cluster's head, holds them.

A metric update is a plain tuple, ``(kind, name, description, tag_keys, boundaries, tags,
value)``: ``kind`` is ``counter`` (``value``: an amount added), ``gauge`` (the value set)
or ``histogram`` (``value``: ``(bucket counts, sum, count)`` added, one count per bucket
of ``boundaries`` and one past the last). Workers add their updates up between two
flushes of their outbox (:func:`merge`) and send them as one ``METRICS`` message; the
table here adds them to what it holds (:meth:`MetricsTable.apply`). Every process's updates
land in one table, so a counter incremented in many tasks is one series.
"""

from __future__ import annotations

import threading
from typing import Any

Update = tuple[str, str, str, tuple[str, ...], tuple[float, ...], tuple[tuple[str, str], ...], Any]


def merge(pending: dict[tuple, list[Any]], update: Update) -> None:
    """Add ``update`` to ``pending`` (key: kind, name, tags -> the update, its value summed
    for a counter or histogram, replaced for a gauge)."""
    kind, name, _, _, _, tags, value = update
    key = (kind, name, tags)
    held = pending.get(key)
    if held is None:
        pending[key] = list(update)
    elif kind == "counter":
        held[6] += value
    elif kind == "gauge":
        held[6] = value
    else:
        counts, total, count = held[6]
        more, more_total, more_count = value
        held[6] = ([a + b for a, b in zip(counts, more)], total + more_total, count + more_count)


class MetricsTable:
    """Every metric's description and every series' value (see the module docstring)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: dict[tuple, list[Any]] = {}

    def apply(self, updates: list[Any]) -> None:
        """Add ``updates`` (tuples or lists, see :data:`Update`)."""
        with self.lock:
            for update in updates:
                merge(self.pending, tuple(update))

    def rows(self) -> list[dict[str, Any]]:
        """One row per series: name, kind, description, labels, value (a histogram's:
        cumulative ``buckets`` as (upper bound, count), ``sum``, ``count``)."""
        with self.lock:
            held = [list(u) for u in self.pending.values()]
        out = []
        for kind, name, description, _, boundaries, tags, value in held:
            if kind == "histogram":
                counts, total, count = value
                running, buckets = 0, []
                for bound, n in zip((*boundaries, float("inf")), counts):
                    running += n
                    buckets.append((bound, running))
                value = {"buckets": buckets, "sum": total, "count": count}
            out.append({"name": name, "kind": kind, "description": description,
                        "labels": dict(tags), "value": value})
        return out
