"""Write notebooks/02-etl.ipynb and execute it, saving its outputs.

Run from anywhere: ``python notebooks/build_02_etl.py``. The notebook is built
from the cells below, executed top to bottom in a fresh ``python3`` kernel (with
this checkout on its PYTHONPATH), and saved with its outputs, so the plan, the
drawing, the stats and the chart show on GitHub and in any notebook viewer. The
notebook writes its data into a temporary folder and removes it at the end.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))  # nbbuild, beside this file
import nbbuild

REPO_ROOT = nbbuild.REPO_ROOT
NOTEBOOK = REPO_ROOT / "notebooks" / "02-etl.ipynb"

CELLS = [
    ("md", """\
# A batch ETL job: Parquet in, Parquet out

`sluice.data` runs Ray Data's API over Arrow blocks. This notebook writes a week of
synthetic taxi trips as hive-partitioned Parquet files, then runs one job over them:

```
read_parquet -> filter -> select_columns -> map_batches -> groupby().aggregate() -> write_parquet
```

A Dataset is lazy: every transform only records a step. Before anything runs we print
the plan (`explain()`) and draw it (`visualize()`), to see what the optimizer did with
the steps. Then we run the job, print its per-stage `stats()`, read the result back and
chart it."""),
    ("code", """\
import shutil
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import sluice
import sluice.data as sd"""),
    ("md", """\
## The raw data: one folder per day

A week of trips, November 1 (a Sunday) to 7, two Parquet files per day in folders named
`day=2026-11-01/`, `day=2026-11-02/`, ... (hive partitioning: the folder names become a
`day` column when the files are read). About 3% of the trips were cancelled: their
distance and duration are 0. Weekends have fewer trips, and more of them go to the
airport."""),
    ("code", """\
workdir = Path(tempfile.mkdtemp(prefix="sluice-etl-"))
raw_dir, out_dir = workdir / "raw", workdir / "daily_by_zone"

rng = np.random.default_rng(2026)
zones = np.array(["airport", "downtown", "harbor", "midtown", "university"])
speed_kmh = {"airport": 42.0, "downtown": 17.0, "harbor": 26.0, "midtown": 21.0, "university": 24.0}
weekday_mix = [0.10, 0.34, 0.14, 0.27, 0.15]
weekend_mix = [0.24, 0.22, 0.22, 0.16, 0.16]

def trips(day, n, first_id):
    weekend = day in ("2026-11-01", "2026-11-07")
    zone = rng.choice(zones, n, p=weekend_mix if weekend else weekday_mix)
    distance = rng.gamma(2.0, 2.5, n) * np.where(zone == "airport", 3.0, 1.0)
    speed = np.array([speed_kmh[z] for z in zone]) * rng.lognormal(0.0, 0.2, n)
    duration = np.maximum(distance / speed * 60.0, 1.0)
    cancelled = rng.random(n) < 0.03
    distance[cancelled], duration[cancelled] = 0.0, 0.0
    fare = np.where(cancelled, 5.0, 3.5 + 1.6 * distance + 0.35 * duration)
    return pa.table({
        "trip_id": np.arange(first_id, first_id + n),
        "zone": zone,
        "passengers": rng.integers(1, 5, n),
        "distance_km": distance.round(2),
        "duration_min": duration.round(1),
        "fare": fare.round(2),
        "tip": (fare * rng.uniform(0.0, 0.25, n)).round(2),
    })

next_id = 0
for d in range(1, 8):
    day = f"2026-11-{d:02d}"
    folder = raw_dir / f"day={day}"
    folder.mkdir(parents=True)
    for part in range(2):
        n = 17_000 if day in ("2026-11-01", "2026-11-07") else 25_000
        pq.write_table(trips(day, n, next_id), folder / f"part-{part}.parquet")
        next_id += n

print(f"{next_id:,} trips in {len(list(raw_dir.rglob('*.parquet')))} files")
print(*sorted(p.relative_to(workdir).as_posix() for p in raw_dir.rglob("*.parquet"))[:4], "...", sep="\\n")"""),
    ("md", """\
## Starting sluice

Two worker CPUs are enough here. `DataContext` holds the settings of `sluice.data` for
this process. With `progress_bars` on (the default), a running Dataset draws one bar per
stage, but only when stderr is a terminal; a notebook's stderr is not one. Turning them
off, as here, also keeps a script's logs plain when it runs in a terminal."""),
    ("code", """\
sluice.init(num_cpus=2)
sd.DataContext.get_current().progress_bars = False"""),
    ("md", """\
## Reading is lazy; `count()` reads only the footers

`read_parquet` lists the files and reads one footer (the first file's) for the schema.
The `day` folders show up as a last column. `count()` adds up the row counts in every
file's footer: no data page is read and no task runs, as `stats()` says."""),
    ("code", """\
raw = sd.read_parquet(raw_dir)
print(raw.schema())
print()
print(f"{raw.count():,} rows")
print(raw.stats())"""),
    ("md", """\
## The job

1. keep the trips that went somewhere (`filter` with a `pyarrow.compute` expression);
2. keep the five columns the job uses (`select_columns`);
3. add a derived column, the average speed of each trip (`map_batches` on `pyarrow.Table`
   batches);
4. per day and zone: the revenue, the mean speed and the number of trips
   (`groupby(...).aggregate(...)`).

Nothing runs yet: `job` is a plan."""),
    ("code", """\
def add_speed(batch: pa.Table) -> pa.Table:
    hours = pc.divide(batch["duration_min"], 60.0)
    return batch.append_column("speed_kmh", pc.divide(batch["distance_km"], hours))

job = (
    sd.read_parquet(raw_dir)
    .filter(expr=pc.field("distance_km") > 0)
    .select_columns(["day", "zone", "distance_km", "duration_min", "fare"])
    .map_batches(add_speed, batch_format="pyarrow")
    .groupby(["day", "zone"])
    .aggregate(sd.Sum("fare"), sd.Mean("speed_kmh"), sd.Count())
)
job"""),
    ("md", """\
## The plan

`explain()` prints the physical plan. The `filter` and `select_columns` steps are gone
from the stages: the optimizer pushed them into the read (the `Reads:` line at the end
shows `columns=` and `filter=`), so the reader decodes only five columns and skips
what the filter rules out. What is left fuses into one task per block, the `*(1)` stage:
read, `add_speed` and the map side of the aggregation (`PartialAggregate`, which folds
each block into one row per group before anything is shuffled). The second stage merges
those partial rows; `Not fused` says why it has to be a stage of its own."""),
    ("code", "print(job.explain())"),
    ("md", """\
`visualize()` returns a `graphviz.Digraph` of the same plan, which Jupyter shows as SVG.
`job.visualize("plan.svg")` would also save it to a file."""),
    ("code", "job.visualize()"),
    ("md", """\
## Running the job

`write_parquet` adds one last step to the plan, `WriteParquet`, runs it, and writes one
file per output block into `out_dir`, then a `_SUCCESS` marker once every file is there. `stats()` gives, for each stage, the blocks,
rows and bytes it produced and its time. The first run of a session also starts the
worker processes."""),
    ("code", """\
written = job.write_parquet(out_dir)
print(*(Path(p).relative_to(workdir).as_posix() for p in written), sep="\\n")
print(sorted(p.name for p in out_dir.iterdir()))
print()
print(job.stats())"""),
    ("md", """\
## Reading the result back

The output is ordinary Parquet: read it with `sd.read_parquet` (or pyarrow, or pandas).
Its row count comes from the footers too."""),
    ("code", """\
result = sd.read_parquet(out_dir)
print(f"{result.count():,} rows (day x zone)")
daily = result.to_pandas().sort_values(["day", "zone"], ignore_index=True)
daily.head(10)"""),
    ("md", """\
The same numbers straight from the raw files with pandas:"""),
    ("code", """\
frame = pq.ParquetDataset(raw_dir, partitioning="hive").read().to_pandas()
frame = frame[frame.distance_km > 0].assign(
    speed_kmh=lambda f: f.distance_km / (f.duration_min / 60.0), day=lambda f: f.day.astype(str))
expected = (frame.groupby(["day", "zone"])
            .agg(fare=("fare", "sum"), speed=("speed_kmh", "mean"), trips=("fare", "size"))
            .reset_index())
assert len(expected) == len(daily) and np.isfinite(daily["mean(speed_kmh)"]).all()
assert (expected.trips.to_numpy() == daily["count()"].to_numpy()).all()
assert np.allclose(expected.fare, daily["sum(fare)"]) and np.allclose(expected.speed, daily["mean(speed_kmh)"])
print("the job agrees with pandas")"""),
    ("md", """\
## A chart of the result"""),
    ("code", """\
revenue = daily.pivot(index="day", columns="zone", values="sum(fare)") / 1_000
speed = daily.pivot(index="day", columns="zone", values="mean(speed_kmh)")
labels = [pd.Timestamp(d).strftime("%a %d") for d in revenue.index]

fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
bottom = np.zeros(len(revenue))
for zone in revenue.columns:
    left.bar(labels, revenue[zone], bottom=bottom, label=zone)
    bottom += revenue[zone].to_numpy()
left.set(title="Revenue per day, by zone", ylabel="fares (thousands)", ylim=(0, 1.25 * bottom.max()))
left.legend(loc="upper center", ncol=3, fontsize="small")
for zone in speed.columns:
    right.plot(labels, speed[zone], marker="o", label=zone)
right.set(title="Mean trip speed", ylabel="km/h", ylim=(0, None))
fig.tight_layout()
plt.show()"""),
    ("code", """\
sluice.shutdown()
shutil.rmtree(workdir)"""),
]


def build_notebook() -> nbformat.NotebookNode:
    """The notebook's cells, without outputs."""
    return nbbuild.build_notebook(CELLS)


def execute_notebook(nb: nbformat.NotebookNode, cwd: Path) -> nbformat.NotebookNode:
    """Run ``nb`` top to bottom in a fresh python3 kernel started in ``cwd``."""
    return nbbuild.execute_notebook(nb, cwd)


if __name__ == "__main__":
    sys.exit(nbbuild.main(CELLS, NOTEBOOK))
