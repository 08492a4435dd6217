"""Write notebooks/05-tune.ipynb and execute it, saving its outputs.

Run from anywhere: ``python notebooks/build_05_tune.py``. The notebook is built
from the cells below, executed top to bottom in a fresh ``python3`` kernel (with
this checkout on its PYTHONPATH), and saved with its outputs. It tunes a small numpy
logistic regression (learning rate, batch size, L2 penalty) with ``sluice.tune`` and
ASHA, prints and draws the experiment's plan, shows the results and the best trial,
and plots every trial's learning curve. The experiment's folder is a temporary one,
removed at the end.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))  # nbbuild, beside this file
import nbbuild

REPO_ROOT = nbbuild.REPO_ROOT
NOTEBOOK = REPO_ROOT / "notebooks" / "05-tune.ipynb"

CELLS = [
    ("md", """\
# Hyperparameter search with `sluice.tune`

`sluice.tune` has Ray Tune's API: a **trainable** (a function that calls `tune.report`
once per epoch, or a `tune.Trainable` class), a **search space**, a **searcher** that
picks configs from it, a **scheduler** that decides after each result whether a trial goes
on, and a `Tuner` that runs the experiment and returns a `ResultGrid`. An experiment is a
`.bind()` graph like any other in sluice: a trial actor of the trainable and its start
call, compiled to a Plan. A controller loop in the driver asks the searcher for configs
and the scheduler for decisions, runs the trials on those actors, and keeps the
experiment's state in SQLite under `storage_path/name`.

This notebook:

1. trains a logistic regression in numpy, by minibatch gradient descent, on a synthetic
   dataset, reporting the validation loss after every epoch;
2. searches its learning rate, batch size and L2 penalty (20 trials of up to 30 epochs)
   with ASHA, which stops the trials that are behind, and prints and draws the plan;
3. shows the results, the best trial and its checkpoint;
4. plots every trial's learning curve, the ones ASHA stopped early in grey."""),
    ("code", """\
import shutil
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import sluice
from sluice import tune
from sluice.tune.schedulers import ASHAScheduler

sluice.init(num_cpus=2)                     # two trials at a time (each takes one CPU)
storage = tempfile.mkdtemp(prefix="sluice-tune-")"""),
    ("md", """\
## The data and the model

4,000 points with 20 features; the label is 1 where a fixed linear score plus noise is
positive. 3,000 points train the model, 1,000 validate it. The model is a logistic
regression: weights `w`, predicted probability `sigmoid(X @ w)`, trained on the log loss
plus `l2 * |w|² / 2`."""),
    ("code", """\
rng = np.random.default_rng(0)
n, d = 4_000, 20
w_true = rng.normal(size=d)
X = rng.normal(size=(n, d))
y = (X @ w_true + rng.normal(scale=1.5, size=n) > 0).astype(float)
data = {"X_train": X[:3_000], "y_train": y[:3_000], "X_val": X[3_000:], "y_val": y[3_000:]}
print(f"train {data['X_train'].shape}, validation {data['X_val'].shape}, "
      f"positives {y.mean():.0%}")


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def log_loss(w, X, y):
    p = np.clip(sigmoid(X @ w), 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))"""),
    ("md", """\
## The trainable

A function trainable gets its trial's `config`. Each epoch it makes one pass over the
training set in shuffled minibatches of `batch_size`, a gradient step of size `lr` on each,
then reports the validation loss and accuracy with `tune.report`, and a checkpoint: the
weights, saved in a directory that `tune.Checkpoint.from_directory` wraps (sluice copies it
into the trial's folder). `tune.report` is also where a trial the scheduler stopped
leaves: the function does not return from that call.

`tune.with_parameters(train, data=data)` puts the dataset in the object store once; each
trial actor reads it from there, instead of every trial's config carrying a copy."""),
    ("code", """\
MAX_EPOCHS = 30


def train(config, data):
    X_train, y_train = data["X_train"], data["y_train"]
    X_val, y_val = data["X_val"], data["y_val"]
    lr, batch_size, l2 = config["lr"], config["batch_size"], config["l2"]
    order_rng = np.random.default_rng(1)               # the same shuffles in every trial
    w = np.zeros(X_train.shape[1])
    for epoch in range(MAX_EPOCHS):
        order = order_rng.permutation(len(X_train))
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            xb, yb = X_train[batch], y_train[batch]
            w -= lr * (xb.T @ (sigmoid(xb @ w) - yb) / len(batch) + l2 * w)
        with tempfile.TemporaryDirectory() as folder:
            np.save(Path(folder, "w.npy"), w)
            tune.report({"val_loss": log_loss(w, X_val, y_val),
                         "val_acc": float(np.mean((X_val @ w > 0) == y_val))},
                        checkpoint=tune.Checkpoint.from_directory(folder))"""),
    ("md", """\
## The experiment

The search space: `lr` log-uniform between 0.0001 and 1, `batch_size` one of 16, 64 or
256, `l2` uniform between 0 and 0.02. `num_samples=20` draws 20 configs from it;
`BasicVariantGenerator(random_state=0)` is the default searcher, seeded so the 20 configs
are the same on every run.

`ASHAScheduler(max_t=30, grace_period=3, reduction_factor=3)` sets rungs at epochs 3, 9
and 27. A trial reaching a rung goes on only if its `val_loss` is in the best third of
those recorded at that rung so far; a trial at `max_t` stops (it is done). It never waits
for a rung to fill, so the first trials to reach a rung always pass it.

The experiment lives in `storage/tune-logreg`: `experiment.db` (SQLite: the trials, every
result, the searcher's and the scheduler's state) and a folder per trial with its
checkpoints. `reuse_actors=True` runs the next trial on an actor whose trial ended instead
of starting a new one. `verbose=1` prints a progress line now and then, and one at the
end."""),
    ("code", """\
tuner = tune.Tuner(
    tune.with_parameters(train, data=data),
    param_space={"lr": tune.loguniform(1e-4, 1.0),
                 "batch_size": tune.choice([16, 64, 256]),
                 "l2": tune.uniform(0.0, 0.02)},
    tune_config=tune.TuneConfig(
        metric="val_loss", mode="min", num_samples=20, reuse_actors=True,
        search_alg=tune.search.BasicVariantGenerator(random_state=0),
        scheduler=ASHAScheduler(max_t=MAX_EPOCHS, grace_period=3, reduction_factor=3)),
    run_config=tune.RunConfig(name="tune-logreg", storage_path=storage, verbose=1,
                              checkpoint_config=tune.CheckpointConfig(num_to_keep=2)))"""),
    ("md", """\
## Its plan

`tuner.explain()` prints the trial actors (the trainable and each actor's resources), the
searcher and the scheduler, then the Plan the experiment's template compiles to: an
`ACTOR TrialRunner` stage (the trial actor, one CPU) and its `start` method, called with
each trial's spec. `tuner.visualize()` draws that Plan (a `graphviz.Digraph`, which Jupyter
shows as SVG), titled with the searcher and the scheduler."""),
    ("code", "print(tuner.explain())"),
    ("code", "tuner.visualize()"),
    ("md", """\
## Running it

`tuner.fit()` returns when every trial has ended: run to `max_t`, stopped by ASHA, or
failed (none here)."""),
    ("code", """\
grid = tuner.fit()
print(grid)"""),
    ("md", """\
## The results

`grid.get_dataframe()` has one row per trial: its last result (the metrics it reported,
and `training_iteration`, the epochs it ran), its config as `config/...` columns, its id
and its folder (`logdir`). Below, sorted by validation loss: most trials stopped at the
first rung, epoch 3, mostly those with a small `lr`, whose loss had hardly moved from that
of a coin flip (log 2 = 0.693). Accuracy barely differs between the trials; the log loss,
which also scores how confident the predictions are, separates them. Which trials pass a
rung depends a little on the order in which they reach it, so a rerun can stop a
different few."""),
    ("code", """\
frame = grid.get_dataframe().sort_values("val_loss")
columns = ["trial_id", "val_loss", "val_acc", "training_iteration",
           "config/lr", "config/batch_size", "config/l2"]
full = frame.training_iteration == MAX_EPOCHS
print(f"{len(frame)} trials: {full.sum()} ran {MAX_EPOCHS} epochs, "
      f"{(~full).sum()} were stopped early by ASHA")
print(f"epochs run: {frame.training_iteration.sum()} of {len(frame) * MAX_EPOCHS}")
ends = frame.training_iteration.value_counts().sort_index()
print("trials per last epoch:", {int(epoch): int(n) for epoch, n in ends.items()})
with pd.option_context("display.float_format", "{:.4g}".format, "display.width", 120):
    display(frame[columns].reset_index(drop=True))"""),
    ("md", """\
## The best trial

`grid.get_best_result()` ranks trials by the `TuneConfig`'s metric and mode, each by its
last result (`scope="last"`, the default). Its `checkpoint` is the latest one the trial
reported (the trial keeps two, `num_to_keep=2`): the weights after its last epoch, which
give back the validation loss it reported."""),
    ("code", """\
best = grid.get_best_result()
print("best config:", {k: round(v, 5) for k, v in best.config.items()})
print(f"best val_loss {best.metrics['val_loss']:.4f}, val_acc {best.metrics['val_acc']:.3f}, "
      f"after {best.metrics['training_iteration']} epochs")
with best.checkpoint.as_directory() as folder:
    w = np.load(Path(folder, "w.npy"))
reloaded = log_loss(w, data["X_val"], data["y_val"])
assert np.isclose(reloaded, best.metrics["val_loss"])
print(f"checkpoint {Path(best.checkpoint.path).name}: its weights give val_loss {reloaded:.4f}, "
      f"as reported")
print("kept checkpoints:", sorted(p.name for p in Path(best.path).glob("checkpoint_*")))"""),
    ("md", """\
## Learning curves

Every result a trial reported is a row of `result.metrics_dataframe`. Left: each trial's
validation loss against the epochs it ran, the trials ASHA stopped early in grey, the
ones that ran to `max_t` in colour; the dotted lines are ASHA's rungs. Right: each trial's
last validation loss against its learning rate."""),
    ("code", """\
fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
for rung in (3, 9, 27):
    left.axvline(rung, color="black", linestyle=":", linewidth=1)
for result in sorted(grid, key=lambda r: r.metrics["training_iteration"]):
    curve = result.metrics_dataframe
    ran_all = curve.training_iteration.max() == MAX_EPOCHS
    style = (dict(linewidth=2, label=f"lr={result.config['lr']:.3g}, "
                  f"batch {result.config['batch_size']}, l2={result.config['l2']:.3f}")
             if ran_all else dict(color="grey", alpha=0.6, linewidth=1))
    left.plot(curve.training_iteration, curve.val_loss, marker=".", markersize=3, **style)
    right.scatter(result.config["lr"], result.metrics["val_loss"], s=30,
                  color=left.lines[-1].get_color() if ran_all else "grey", zorder=3)
left.set(title="Validation loss per epoch (grey: stopped by ASHA)", xlabel="epoch",
         ylabel="validation log loss", xlim=(0, MAX_EPOCHS + 1))
left.legend(fontsize="small", title=f"ran {MAX_EPOCHS} epochs", title_fontsize="small")
right.set(title="Last validation loss by learning rate", xlabel="lr", xscale="log",
          ylabel="validation log loss")
fig.tight_layout()
plt.show()"""),
    ("md", """\
## Shutting down

`sluice.shutdown()` stops the trial actors' runtime; the experiment's folder (a temporary
one here) is removed."""),
    ("code", """\
sluice.shutdown()
shutil.rmtree(storage)
print("shut down")"""),
]


def build_notebook() -> nbformat.NotebookNode:
    """The notebook's cells, without outputs."""
    return nbbuild.build_notebook(CELLS)


def execute_notebook(nb: nbformat.NotebookNode, cwd: Path) -> nbformat.NotebookNode:
    """Run ``nb`` top to bottom in a fresh python3 kernel started in ``cwd``."""
    return nbbuild.execute_notebook(nb, cwd)


if __name__ == "__main__":
    sys.exit(nbbuild.main(CELLS, NOTEBOOK))
