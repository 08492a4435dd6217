"""Ray-compatible aggregations over Arrow blocks, computed in three vectorized phases.

:func:`partial_aggregate` reduces one block to one row per distinct key holding
each aggregation's intermediate state; :func:`combine_partials` merges state
tables (associative and commutative, so it serves both as the map-side combine
and as the reduce); :func:`finalize_aggregate` turns state into one result column
per aggregation, rows sorted by key. Each phase runs every built-in aggregation
inside a single ``pyarrow`` hash aggregation (equal requests, such as the count
of ``x`` that both ``Mean("x")`` and ``Std("x")`` need, are computed once); only
a user-defined :class:`AggregateFn` runs Python, once per group.

Semantics follow ``pandas.DataFrame.groupby(keys).agg``: null and NaN values
are skipped; rows whose key is null or NaN are dropped; ``-0.0`` and ``0.0`` are
one key; the sum of a group without values is 0, its mean, min, max and std are
null. ``Count()`` counts rows, like Ray's. With ``keys=[]`` there is one global
row (also for an empty block).

State columns of an aggregation named ``N`` are ``__N#<part>``:

===========  ==============================================================
Count        ``#count`` int64
Sum          ``#sum`` (int64, uint64, float64 or decimal, by input type)
Mean         ``#sum`` float64, ``#count`` int64
Min / Max    ``#min`` / ``#max`` (the input column's type)
Std          ``#count`` int64, ``#mean`` float64, ``#m2`` float64 (sum of squared deviations)
AggregateFn  ``#acc`` binary (the cloudpickled accumulator)
===========  ==============================================================
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import cloudpickle
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sluice.libs.data.partition import ColumnNotFoundError, require_columns

__all__ = [
    "AggregateFn",
    "Count",
    "Max",
    "Mean",
    "Min",
    "Std",
    "Sum",
    "combine_partials",
    "finalize_aggregate",
    "partial_aggregate",
]

# Options of each pyarrow hash aggregation the plans use; requests are keyed by (column, function).
_OPTIONS: dict[str, Any] = {
    "sum": pc.ScalarAggregateOptions(skip_nulls=True, min_count=0),  # all-null group sums to 0
    "count": pc.CountOptions(mode="only_valid"),
    "variance": pc.VarianceOptions(ddof=0),
}
_ROW = "__sluice_row"


# --------------------------------------------------------------------------- column transforms

def _as_is(column: pa.ChunkedArray) -> pa.ChunkedArray:
    return column


def _plain(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """``column`` with dictionaries decoded and string/binary views as large strings/binaries.

    Blocks may hold one column in different encodings; after this their states
    concatenate (``string`` and ``large_string`` promote, a view would not).
    """
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if pa.types.is_string_view(column.type):
        column = column.cast(pa.large_string())
    elif pa.types.is_binary_view(column.type):
        column = column.cast(pa.large_binary())
    return column


def _values(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """``column`` in plain encoding with NaN as null (pandas skips both)."""
    column = _plain(column)
    if pa.types.is_floating(column.type):
        nan = pc.is_nan(column)
        if pc.any(nan).as_py():
            column = pc.if_else(nan, pa.scalar(None, column.type), column)
    return column


def _summable(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Values to sum: bools and nulls as int64 (pandas sums True as 1), NaN as null."""
    if pa.types.is_boolean(column.type) or pa.types.is_null(column.type):
        column = column.cast(pa.int64())
    return _values(column)


def _floats(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Values as float64 with NaN as null, for means and variances."""
    return _values(column.cast(pa.float64()))


def _is_numeric(kind: pa.DataType) -> bool:
    return (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
            or pa.types.is_decimal(kind) or pa.types.is_null(kind))


# --------------------------------------------------------------------------- one hash aggregation

class _Plan:
    """One pyarrow hash aggregation of ``table`` by ``keys``, shared by every aggregation of a phase.

    Aggregations first register what they need (``aggregate``, ``want_groups``),
    then :meth:`run` executes it once, then each reads its results. Handles are
    positions in the result, so two requests never clash on a column name.
    """

    def __init__(self, table: pa.Table, keys: list[str]):
        self.table, self.keys = table, keys
        self._inputs: dict[tuple[str, Callable], str] = {}
        self._columns: dict[str, pa.ChunkedArray] = {}
        self._requests: dict[tuple[str, str], int] = {("", "count_all"): 0}  # group sizes, always
        self._want_groups = False
        self.result: pa.Table | None = None
        self.group_of_row: np.ndarray | None = None  # set by run() when want_groups() was called

    def aggregate(self, column: str, function: str, transform: Callable = _as_is) -> int:
        """Register ``function`` over ``transform(table[column])``; returns the handle for :meth:`get`."""
        source = (column, transform)
        if source not in self._inputs:
            name = f"__sluice_in{len(self._inputs)}"
            self._inputs[source] = name
            self._columns[name] = transform(self.table.column(column))
        return self._requests.setdefault((self._inputs[source], function), len(self._requests))

    def want_groups(self) -> None:
        """Ask :meth:`run` to set ``group_of_row``: for each table row, its result row."""
        self._want_groups = True

    def run(self) -> None:
        columns = {key: self.table.column(key) for key in self.keys} | self._columns
        specs: list[tuple] = []
        for column, function in self._requests:
            option = _OPTIONS.get(function)
            target: Any = [] if function == "count_all" else column
            specs.append((target, function) if option is None else (target, function, option))
        rows = self.table.num_rows
        with_rows = self._want_groups and bool(self.keys)
        if with_rows:
            columns[_ROW] = pa.array(np.arange(rows, dtype=np.int64))
            specs.append((_ROW, "list"))
        work = pa.table(columns) if columns else pa.table({_ROW: pa.nulls(rows)})
        self.result = work.group_by(self.keys, use_threads=True).aggregate(specs)
        if self._want_groups and not with_rows:
            self.group_of_row = np.zeros(rows, dtype=np.int64)  # keys=[]: one global group
        elif with_rows:
            lists = self.result.column(self.result.num_columns - 1).combine_chunks()
            group_of_row = np.empty(rows, dtype=np.int64)
            group_of_row[pc.list_flatten(lists).to_numpy()] = pc.list_parent_indices(lists).to_numpy()
            self.group_of_row = group_of_row
            self.result = self.result.drop_columns([self.result.column_names[-1]])

    @property
    def num_groups(self) -> int:
        assert self.result is not None
        return self.result.num_rows

    def get(self, handle: int) -> pa.ChunkedArray:
        assert self.result is not None
        return self.result.column(len(self.keys) + handle)

    def group_sizes(self) -> pa.ChunkedArray:
        return self.get(0)

    def key_values(self) -> list[Any]:
        """Each group's key: None for keys=[], the value for one key, a tuple for several."""
        assert self.result is not None
        if not self.keys:
            return [None] * self.num_groups
        rows = zip(*(self.result.column(k).to_pylist() for k in self.keys))
        return [row[0] if len(self.keys) == 1 else row for row in rows]


_Reader = Callable[[], list[pa.ChunkedArray | pa.Array]]


# --------------------------------------------------------------------------- aggregations

class AggregateFn:
    """An aggregation; use it directly for a custom one, Ray-style, with Python accumulators.

    ``init(key)`` makes a group's accumulator (``key``: the key value, a tuple for
    several keys, None without keys); ``accumulate_block(acc, block)`` folds in a
    ``pyarrow.Table`` of the group's rows (or ``accumulate_row(acc, row_dict)``
    one row at a time); ``merge(a, b)`` joins two accumulators of one group and
    must be associative and commutative; ``finalize(acc)`` gives the value
    (identity by default). Accumulators travel between processes with cloudpickle.

    >>> longest = AggregateFn(init=lambda key: 0, merge=max, name="longest",
    ...                       accumulate_block=lambda acc, b: max([acc, *pc.utf8_length(b["s"]).to_pylist()]))
    >>> t = pa.table({"k": [1, 1, 2], "s": ["a", "abc", "ab"]})
    >>> finalize_aggregate(partial_aggregate(t, ["k"], [longest]), ["k"], [longest]).to_pydict()
    {'k': [1, 2], 'longest': [3, 2]}
    """

    name: str
    on: str | None

    def __init__(self, init: Callable[[Any], Any], merge: Callable[[Any, Any], Any], name: str,
                 accumulate_row: Callable[[Any, dict], Any] | None = None,
                 accumulate_block: Callable[[Any, pa.Table], Any] | None = None,
                 finalize: Callable[[Any], Any] | None = None):
        if not isinstance(name, str) or not name:
            raise ValueError(f"AggregateFn name={name!r} must be a non-empty string: it names the "
                             "result column")
        for what, fn in (("init", init), ("merge", merge)):
            if not callable(fn):
                raise TypeError(f"AggregateFn {what}={fn!r} is not callable; pass a function, e.g. "
                                f"{'init=lambda key: 0' if what == 'init' else 'merge=lambda a, b: a + b'}")
        if accumulate_row is None and accumulate_block is None:
            raise ValueError(f"AggregateFn {name!r} needs accumulate_block=lambda acc, block: ... "
                             "(or accumulate_row=lambda acc, row: ...) to fold rows into the accumulator")
        self.init, self.merge, self.name = init, merge, name
        self.accumulate_row, self.accumulate_block = accumulate_row, accumulate_block
        self.finalize = finalize
        self.on = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    @property
    def state_names(self) -> list[str]:
        """Names of this aggregation's state columns, in order."""
        return [f"__{self.name}#{part}" for part in self._state_parts()]

    # The three phases, overridden by the built-ins with vectorized versions.
    def _state_parts(self) -> list[str]:
        return ["acc"]

    def _partial(self, plan: _Plan) -> _Reader:
        plan.want_groups()

        def read() -> list[pa.Array]:
            accs = [self.init(key) for key in plan.key_values()]
            for group, rows in enumerate(_rows_by_group(plan)):
                if len(rows):
                    accs[group] = self._accumulate(accs[group], plan.table.take(pa.array(rows)))
            return [pa.array([cloudpickle.dumps(acc) for acc in accs], type=pa.binary())]
        return read

    def _accumulate(self, acc: Any, rows: pa.Table) -> Any:
        if self.accumulate_block is not None:
            return self.accumulate_block(acc, rows)
        assert self.accumulate_row is not None  # __init__ requires one of the two
        for row in rows.to_pylist():
            acc = self.accumulate_row(acc, row)
        return acc

    def _combine(self, plan: _Plan) -> _Reader:
        plan.want_groups()

        def read() -> list[pa.Array]:
            states = plan.table.column(self.state_names[0]).to_pylist()
            merged = []
            for rows in _rows_by_group(plan):
                accs = [cloudpickle.loads(states[row]) for row in rows]
                acc = accs[0]
                for other in accs[1:]:
                    acc = self.merge(acc, other)
                merged.append(cloudpickle.dumps(acc))
            return [pa.array(merged, type=pa.binary())]
        return read

    def _finalize(self, state: pa.Table) -> pa.Array:
        accs = (cloudpickle.loads(blob) for blob in state.column(self.state_names[0]).to_pylist())
        finish = self.finalize or (lambda acc: acc)
        return pa.array([finish(acc) for acc in accs])


def _rows_by_group(plan: _Plan) -> list[np.ndarray]:
    """Each group's row positions in ``plan.table``, in table order."""
    assert plan.group_of_row is not None
    order = np.argsort(plan.group_of_row, kind="stable")
    ends = np.cumsum(np.bincount(plan.group_of_row, minlength=plan.num_groups))
    return np.split(order, ends[:-1])


def _alias(alias_name: str | None, default: str) -> str:
    if alias_name is not None and (not isinstance(alias_name, str) or not alias_name):
        raise ValueError(f"alias_name={alias_name!r} must be a non-empty string or None")
    return alias_name or default


def _check_on(on: Any, kind: str) -> str:
    if not isinstance(on, str) or not on:
        raise TypeError(f"{kind}(on={on!r}): on must be the name of a column, e.g. {kind}('x')")
    return on


class _BuiltIn(AggregateFn):
    """Base of the vectorized built-ins: their state is plain Arrow columns."""

    on: str

    def __init__(self, kind: str, on: str, alias_name: str | None):
        self.on = _check_on(on, kind)
        self.name = _alias(alias_name, f"{kind.lower()}({on})")

    def _numeric_input(self, plan: _Plan) -> None:
        kind = plan.table.column(self.on).type
        if not _is_numeric(kind):
            raise TypeError(f"{self.name} needs a numeric column, but column {self.on!r} has type {kind}; "
                            "cast it to a number first (e.g. with map_batches), or use Count, Min or Max")


class Count(AggregateFn):
    """Rows per group (``"count()"``); with ``on`` and ``ignore_nulls=True``, non-null values of ``on``."""

    def __init__(self, on: str | None = None, ignore_nulls: bool = False, alias_name: str | None = None):
        self.on = None if on is None else _check_on(on, "Count")
        self.ignore_nulls = ignore_nulls
        self.name = _alias(alias_name, f"count({on or ''})")

    def _state_parts(self) -> list[str]:
        return ["count"]

    def _partial(self, plan: _Plan) -> _Reader:
        if self.on is not None and self.ignore_nulls:
            handle = plan.aggregate(self.on, "count", _values)
            return lambda: [plan.get(handle)]
        return lambda: [plan.group_sizes()]

    def _combine(self, plan: _Plan) -> _Reader:
        handle = plan.aggregate(self.state_names[0], "sum")
        return lambda: [plan.get(handle).cast(pa.int64())]

    def _finalize(self, state: pa.Table) -> pa.ChunkedArray:
        return state.column(self.state_names[0])


class Sum(_BuiltIn):
    """Sum per group (``"sum(on)"``), skipping nulls and NaN; 0 for a group without values."""

    def __init__(self, on: str, alias_name: str | None = None):
        super().__init__("Sum", on, alias_name)

    def _state_parts(self) -> list[str]:
        return ["sum"]

    def _partial(self, plan: _Plan) -> _Reader:
        self._numeric_input(plan)
        handle = plan.aggregate(self.on, "sum", _summable)
        return lambda: [plan.get(handle)]

    def _combine(self, plan: _Plan) -> _Reader:
        handle = plan.aggregate(self.state_names[0], "sum")
        return lambda: [plan.get(handle)]

    def _finalize(self, state: pa.Table) -> pa.ChunkedArray:
        return state.column(self.state_names[0])


class Mean(_BuiltIn):
    """Mean per group (``"mean(on)"``) as float64, skipping nulls and NaN; null for a group without values."""

    def __init__(self, on: str, alias_name: str | None = None):
        super().__init__("Mean", on, alias_name)

    def _state_parts(self) -> list[str]:
        return ["sum", "count"]

    def _partial(self, plan: _Plan) -> _Reader:
        self._numeric_input(plan)
        total, count = plan.aggregate(self.on, "sum", _floats), plan.aggregate(self.on, "count", _floats)
        return lambda: [plan.get(total), plan.get(count)]

    def _combine(self, plan: _Plan) -> _Reader:
        total, count = (plan.aggregate(name, "sum") for name in self.state_names)
        return lambda: [plan.get(total).cast(pa.float64()), plan.get(count).cast(pa.int64())]

    def _finalize(self, state: pa.Table) -> pa.ChunkedArray:
        total, count = (state.column(name) for name in self.state_names)
        mean = pc.divide(total.cast(pa.float64()), count.cast(pa.float64()))
        return pc.if_else(pc.equal(count, 0), pa.scalar(None, pa.float64()), mean)


class _Extreme(_BuiltIn):
    """Min or Max: the state is the extreme value itself, in the input column's type."""

    function: str

    def __init__(self, on: str, alias_name: str | None = None):
        super().__init__(type(self).__name__, on, alias_name)

    def _state_parts(self) -> list[str]:
        return [self.function]

    def _partial(self, plan: _Plan) -> _Reader:
        kind = plan.table.column(self.on).type
        if pa.types.is_null(kind):
            return lambda: [pa.nulls(plan.num_groups)]  # pyarrow has no min of the null type
        if pa.types.is_nested(kind):
            raise TypeError(f"{self.name} needs an orderable column, but column {self.on!r} has type "
                            f"{kind}; use a custom AggregateFn for nested values")
        handle = plan.aggregate(self.on, self.function, _values)
        return lambda: [plan.get(handle)]

    def _combine(self, plan: _Plan) -> _Reader:
        name = self.state_names[0]
        if pa.types.is_null(plan.table.column(name).type):
            return lambda: [pa.nulls(plan.num_groups)]
        handle = plan.aggregate(name, self.function)
        return lambda: [plan.get(handle)]

    def _finalize(self, state: pa.Table) -> pa.ChunkedArray:
        return state.column(self.state_names[0])


class Min(_Extreme):
    """Smallest value per group (``"min(on)"``) of any orderable column, skipping nulls and NaN."""

    function = "min"


class Max(_Extreme):
    """Largest value per group (``"max(on)"``) of any orderable column, skipping nulls and NaN."""

    function = "max"


class Std(_BuiltIn):
    """Standard deviation per group (``"std(on)"``), ``ddof=1`` like pandas; null for ``ddof`` or fewer rows.

    Numerically stable: each block contributes (count, mean, M2) from pyarrow's
    variance, and states merge with Chan et al.'s pairwise formula generalized
    to many parts, never through a sum of squares.
    """

    def __init__(self, on: str, ddof: int = 1, alias_name: str | None = None):
        super().__init__("Std", on, alias_name)
        if isinstance(ddof, bool) or not isinstance(ddof, int) or ddof < 0:
            raise ValueError(f"Std(ddof={ddof!r}): ddof must be a non-negative integer "
                             "(1 for the sample std)")
        self.ddof = ddof

    def _state_parts(self) -> list[str]:
        return ["count", "mean", "m2"]

    def _partial(self, plan: _Plan) -> _Reader:
        self._numeric_input(plan)
        handles = [plan.aggregate(self.on, f, _floats) for f in ("count", "mean", "variance")]

        def read() -> list[pa.ChunkedArray]:
            count, mean, variance = (plan.get(h) for h in handles)
            m2 = pc.multiply(pc.fill_null(variance, 0.0), count.cast(pa.float64()))
            return [count, pc.fill_null(mean, 0.0), m2]
        return read

    def _combine(self, plan: _Plan) -> _Reader:
        plan.want_groups()

        def read() -> list[np.ndarray]:
            group, groups = plan.group_of_row, plan.num_groups
            assert group is not None
            count, mean, m2 = (plan.table.column(name).to_numpy() for name in self.state_names)
            count = count.astype(np.float64)
            total = np.bincount(group, weights=count, minlength=groups)
            new_mean = np.divide(np.bincount(group, weights=count * mean, minlength=groups), total,
                                 out=np.zeros(groups), where=total > 0)
            # M2 of a union = sum of the parts' M2 + each part's count * (its mean - the union's mean)**2
            spread = count * (mean - new_mean[group]) ** 2
            new_m2 = np.bincount(group, weights=m2 + spread, minlength=groups)
            return [pa.array(np.rint(total).astype(np.int64)), pa.array(new_mean), pa.array(new_m2)]
        return read

    def _finalize(self, state: pa.Table) -> pa.Array:
        count, _, m2 = (state.column(name).to_numpy() for name in self.state_names)
        dof = count - self.ddof
        valid = dof > 0
        std = np.sqrt(np.divide(np.maximum(m2, 0.0), dof, out=np.zeros(len(count)), where=valid))
        return pa.array(std, mask=~valid)


# --------------------------------------------------------------------------- the three phases

def _check_request(keys: Sequence[str] | str, aggs: Sequence[AggregateFn]) -> list[str]:
    keys = [keys] if isinstance(keys, str) else list(keys)
    if len(set(keys)) != len(keys):
        raise ValueError(f"keys={keys} repeat a column; name each key column once")
    seen: set[str] = set(keys)
    for agg in aggs:
        if not isinstance(agg, AggregateFn):
            raise TypeError(f"aggregate got {agg!r}, which is not an AggregateFn; pass e.g. "
                            "Count(), Sum('x'), Mean('x'), Min('x'), Max('x'), Std('x')")
        if agg.name in seen:
            what = "a key column" if agg.name in keys else "another aggregation's"
            raise ValueError(f"aggregation name {agg.name!r} clashes with {what} name; give it "
                             "another with alias_name=...")
        seen.add(agg.name)
    return keys


def _drop_missing_keys(block: pa.Table, keys: list[str]) -> pa.Table:
    """``block`` without rows whose key is null or NaN; float keys with -0.0 as 0.0; plain encodings."""
    keep = None
    for key in keys:
        column = original = block.column(key)
        if pa.types.is_nested(column.type):
            raise TypeError(f"cannot group by column {key!r} of type {column.type}; group by number, "
                            "string, bool or date/time columns (map nested values to a string key first)")
        column = _plain(column)
        if pa.types.is_floating(column.type):
            if pa.types.is_float16(column.type):
                column = column.cast(pa.float32())
            column = pc.add(column, pa.scalar(0.0, column.type))  # -0.0 + 0.0 == +0.0
            nan = pc.fill_null(pc.is_nan(column), False)
            if pc.any(nan).as_py():
                keep = pc.invert(nan) if keep is None else pc.and_(keep, pc.invert(nan))
        if column.null_count:
            valid = pc.is_valid(column)
            keep = valid if keep is None else pc.and_(keep, valid)
        if column is not original:
            block = block.set_column(block.schema.get_field_index(key), key, column)
    return block if keep is None else block.filter(keep)


def _empty_block(keys: list[str], aggs: Sequence[AggregateFn]) -> pa.Table:
    """A block with no rows and null-typed columns, standing in for a block with no columns."""
    names = dict.fromkeys([*keys, *(a.on for a in aggs if a.on is not None)])
    return pa.table({name: pa.nulls(0) for name in names})


def _state_table(plan: _Plan, aggs: Sequence[AggregateFn], readers: list[_Reader]) -> pa.Table:
    assert plan.result is not None
    columns: dict[str, Any] = {key: plan.result.column(key) for key in plan.keys}
    for agg, read in zip(aggs, readers):
        columns.update(zip(agg.state_names, read()))
    return pa.table(columns)


def partial_aggregate(block: pa.Table, keys: Sequence[str], aggs: Sequence[AggregateFn]) -> pa.Table:
    """One row per distinct key of ``block``: the key columns, then each aggregation's state columns.

    Rows with a null or NaN key are dropped. ``keys=[]`` gives one global row,
    also for an empty block. A missing column raises :class:`ColumnNotFoundError`
    (a ``KeyError``) naming it; a non-numeric column under Sum, Mean or Std a
    ``TypeError`` naming it and its type.
    """
    keys = _check_request(keys, aggs)
    if block.num_columns == 0 and block.num_rows == 0:
        block = _empty_block(keys, aggs)
    require_columns(block, [*keys, *(a.on for a in aggs if a.on is not None)], "aggregate")
    plan = _Plan(_drop_missing_keys(block, keys), keys)
    readers = [agg._partial(plan) for agg in aggs]
    plan.run()
    return _state_table(plan, aggs, readers)


def combine_partials(partials: Sequence[pa.Table], keys: Sequence[str],
                     aggs: Sequence[AggregateFn]) -> pa.Table:
    """Merge state tables made by :func:`partial_aggregate` (or by this) into one row per key.

    The merge is associative and commutative: any grouping and order of the
    partials gives the same final result. Combining nothing gives a state table
    without rows.
    """
    keys = _check_request(keys, aggs)
    partials = [p for p in partials if p.num_columns > 0]
    if not partials:
        return partial_aggregate(_empty_block(keys, aggs), keys, aggs).slice(0, 0)
    needed = [*keys, *(name for agg in aggs for name in agg.state_names)]
    for partial in partials:
        try:
            require_columns(partial, needed, "combine_partials")
        except ColumnNotFoundError as err:
            raise ColumnNotFoundError(f"{err}; pass tables made by partial_aggregate with the same "
                                      "keys and aggregations") from None
    partials = [p for p in partials if p.num_rows] or partials[:1]
    if len(partials) == 1:
        return partials[0].select(needed)  # already one row per key (or none)
    state = pa.concat_tables([p.select(needed) for p in partials], promote_options="permissive")
    plan = _Plan(state, keys)
    readers = [agg._combine(plan) for agg in aggs]
    plan.run()
    return _state_table(plan, aggs, readers)


def finalize_aggregate(state: pa.Table, keys: Sequence[str], aggs: Sequence[AggregateFn]) -> pa.Table:
    """The key columns and one column per aggregation (named ``agg.name``), rows sorted by key.

    >>> t = pa.table({"k": ["b", "a", "b"], "x": [1, 2, 3]})
    >>> aggs = [Count(), Sum("x"), Mean("x")]
    >>> finalize_aggregate(partial_aggregate(t, ["k"], aggs), ["k"], aggs).to_pydict()
    {'k': ['a', 'b'], 'count()': [1, 2], 'sum(x)': [2, 4], 'mean(x)': [2.0, 2.0]}
    """
    keys = _check_request(keys, aggs)
    if state.num_columns == 0:
        state = combine_partials([], keys, aggs)
    require_columns(state, [*keys, *(name for agg in aggs for name in agg.state_names)],
                    "finalize_aggregate")
    columns: dict[str, Any] = {key: state.column(key) for key in keys}
    for agg in aggs:
        columns[agg.name] = agg._finalize(state)
    result = pa.table(columns) if columns else pa.table({})
    if keys and result.num_rows > 1:
        result = result.take(pc.sort_indices(result, sort_keys=[(k, "ascending") for k in keys]))
    return result
