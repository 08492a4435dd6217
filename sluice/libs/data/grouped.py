"""GroupedData: ``ds.groupby(key)``'s aggregates, each a shuffle with a map-side partial step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sluice.libs.data.aggregate import AggregateFn, Count, Max, Mean, Min, Std, Sum
from sluice.libs.data.block import check_batch_format
from sluice.libs.data.shuffle import ShuffleSpec
from sluice.libs.data.transforms import fn_name


class GroupedData:
    """Rows of a Dataset grouped by key columns (``()``: one group of every row)."""

    def __init__(self, dataset: Any, keys: tuple[str, ...]):
        self._dataset = dataset
        self._keys = keys

    def aggregate(self, *aggs: AggregateFn) -> Any:
        """A Dataset with the key columns and one column per aggregate (named like ``sum(z)``)."""
        if not aggs:
            raise ValueError("aggregate needs at least one aggregate, e.g. Sum('x')")
        for a in aggs:
            if not isinstance(a, AggregateFn):
                raise TypeError(f"aggregate takes AggregateFn objects (Count(), Sum('x'), ...), "
                                f"not {type(a).__name__} {a!r:.60}")
        for a in aggs:
            if a.on:
                self._dataset._require([a.on], a.name)
        label = ", ".join(a.name for a in aggs)
        keys = ", ".join(self._keys)
        return self._dataset._shuffle(f"Aggregate({keys}: {label})" if keys else f"Aggregate({label})",
                                      ShuffleSpec("aggregate", keys=self._keys, aggs=tuple(aggs)))

    def _each(self, cls: type, on: str | list[str], **kw: Any) -> Any:
        columns = [on] if isinstance(on, str) else list(on)
        if not columns:
            raise ValueError(f"{cls.__name__.lower()} needs a column name")
        return self.aggregate(*(cls(c, **kw) for c in columns))

    def count(self) -> Any:
        """Rows per group, in a column ``count()``."""
        return self.aggregate(Count())

    def sum(self, on: str | list[str]) -> Any:
        """Per-group sum of ``on`` (column ``sum(on)``)."""
        return self._each(Sum, on)

    def mean(self, on: str | list[str]) -> Any:
        """Per-group mean of ``on`` (column ``mean(on)``)."""
        return self._each(Mean, on)

    def min(self, on: str | list[str]) -> Any:
        """Per-group minimum of ``on`` (column ``min(on)``)."""
        return self._each(Min, on)

    def max(self, on: str | list[str]) -> Any:
        """Per-group maximum of ``on`` (column ``max(on)``)."""
        return self._each(Max, on)

    def std(self, on: str | list[str], ddof: int = 1) -> Any:
        """Per-group standard deviation of ``on`` (column ``std(on)``)."""
        return self._each(Std, on, ddof=ddof)

    def map_groups(self, fn: Callable, *, batch_format: str = "default") -> Any:
        """``fn`` on each group's rows (one batch per group) -> the rows it returns."""
        if not callable(fn):
            raise TypeError(f"map_groups takes a function, not {type(fn).__name__}")
        check_batch_format(batch_format)
        if not self._keys:
            raise ValueError("map_groups needs a groupby key; groupby(None) has one group: use map_batches")
        return self._dataset._shuffle(f"MapGroups({fn_name(fn)})",
                                      ShuffleSpec("map_groups", keys=self._keys, fn=fn,
                                                  batch_format=batch_format))
