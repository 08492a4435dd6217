"""Write notebooks/01-plans.ipynb and execute it, saving its outputs.

Run from anywhere: ``python notebooks/build_01_plans.py``. The notebook is
built from the cells below, executed top to bottom in a fresh ``python3``
kernel (with this checkout on its PYTHONPATH), and saved with its outputs, so
the rendered plans show on GitHub and in any notebook viewer.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))  # nbbuild, beside this file
import nbbuild

REPO_ROOT = nbbuild.REPO_ROOT
NOTEBOOK = REPO_ROOT / "notebooks" / "01-plans.ipynb"

CELLS = [
    ("md", """\
# Reading a plan: `explain()` and `visualize()`

A sluice graph is lazy: `.bind()` records calls, `compile()` turns them into a
physical **Plan** of stages, and `execute()` runs that Plan. This notebook builds a
small pipeline, prints the Plan before and after optimization, draws it, and runs it.
Both views (`explain()` text and the graphviz drawing) are made from the same
`plan.to_json()`, so they always agree with what runs."""),
    ("code", """\
import numpy as np

import sluice
from sluice import InputNode, MultiOutputNode

# One *logical* GPU: sluice schedules GPUs by count, so a task that asks for
# num_gpus=1 runs here even on a machine without a device (it uses numpy below).
sluice.init(num_cpus=2, num_gpus=1)"""),
    ("md", """\
## The pipeline

`load` feeds three readers: `mean`, `spread` and `standardize` (a diamond: its
edges cannot fuse, because `load`'s value is read more than once and
`standardize` joins several values). After it comes a linear chain
`clip -> scale`, which fuses into one task, then `energy` on the GPU, and a
`History` actor that remembers every result across runs."""),
    ("code", """\
@sluice.remote
def load(n):
    return np.linspace(-3.0, 5.0, n)

@sluice.remote
def mean(x):
    return float(x.mean())

@sluice.remote
def spread(x):
    return float(x.std())

@sluice.remote
def standardize(x, m, s):
    return (x - m) / s

@sluice.remote
def clip(x):
    return np.clip(x, -1.5, 1.5)

@sluice.remote
def scale(x):
    return 2.0 * x

@sluice.remote(num_gpus=1)
def energy(x):
    return float((x * x).sum())

@sluice.remote
class History:
    def __init__(self):
        self.seen = []

    def record(self, value):
        self.seen.append(round(value, 3))
        return list(self.seen)

with InputNode() as n:
    data = load.bind(n)
    z = standardize.bind(data, mean.bind(data), spread.bind(data))
    e = energy.bind(scale.bind(clip.bind(z)))
    history = History.bind()
    dag = MultiOutputNode([e, history.record.bind(e)])"""),
    ("md", """\
## Before optimization: one stage per op

`optimize=False` skips common-subexpression elimination and fusion. Every op is
its own stage, so every edge goes through the object store. GPU placement still
runs: the copies to and from the device are explicit `TRANSFER` ops."""),
    ("code", """\
raw = dag.compile(optimize=False)
print(raw.explain())"""),
    ("code", "raw.visualize()"),
    ("md", """\
## After optimization

`*(n)` marks a stage of fused ops: `clip` and `scale` now run in one task, and the
GPU stage holds its copies. The `Not fused` section gives, for every edge that
still crosses stages, the rule that kept it apart. In the drawing, fused stages
are boxes around their ops (green on the GPU), the actor and its method call are
orange, bold edges stay inside one process and dashed edges are read zero-copy
from the node's store. A red edge would mark a copy between devices or nodes;
here GPU placement made the copies explicit (the arrow-shaped `to_device` and
`to_host` ops inside the GPU stage), so every value crosses stages zero-copy."""),
    ("code", """\
plan = dag.compile()
print(plan.explain())"""),
    ("code", "plan.visualize()"),
    ("md", """\
`explain(verbose=True)` lists every op of every stage with its device,
resources and inputs; `dag.visualize()` draws the logical graph, one node per
op, without stages. `plan.visualize("plan.svg")` would also write the drawing
to a file (`.svg`, `.png` or `.pdf`)."""),
    ("code", "print(plan.explain(verbose=True))"),
    ("code", "dag.visualize()"),
    ("md", """\
## Running the plan

`plan.execute(...)` returns ObjectRefs at once; `sluice.get` waits for the values.
The Plan runs many times; its actor lives as long as the Plan, so `History`
keeps every result."""),
    ("code", """\
first = sluice.get(plan.execute(1_000))
second = sluice.get(plan.execute(10))
print(first)
print(second)"""),
    ("code", """\
def by_hand(n):
    x = np.linspace(-3.0, 5.0, n)
    z = (x - x.mean()) / x.std()
    return float(((2.0 * np.clip(z, -1.5, 1.5)) ** 2).sum())

assert np.isclose(first[0], by_hand(1_000)) and np.isclose(second[0], by_hand(10))
assert second[1] == [round(first[0], 3), round(second[0], 3)]
print("the plan agrees with numpy")"""),
    ("code", "sluice.shutdown()"),
]


def build_notebook() -> nbformat.NotebookNode:
    """The notebook's cells, without outputs."""
    return nbbuild.build_notebook(CELLS)


def execute_notebook(nb: nbformat.NotebookNode, cwd: Path) -> nbformat.NotebookNode:
    """Run ``nb`` top to bottom in a fresh python3 kernel started in ``cwd``."""
    return nbbuild.execute_notebook(nb, cwd)


if __name__ == "__main__":
    sys.exit(nbbuild.main(CELLS, NOTEBOOK))
