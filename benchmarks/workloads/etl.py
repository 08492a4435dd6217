"""etl: read 10M rows of Parquet, double a column, filter, add a column, group by key, sum.

The hook for ``sluice.data``, which does not exist yet. Until it does, the runner skips
this workload with the note from ``skip_reason()``. The Ray (Ray Data) and Dask
(``dask.dataframe``) versions are written, following the anchors; to enable the
workload, write ``run_sluice`` with the same steps and the same check, and the skip
lifts by itself.

The data (20 Parquet files of 500,000 rows, seeded like the anchors' ``make_data.py``) is
written on first use to ``$ETL_DATA`` or ``benchmarks/data/etl-<rows>``.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from benchmarks.workloads._common import Timings, dask_client, ray_runtime, time_reps

TITLE = "10M rows of Parquet: map, filter, group-by sum"
TARGET_VS_RAY = None  # no target set yet
KEYS = 1_000
COLUMNS = ["key", "x", "y"]

run_sluice = None  # hook: sluice.data's version goes here (see the module docstring)


def skip_reason() -> str | None:
    """Why the runner skips etl, or None once sluice has a version of it."""
    if importlib.util.find_spec("sluice.data") is None:
        return ("etl skipped: sluice.data does not exist yet (the Ray and Dask versions are "
                "ready in benchmarks/workloads/etl.py; add run_sluice when it does)")
    if run_sluice is None:
        return "etl skipped: sluice.data exists; write run_sluice in benchmarks/workloads/etl.py"
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


def run_ray(reps: int, quick: bool = False) -> Timings:
    import pyarrow.compute as pc

    data = ensure_data(quick)
    with ray_runtime() as ray:
        from ray.data.context import DataContext

        DataContext.get_current().enable_progress_bars = False

        def double_x(b):
            return b.set_column(b.schema.get_field_index("x"), "x", pc.multiply(b["x"], 2))

        def keep(b):
            return b.filter(pc.greater(b["x"], 0.5))

        def add_z(b):
            return b.append_column("z", pc.add(b["x"], b["y"]))

        def work() -> None:
            ds = (ray.data.read_parquet(data, columns=COLUMNS)
                  .map_batches(double_x, batch_format="pyarrow")
                  .map_batches(keep, batch_format="pyarrow")
                  .map_batches(add_z, batch_format="pyarrow"))
            assert len(ds.groupby("key").sum("z").to_pandas()) == KEYS

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

        return Timings(time_reps(work, reps))
