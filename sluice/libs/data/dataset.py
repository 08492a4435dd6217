"""Dataset: a lazy, immutable plan over Arrow blocks; every transform returns a new Dataset.

Nothing runs until a consumer asks (``take``, ``count``, ``iter_batches``,
``write_parquet``, ...). Then the plan is optimized (pushdown, limits), lowered
through the compiler (fusion) and streamed by the executor.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

import sluice
from sluice.libs.data import transforms as T
from sluice.libs.data.block import check_batch_format, concat_blocks, to_batch
from sluice.libs.data.iteration import BlockIteration
from sluice.libs.data.columns import output_columns, require, require_of
from sluice.libs.data.executor import BlockRef, Execution, MaterializedSource
from sluice.libs.data.logical import Kind, LogicalOp
from sluice.libs.data.planner import DataPlan, plan_dataset
from sluice.libs.data.progress import ExecutionStats
from sluice.libs.data.shuffle import ShuffleSpec

_TASK_OPTIONS = ("num_cpus", "num_gpus", "resources", "max_retries")


class ActorPoolSpec:
    """How to build the actors of ``map_batches(CallableClass, concurrency=n)``."""

    def __init__(self, cls: type, size: int, batch_size: int | None, batch_format: str,
                 ctor_args: tuple, ctor_kwargs: dict, fn_args: tuple, fn_kwargs: dict,
                 num_cpus: float, num_gpus: float):
        self.cls, self.size, self.batch_size, self.batch_format = cls, size, batch_size, batch_format
        self.ctor_args, self.ctor_kwargs = ctor_args, ctor_kwargs
        self.fn_args, self.fn_kwargs = fn_args, fn_kwargs
        self.num_cpus, self.num_gpus = num_cpus, num_gpus
        self.class_name = cls.__name__
        self.name = f"MapBatches({cls.__name__})"

    def make_transform(self) -> Callable[[pa.Table], pa.Table]:
        """Construct the user's class once (in the actor) and wrap its ``__call__``."""
        instance = self.cls(*self.ctor_args, **self.ctor_kwargs)
        return T.MapBatches(instance, self.batch_size, self.batch_format, self.fn_args, self.fn_kwargs,
                            name=self.name)


def _options(where: str, options: dict) -> tuple:
    unknown = sorted(set(options) - set(_TASK_OPTIONS))
    if unknown:
        raise TypeError(f"{where}: unknown option(s) {unknown}; the task options are "
                        f"{list(_TASK_OPTIONS)}")
    return tuple(sorted(options.items()))


def _check_callable(fn: Any, where: str) -> None:
    if not callable(fn):
        raise TypeError(f"{where} takes a function (or a callable class), not {type(fn).__name__} "
                        f"{fn!r:.60}")


class Dataset(BlockIteration):
    """A distributed collection of rows in Arrow blocks, built lazily. Make one with
    ``sluice.data.range``, ``from_items``, ``read_parquet``, ...

    >>> import sluice, sluice.data
    >>> sluice.data.range(5).map(lambda r: {"id": r["id"] * 2}).take(3)
    [{'id': 0}, {'id': 2}, {'id': 4}]
    >>> sluice.shutdown()    # the first action started a runtime
    """

    def __init__(self, op: LogicalOp):
        self._op = op
        self._last: ExecutionStats | None = None

    # ------------------------------------------------------------------ building
    def _then(self, kind: Kind, name: str, **fields: Any) -> Dataset:
        return Dataset(LogicalOp(kind, name, inputs=(self._op,), **fields))

    def _require(self, columns: list[str] | tuple[str, ...], where: str) -> None:
        """A ColumnNotFoundError now when ``columns`` are not all among this dataset's columns
        and those are known without reading data (else the check waits for compile)."""
        require(columns, output_columns(self._op), where)

    def _map(self, fn: Any, rows_kept: bool = False, pushdown: tuple = (), options: tuple = ()) -> Dataset:
        return self._then(Kind.MAP, fn.name, fn=fn, rows_kept=rows_kept, pushdown=pushdown,
                          resources=options)

    def map(self, fn: Callable[[dict], dict], *, fn_args: tuple = (), fn_kwargs: dict | None = None,
            jit: bool = False, **options: Any) -> Dataset:
        """Each row (a dict) -> one row. ``jit=True`` compiles ``fn`` with numba over numeric columns."""
        _check_callable(fn, "map")
        if jit:
            from sluice.libs.data.jit import JitMapRows

            return self._map(JitMapRows(fn), rows_kept=True, options=_options("map", options))
        return self._map(T.MapRows(fn, fn_args, fn_kwargs), rows_kept=True, options=_options("map", options))

    def map_batches(self, fn: Any, *, batch_size: int | None = None, batch_format: str = "default",
                    fn_args: tuple = (), fn_kwargs: dict | None = None,
                    fn_constructor_args: tuple = (), fn_constructor_kwargs: dict | None = None,
                    concurrency: int | None = None, jit: bool = False, **options: Any) -> Dataset:
        """Each batch of ``batch_size`` rows (None: a whole block) in ``batch_format``
        (``"pyarrow"``, ``"pandas"``, ``"numpy"``/``"default"``: a dict of arrays) -> a batch.

        ``fn`` may be a callable class: it runs on a pool of ``concurrency`` actors, each
        constructed once with ``fn_constructor_args``. ``jit=True`` compiles ``fn`` with numba
        (it receives a numpy structured array of the numeric columns).
        """
        _check_callable(fn, "map_batches")
        check_batch_format(batch_format)
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"map_batches(batch_size={batch_size!r}): give a positive int, or None "
                             "for whole blocks")
        opts = _options("map_batches", options)
        if inspect.isclass(fn):
            size = 1 if concurrency is None else concurrency
            if not isinstance(size, int) or isinstance(size, bool) or size < 1:
                raise ValueError(f"map_batches(concurrency={concurrency!r}): give the number of actors, "
                                 "an int >= 1")
            o = dict(opts)
            spec = ActorPoolSpec(fn, size, batch_size, batch_format, fn_constructor_args,
                                 fn_constructor_kwargs or {}, fn_args, fn_kwargs or {},
                                 o.get("num_cpus", 0), o.get("num_gpus", 0))
            return self._then(Kind.ACTOR_MAP, spec.name, fn=spec, concurrency=size, resources=opts)
        if fn_constructor_args or fn_constructor_kwargs:
            raise TypeError("map_batches: fn_constructor_args are for a callable class; "
                            f"{T.fn_name(fn)} is a function")
        if jit:
            from sluice.libs.data.jit import JitMapBatches

            return self._map(JitMapBatches(fn, batch_size), options=opts)
        return self._map(T.MapBatches(fn, batch_size, batch_format, fn_args, fn_kwargs), options=opts)

    def filter(self, fn: Callable[[dict], bool] | pc.Expression | None = None, *,
               expr: pc.Expression | None = None, **options: Any) -> Dataset:
        """Rows for which ``fn(row)`` is true, or that a ``pyarrow.compute`` expression selects.

        An expression (``filter(expr=pc.field("x") > 0.5)``) runs vectorized and can be
        pushed into a Parquet read; a function cannot.
        """
        if isinstance(fn, pc.Expression):
            fn, expr = None, fn
        if (fn is None) == (expr is None):
            raise TypeError("filter takes either a row function or expr=<pyarrow.compute expression>")
        if expr is not None:
            if not isinstance(expr, pc.Expression):
                raise TypeError(f"filter(expr={expr!r:.60}): give a pyarrow.compute expression, e.g. "
                                "pc.field('x') > 0.5")
            keep = T.FilterExpr(expr)
            require_of(keep, output_columns(self._op), f"filter(expr={expr})")
            return self._map(keep, pushdown=("filter", expr), options=_options("filter", options))
        _check_callable(fn, "filter")
        return self._map(T.FilterRows(fn), options=_options("filter", options))

    def flat_map(self, fn: Callable[[dict], list], *, fn_args: tuple = (), fn_kwargs: dict | None = None,
                 **options: Any) -> Dataset:
        """Each row -> any number of rows (a list of dicts)."""
        _check_callable(fn, "flat_map")
        return self._map(T.FlatMap(fn, fn_args, fn_kwargs), options=_options("flat_map", options))

    def select_columns(self, cols: list[str] | str) -> Dataset:
        """Only these columns (pushed into a Parquet read when it is directly below)."""
        cols = [cols] if isinstance(cols, str) else list(cols)
        self._require(cols, f"select_columns({cols})")
        return self._map(T.SelectColumns(cols), rows_kept=True, pushdown=("select", tuple(cols)))

    def drop_columns(self, cols: list[str] | str) -> Dataset:
        """Every column but these."""
        cols = [cols] if isinstance(cols, str) else list(cols)
        self._require(cols, f"drop_columns({cols})")
        return self._map(T.DropColumns(cols), rows_kept=True)

    def add_column(self, col: str, fn: Callable[[Any], Any], *, batch_format: str = "pandas") -> Dataset:
        """A new column ``col`` = ``fn(batch)`` (one value per row; replaces a column of that name)."""
        _check_callable(fn, "add_column")
        check_batch_format(batch_format)
        return self._map(T.AddColumn(col, fn, batch_format), rows_kept=True)

    def rename_columns(self, names: dict[str, str] | list[str]) -> Dataset:
        """Columns renamed: ``{old: new}``."""
        if not isinstance(names, dict):
            raise TypeError(f"rename_columns({names!r:.60}): give a dict of old name -> new name")
        self._require(list(names), f"rename_columns({names!r:.60})")
        return self._map(T.RenameColumns(names), rows_kept=True)

    def limit(self, n: int) -> Dataset:
        """The first ``n`` rows. Upstream stops reading once they are there."""
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"limit({n!r}): give a row count, an int >= 0")
        return self._then(Kind.LIMIT, f"Limit({n})", limit=n)

    def union(self, *others: Dataset) -> Dataset:
        """The rows of this dataset, then of each of ``others``."""
        for o in others:
            if not isinstance(o, Dataset):
                raise TypeError(f"union takes Datasets, not {type(o).__name__}")
        return Dataset(LogicalOp(Kind.UNION, "Union", inputs=(self._op, *(o._op for o in others))))

    def _shuffle(self, name: str, spec: ShuffleSpec) -> Dataset:
        return self._then(Kind.SHUFFLE, name, fn=spec)

    def repartition(self, num_blocks: int) -> Dataset:
        """The same rows in order, in ``num_blocks`` blocks of near-equal size."""
        if not isinstance(num_blocks, int) or num_blocks < 1:
            raise ValueError(f"repartition({num_blocks!r}): give a block count, an int >= 1")
        return self._shuffle(f"Repartition({num_blocks})", ShuffleSpec("repartition", num_outputs=num_blocks))

    def random_shuffle(self, *, seed: int | None = None, num_blocks: int | None = None) -> Dataset:
        """The rows in a random order (the same order for the same ``seed``)."""
        return self._shuffle("RandomShuffle", ShuffleSpec("random_shuffle", seed=seed, num_outputs=num_blocks))

    def sort(self, key: str | list[str], descending: bool = False) -> Dataset:
        """Rows ordered by ``key`` (range-partitioned by sampled boundaries, each range sorted)."""
        keys = (key,) if isinstance(key, str) else tuple(key)
        if not keys:
            raise ValueError("sort needs at least one key column")
        self._require(keys, f"sort({key!r})")
        return self._shuffle(f"Sort({', '.join(keys)})", ShuffleSpec("sort", keys=keys, descending=descending))

    def groupby(self, key: str | list[str] | None) -> Any:
        """Rows grouped by ``key`` for ``.count() .sum() .mean() .min() .max() .std()
        .aggregate() .map_groups()``."""
        from sluice.libs.data.grouped import GroupedData

        keys = () if key is None else (key,) if isinstance(key, str) else tuple(key)
        self._require(keys, f"groupby({key!r})")
        return GroupedData(self, keys)

    def aggregate(self, *aggs: Any) -> dict:
        """Aggregates over the whole dataset: a dict of aggregate name -> value."""
        from sluice.libs.data.grouped import GroupedData

        table = GroupedData(self, ()).aggregate(*aggs).to_arrow()
        return {name: table.column(name)[0].as_py() for name in table.column_names} if table.num_rows else {
            a.name: None for a in aggs}

    def sum(self, on: str) -> Any:
        """The sum of column ``on``."""
        from sluice.libs.data.aggregate import Sum

        return self.aggregate(Sum(on))[f"sum({on})"]

    def min(self, on: str) -> Any:
        """The minimum of column ``on``."""
        from sluice.libs.data.aggregate import Min

        return self.aggregate(Min(on))[f"min({on})"]

    def max(self, on: str) -> Any:
        """The maximum of column ``on``."""
        from sluice.libs.data.aggregate import Max

        return self.aggregate(Max(on))[f"max({on})"]

    def mean(self, on: str) -> Any:
        """The mean of column ``on``."""
        from sluice.libs.data.aggregate import Mean

        return self.aggregate(Mean(on))[f"mean({on})"]

    def std(self, on: str, ddof: int = 1) -> Any:
        """The standard deviation of column ``on``."""
        from sluice.libs.data.aggregate import Std

        return self.aggregate(Std(on, ddof=ddof))[f"std({on})"]

    # ------------------------------------------------------------------ planning and views
    def _plan(self, optimize: bool = True) -> DataPlan:
        return plan_dataset(self._op, optimize)

    def explain(self, verbose: bool = False) -> str:
        """The physical Plan as text (stages, fused ops, what was pushed into reads)."""
        from sluice.compiler.views import explain

        dplan = self._plan()
        reads = [f"  {op.name}: {op.source.describe()}" for op in dplan.logical.values()
                 if op.kind is Kind.READ]
        text = explain(dplan.plan, verbose=verbose)
        return text + ("\nReads:\n" + "\n".join(dict.fromkeys(reads)) if reads else "")

    def visualize(self, path: str | None = None, level: str = "physical") -> Any:
        """A graphviz drawing of the physical Plan (the compiler's view); saved when ``path`` is given."""
        from sluice.compiler.views import visualize

        return visualize(self._plan().plan, path, level=level)

    # ------------------------------------------------------------------ running
    def _execute(self) -> Iterator[BlockRef]:
        run = Execution(self._plan())
        self._last = run.stats
        return run.block_refs()

    def iter_internal_ref_bundles(self) -> Iterator[BlockRef]:
        """Finished output blocks in order, as store references (for libraries on sluice.data).
        A materialized dataset's blocks come as they are, with no task run (its reader may
        be a process whose cluster has no CPU to spare, e.g. a training gang's split)."""
        op = self._op
        if op.kind == Kind.READ and not op.inputs and isinstance(op.source, MaterializedSource):
            return iter(list(op.source.refs))
        return self._execute()

    def _iter_blocks(self) -> Iterator[pa.Table]:
        for ref in self._execute():
            block = sluice.get(ref.block)
            del ref
            yield block

    def streaming_split(self, n: int, *, equal: bool = False,
                        locality_hints: list | None = None) -> list[Any]:
        """``n`` iterators over disjoint shares of one execution (per epoch) of this dataset,
        read in parallel by ``n`` consumers: blocks go to whichever asks first, or with
        ``equal=True`` the same number of rows to each (up to ``n - 1`` rows dropped). See
        :mod:`sluice.libs.data.split`."""
        from sluice.libs.data.split import streaming_split

        return streaming_split(self, n, equal)

    def take(self, limit: int = 20) -> list[dict]:
        """The first ``limit`` rows as dicts (reads no more than it needs)."""
        limited = self.limit(limit)
        rows = limited.take_all()
        self._last = limited._last
        return rows

    def take_all(self, limit: int | None = None) -> list[dict]:
        """Every row as a dict (a ValueError past ``limit`` rows, when given)."""
        rows = self.to_arrow().to_pylist()
        if limit is not None and len(rows) > limit:
            raise ValueError(f"take_all(limit={limit}): the dataset has {len(rows)} rows; raise the limit "
                             "or use take(n)")
        return rows

    def take_batch(self, batch_size: int = 20, *, batch_format: str = "default") -> Any:
        """The first ``batch_size`` rows as one batch."""
        check_batch_format(batch_format)
        return to_batch(self.limit(batch_size).to_arrow(), "numpy" if batch_format == "default" else batch_format)

    def show(self, limit: int = 20) -> None:
        """Print the first rows."""
        for row in self.take(limit):
            print(row)

    def to_arrow(self) -> pa.Table:
        """Every block joined into one ``pyarrow.Table``."""
        blocks = list(self._iter_blocks())
        non_empty = [b for b in blocks if b.num_rows] or blocks[:1]
        return concat_blocks(non_empty)

    def to_pandas(self) -> Any:
        """The dataset as one pandas DataFrame."""
        return self.to_arrow().to_pandas()

    def to_numpy(self) -> dict:
        """The dataset as a dict of column -> numpy array."""
        return to_batch(self.to_arrow(), "numpy")

    def count(self) -> int:
        """The number of rows; from Parquet footers alone when no op changes the row count."""
        dplan = self._plan()
        root = dplan.root
        while root.kind is Kind.MAP and root.rows_kept:
            root = root.inputs[0]
        if root.kind is Kind.READ:
            rows = root.source.count_rows()
            if rows is not None:
                self._last = ExecutionStats(metadata_only=f"{root.name}: {root.source.describe()}")
                self._last.finished = self._last.started
                return rows
        return sum(ref.num_rows for ref in self._execute())

    def schema(self) -> pa.Schema | None:
        """The schema of the rows (the read's schema when no op changes it; else of the first block)."""
        op = self._plan().root
        if op.kind is Kind.READ:
            schema = op.source.schema()
            if schema is not None:
                return schema
        for block in self.limit(1)._iter_blocks():
            return block.schema
        return None

    def columns(self) -> list[str]:
        """The column names."""
        schema = self.schema()
        return list(schema.names) if schema is not None else []

    def materialize(self) -> Dataset:
        """Run the plan now and keep its blocks in the object store (a Dataset over them)."""
        refs = [ref for ref in self._execute()]
        for ref in refs:
            ref.meta()
        out = Dataset(LogicalOp(Kind.READ, "FromBlocks", source=MaterializedSource(refs)))
        out._last = self._last
        return out

    def stats(self) -> str:
        """Per-stage wall time, rows and bytes of this dataset's last run."""
        if self._last is None:
            return "this dataset has not run yet; consume it (take, count, iter_batches, write_*) first"
        return self._last.summary()

    # ------------------------------------------------------------------ sinks
    def write_parquet(self, path: str, **options: Any) -> list[str]:
        """One Parquet file per block in folder ``path``; ``_SUCCESS`` marks a complete write."""
        return self._write(path, "parquet", options)

    def write_csv(self, path: str, **options: Any) -> list[str]:
        """One CSV file per block in folder ``path``."""
        return self._write(path, "csv", options)

    def write_json(self, path: str, **options: Any) -> list[str]:
        """One JSON-lines file per block in folder ``path``."""
        return self._write(path, "json", options)

    def _write(self, path: str, fmt: str, options: dict) -> list[str]:
        import os

        from sluice.libs.data.sinks import abort_write, commit_write, prepare_write

        folder = prepare_write(str(path))
        before = set(os.listdir(folder))
        writer = _WriteBlock(folder, fmt, options)
        written = Dataset(LogicalOp(Kind.MAP, writer.name, inputs=(self._op,), fn=writer))
        try:
            table = written.to_arrow()
        except BaseException:
            # Files this write made stay out of sight of readers: no _SUCCESS, and gone.
            made = [os.path.join(folder, n) for n in set(os.listdir(folder)) - before
                    if n.startswith("part-")]
            abort_write(folder, made)
            raise
        finally:
            self._last = written._last
        paths = [p for p in table.column("path").to_pylist() if p] if "path" in table.column_names else []
        commit_write(folder, paths)
        return paths

    def __repr__(self) -> str:
        return f"Dataset({self._op.name})"


class _WriteBlock:
    """The write op: each block into its own file (the file name comes from the block index)."""

    wants_index = True  # the stage task passes the block's index: files are part-{index}

    def __init__(self, folder: str, fmt: str, options: dict):
        self.folder, self.fmt, self.options = folder, fmt, options
        self.name = f"Write{fmt.upper() if fmt != 'parquet' else 'Parquet'}"

    def __call__(self, block: pa.Table, index: int) -> pa.Table:
        from sluice.libs.data.sinks import write_block

        if not block.num_rows:
            return pa.table({"path": pa.array([], pa.string())})
        return pa.table({"path": [write_block(block, self.folder, self.fmt, index, **self.options)]})
