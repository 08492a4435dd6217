"""User metrics, as Ray's ``ray.util.metrics``: :class:`Counter`, :class:`Gauge` and
:class:`Histogram`, recorded from the driver, tasks and actors alike and served with the
runtime's own metrics in Prometheus text at the dashboard's ``/metrics``.

>>> from sluice.util.metrics import Counter
>>> rows = Counter("rows_read", "rows read from the source", tag_keys=("table",))
>>> rows.inc(100, tags={"table": "orders"})            # doctest: +SKIP

A task's updates are added up in its worker and reach the driver with the worker's next
batch of messages (so a tight loop of ``inc`` costs no message each); every process's
updates to one metric and tags make one series.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


class Metric:
    """What the three kinds share: a name (Prometheus' rules), a description, the tag keys
    every record names (:meth:`set_default_tags` gives defaults)."""

    kind = ""

    def __init__(self, name: str, description: str = "",
                 tag_keys: Sequence[str] | None = None):
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"metric name {name!r}: use letters, digits, '_' and ':', not "
                             f"starting with a digit (Prometheus' rule), e.g. 'rows_read'")
        if tag_keys is not None and (isinstance(tag_keys, str) or not all(
                isinstance(k, str) for k in tag_keys)):
            raise TypeError(f"tag_keys={tag_keys!r}: give a tuple of str, e.g. ('table',)")
        self._name = name
        self._description = description
        self._tag_keys = tuple(tag_keys or ())
        self._default_tags: dict[str, str] = {}

    @property
    def info(self) -> dict[str, Any]:
        """The metric's name, description, tag keys and default tags."""
        return {"name": self._name, "description": self._description,
                "tag_keys": self._tag_keys, "default_tags": dict(self._default_tags)}

    def set_default_tags(self, default_tags: dict[str, str]) -> Metric:
        """Tags every record uses unless it gives its own; returns the metric."""
        unknown = set(default_tags) - set(self._tag_keys)
        if unknown:
            raise ValueError(f"default tags {sorted(unknown)} of metric {self._name!r} are "
                             f"not among its tag_keys {list(self._tag_keys)}")
        self._default_tags = {k: str(v) for k, v in default_tags.items()}
        return self

    def _tags(self, tags: dict[str, str] | None) -> tuple[tuple[str, str], ...]:
        merged = {**self._default_tags, **{k: str(v) for k, v in (tags or {}).items()}}
        unknown = set(merged) - set(self._tag_keys)
        if unknown:
            raise ValueError(f"tags {sorted(unknown)} given to metric {self._name!r} are not "
                             f"among its tag_keys {list(self._tag_keys)}")
        missing = [k for k in self._tag_keys if k not in merged]
        if missing:
            raise ValueError(f"metric {self._name!r} needs a value for tag(s) {missing}: pass "
                             f"tags={{...}} or set_default_tags()")
        return tuple((k, merged[k]) for k in self._tag_keys)

    def _record(self, tags: dict[str, str] | None, value: Any,
                boundaries: tuple[float, ...] = ()) -> None:
        from sluice.executor.api import runtime

        runtime().record_metric((self.kind, self._name, self._description, self._tag_keys,
                                 boundaries, self._tags(tags), value))


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what}: {value!r} is not a number")
    return float(value)


class Counter(Metric):
    """A total that only goes up (Prometheus' counter)."""

    kind = "counter"

    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        """Add ``value`` (more than 0) to the series of ``tags``."""
        amount = _number(value, f"Counter {self._name!r}.inc")
        if amount <= 0:
            raise ValueError(f"Counter {self._name!r}.inc({value!r}): a counter only goes "
                             f"up; give a value above 0 (use a Gauge for one that goes down)")
        self._record(tags, amount)


class Gauge(Metric):
    """A value that goes up and down; the last one set is kept."""

    kind = "gauge"

    def set(self, value: float, tags: dict[str, str] | None = None) -> None:
        """Set the series of ``tags`` to ``value``."""
        self._record(tags, _number(value, f"Gauge {self._name!r}.set"))


class Histogram(Metric):
    """How observed values spread over buckets with upper bounds ``boundaries``."""

    kind = "histogram"

    def __init__(self, name: str, description: str = "",
                 boundaries: Sequence[float] | None = None,
                 tag_keys: Sequence[str] | None = None):
        super().__init__(name, description, tag_keys)
        bounds = [_number(b, f"Histogram {name!r} boundary") for b in (boundaries or ())]
        if not bounds or any(b <= 0 for b in bounds) or bounds != sorted(set(bounds)):
            raise ValueError(f"Histogram {name!r}: boundaries={boundaries!r} must be given, "
                             f"above 0 and increasing, e.g. [0.01, 0.1, 1, 10]")
        self.boundaries = tuple(bounds)

    def observe(self, value: float, tags: dict[str, str] | None = None) -> None:
        """Count ``value`` in its bucket of the series of ``tags``."""
        x = _number(value, f"Histogram {self._name!r}.observe")
        counts = [0] * (len(self.boundaries) + 1)
        counts[next((i for i, b in enumerate(self.boundaries) if x <= b),
                    len(self.boundaries))] = 1
        self._record(tags, (counts, x, 1), self.boundaries)


__all__ = ["Counter", "Gauge", "Histogram"]
