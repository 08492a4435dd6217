"""etl: read 10M rows of Parquet, double a column, filter, add a column, group by key, sum.

The anchors' script on every system: sluice (``sluice.data``) and Ray (Ray Data) run the
same code, since sluice.data has Ray Data's API (three ``map_batches`` over pyarrow
batches, then ``groupby("key").sum("z")``); Dask runs it in ``dask.dataframe``; and
``pyarrow`` is the anchors' single-process script (``pyarrow.dataset`` and
``pyarrow.compute``, no runtime: the floor a distributed engine's overhead is measured
against). The targets: sluice at most 0.1x Ray's time, 0.5x Dask's and 2x pyarrow's.

The data (20 Parquet files of 500,000 rows, seeded like the anchors' ``make_data.py``) is
written on first use to ``$ETL_DATA`` or ``benchmarks/data/etl-<rows>``. Each run warms
its system with one untimed pass over the same data, so worker start-up, function export
and the first read of the files stay outside the timing.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from benchmarks.workloads._common import (
    NUM_CPUS,
    Timings,
    dask_client,
    ray_runtime,
    sluice_runtime,
    time_reps,
)

TITLE = "10M rows of Parquet: map, filter, group-by sum"
TARGET_VS_RAY = 0.1
TARGET_VS_DASK = 0.5  # at least 2x faster than dask.dataframe
TARGET_VS_PYARROW = 2.0  # within 2x of the single-process pyarrow script
KEYS = 1_000
COLUMNS = ["key", "x", "y"]


def skip_reason() -> str | None:
    """Why the runner skips etl: only when sluice.data cannot be imported."""
    return data_skip_reason("etl")


def data_skip_reason(workload: str) -> str | None:
    """A note when ``import sluice.data`` fails, else None (shared with etl_rows)."""
    try:
        importlib.import_module("sluice.data")
    except Exception as exc:  # noqa: BLE001 - any failure to import means no sluice version
        return f"{workload} skipped: sluice.data does not import ({type(exc).__name__}: {exc})"
    return None


def size(quick: bool) -> tuple[int, int]:
    """(files, rows per file)."""
    return (4, 50_000) if quick else (20, 500_000)


def ensure_data(quick: bool) -> str:
    """The data set's directory, written first if it is not there yet."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    files, rows = size(quick)
    default = Path(__file__).resolve().parents[1] / "data" / f"etl-{files * rows}"
    directory = Path(os.environ.get("ETL_DATA", default))
    if len(list(directory.glob("part-*.parquet"))) == files:
        return str(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(files):
        table = pa.table({
            "key": rng.integers(0, KEYS, rows), "x": rng.random(rows), "y": rng.random(rows),
            "s": pa.array(rng.integers(0, 100, rows)).cast(pa.string()),
        })
        pq.write_table(table, directory / f"part-{i:03d}.parquet.tmp")
        os.replace(directory / f"part-{i:03d}.parquet.tmp", directory / f"part-{i:03d}.parquet")
    return str(directory)


def _steps():
    """The three batch functions, defined here so that every system pickles them by
    value (workers need not import this module)."""
    import pyarrow.compute as pc

    def double_x(b):
        return b.set_column(b.schema.get_field_index("x"), "x", pc.multiply(b["x"], 2))

    def keep(b):
        return b.filter(pc.greater(b["x"], 0.5))

    def add_z(b):
        return b.append_column("z", pc.add(b["x"], b["y"]))

    return double_x, keep, add_z


def run_sluice(reps: int, quick: bool = False) -> Timings:
    data = ensure_data(quick)
    with sluice_runtime():
        import sluice.data as sd

        return _run_data_api(sd, data, reps)


def run_ray(reps: int, quick: bool = False) -> Timings:
    data = ensure_data(quick)
    with ray_runtime() as ray:
        from ray.data.context import DataContext

        DataContext.get_current().enable_progress_bars = False
        return _run_data_api(ray.data, data, reps)


def _run_data_api(data_api, data: str, reps: int) -> Timings:
    """The workload in Ray Data's API, which sluice.data shares: the same code times both."""
    double_x, keep, add_z = _steps()

    def work() -> None:
        ds = (data_api.read_parquet(data, columns=COLUMNS)
              .map_batches(double_x, batch_format="pyarrow")
              .map_batches(keep, batch_format="pyarrow")
              .map_batches(add_z, batch_format="pyarrow"))
        assert len(ds.groupby("key").sum("z").to_pandas()) == KEYS

    work()  # warm-up, untimed
    return Timings(time_reps(work, reps))


def run_dask(reps: int, quick: bool = False) -> Timings:
    import dask.dataframe as dd

    data = ensure_data(quick)
    with dask_client():
        def work() -> None:
            df = dd.read_parquet(data, columns=COLUMNS)
            df["x"] = df["x"] * 2
            df = df[df["x"] > 0.5]
            df["z"] = df["x"] + df["y"]
            assert len(df.groupby("key")["z"].sum().compute()) == KEYS

        work()  # warm-up, untimed
        return Timings(time_reps(work, reps))


def run_pyarrow(reps: int, quick: bool = False) -> Timings:
    """The anchors' single-process script: one process, pyarrow's thread pool capped at
    the same two CPUs the runtimes get."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    data = ensure_data(quick)
    pa.set_cpu_count(NUM_CPUS)

    def work() -> None:
        table = pads.dataset(data).to_table(columns=COLUMNS)
        x = pc.multiply(table["x"], 2)
        table = table.set_column(table.schema.get_field_index("x"), "x", x)
        table = table.filter(pc.greater(x, 0.5))
        table = table.append_column("z", pc.add(table["x"], table["y"]))
        assert table.group_by("key").aggregate([("z", "sum")]).num_rows == KEYS

    work()  # warm-up, untimed
    return Timings(time_reps(work, reps))
