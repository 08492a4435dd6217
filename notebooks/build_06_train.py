"""Write notebooks/06-train.ipynb and execute it, saving its outputs.

Run from anywhere: ``python notebooks/build_06_train.py``. The notebook is built
from the cells below, executed top to bottom in a fresh ``python3`` kernel (with
this checkout on its PYTHONPATH), and saved with its outputs. It fits a line with PyTorch
on two ranks (DistributedDataParallel over gloo) with ``sluice.train``, reading a
``sluice.data`` dataset split between the ranks; it prints and draws the gang's plan, kills
one rank halfway through the run and shows the gang resuming from its latest checkpoint,
then plots the loss curve. The run's folder is a temporary one, removed at the end.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))  # nbbuild, beside this file
import nbbuild

REPO_ROOT = nbbuild.REPO_ROOT
NOTEBOOK = REPO_ROOT / "notebooks" / "06-train.ipynb"

CELLS = [
    ("md", """\
# Distributed training with `sluice.train`

`sluice.train` has Ray Train's API: a **training loop**, a function every rank runs, and a
`TorchTrainer` that runs it on `num_workers` ranks. The ranks are actors, placed together
by a placement group and joined into one `torch.distributed` process group (gloo on CPUs),
so `DistributedDataParallel` averages their gradients. Inside the loop,
`train.get_dataset_shard` gives the rank its share of a `sluice.data` dataset,
`train.report` records a round of metrics and a checkpoint (a barrier across the ranks),
and `train.get_checkpoint` is the checkpoint to resume from after a failure. The run is a
`.bind()` graph like any other in sluice, an actor stage per rank, compiled to a Plan.

This notebook:

1. makes a small regression dataset with `sluice.data`: points on the line `y = 3x + 1`,
   with a little noise;
2. fits a one-weight linear model to it with PyTorch on two ranks, which checkpoint after
   every epoch, and prints and draws the gang's plan;
3. kills one of the ranks during the run: the gang restarts and resumes from the latest
   checkpoint;
4. shows the run's results and plots its loss curve."""),
    ("code", """\
import os
import shutil
import signal
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

import sluice
import sluice.data
from sluice import train
from sluice.train.torch import TorchTrainer, get_device, prepare_model

sluice.init(num_cpus=2)                     # one CPU for each of the two ranks
storage = tempfile.mkdtemp(prefix="sluice-train-")"""),
    ("md", """\
## The data

2,000 points: `x` uniform between -1 and 1, `y = 3x + 1` plus normal noise of standard
deviation 0.1. Each row's numbers come from a generator seeded with the row's `id`, so the
dataset is the same on every run, whichever task makes which rows. The dataset is lazy:
it is read when the ranks train on it."""),
    ("code", """\
def make_point(row):
    \"\"\"A point near the line y = 3x + 1, the same for the same id.\"\"\"
    rng = np.random.default_rng(row["id"])
    x = rng.uniform(-1, 1)
    return {"x": x, "y": 3 * x + 1 + rng.normal(scale=0.1)}


points = sluice.data.range(2000).map(make_point)
print(f"{points.count()} rows; the first three:")
print(pd.DataFrame(points.take(3)).round(4).to_string(index=False))"""),
    ("md", """\
## The training loop

Every rank runs `train_loop(config)`. It makes the model, a `torch.nn.Linear(1, 1)`, and
loads the weights of the checkpoint to resume from, if there is one (none in the first
attempt); `prepare_model` then wraps it in `DistributedDataParallel`. Each epoch it streams
its share of the dataset, `train.get_dataset_shard("train")`, in batches of 50 rows (as
torch tensors), and takes an SGD step on each; the epoch's mean squared error is summed
over both ranks with an `all_reduce`.

After each epoch, `train.report` records the metrics and a checkpoint. Rank 0 saves the
epoch and the weights in a folder that `train.Checkpoint.from_directory` wraps; the other
rank reports the same metrics without one (its weights are the same). `start_epoch`, the
epoch this attempt began at, tells the attempts apart.

To show a failure, rank 1 kills its own process (`SIGKILL`, as the kernel's OOM killer or a
lost machine would) halfway through epoch 3, the first time only: it leaves a marker file
that says it did."""),
    ("code", """\
EPOCHS = 8
KILL_EPOCH = 3


def train_loop(config):
    import torch.distributed as dist

    rank = train.get_context().get_world_rank()
    torch.manual_seed(0)
    model, start_epoch = torch.nn.Linear(1, 1), 0
    checkpoint = train.get_checkpoint()             # None in the first attempt
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            state = torch.load(Path(folder, "model.pt"))
        model.load_state_dict(state["model"])
        start_epoch = state["epoch"] + 1
    model = prepare_model(model)                    # DistributedDataParallel
    optimizer = torch.optim.SGD(model.parameters(), lr=config["lr"])
    shard = train.get_dataset_shard("train")        # this rank's half of the rows
    for epoch in range(start_epoch, config["epochs"]):
        total = torch.zeros(2)                      # squared error, rows
        batches = shard.iter_torch_batches(batch_size=config["batch_size"])
        for step, batch in enumerate(batches):
            if (rank == 1 and epoch == config["kill_epoch"] and step == 10
                    and not os.path.exists(config["marker"])):
                Path(config["marker"]).write_text(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)
            x = batch["x"].float().reshape(-1, 1).to(get_device())
            y = batch["y"].float().reshape(-1, 1).to(get_device())
            loss = torch.nn.functional.mse_loss(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += torch.tensor([loss.item() * len(x), len(x)])
        dist.all_reduce(total)                      # both ranks' rows
        metrics = {"epoch": epoch, "loss": (total[0] / total[1]).item(),
                   "rows": int(total[1]), "weight": model.module.weight.item(),
                   "bias": model.module.bias.item(), "start_epoch": start_epoch}
        with tempfile.TemporaryDirectory() as folder:
            checkpoint = None
            if rank == 0:
                torch.save({"epoch": epoch, "model": model.module.state_dict()},
                           Path(folder, "model.pt"))
                checkpoint = train.Checkpoint.from_directory(folder)
            train.report(metrics, checkpoint=checkpoint)"""),
    ("md", """\
## The trainer

`ScalingConfig(num_workers=2)` asks for two ranks of one CPU each, placed `PACK`
(together where they fit). `datasets={"train": points}` splits the dataset between them:
each rank streams its own 1,000 rows every epoch. The run lives in `storage/ddp-linear`,
where `CheckpointConfig(num_to_keep=2)` keeps the two latest checkpoints, and
`FailureConfig(max_failures=1)` lets the gang restart once."""),
    ("code", """\
trainer = TorchTrainer(
    train_loop,
    train_loop_config={"lr": 0.05, "batch_size": 50, "epochs": EPOCHS,
                       "kill_epoch": KILL_EPOCH, "marker": os.path.join(storage, "killed")},
    datasets={"train": points},
    scaling_config=train.ScalingConfig(num_workers=2),
    run_config=train.RunConfig(name="ddp-linear", storage_path=storage,
                               checkpoint_config=train.CheckpointConfig(num_to_keep=2),
                               failure_config=train.FailureConfig(max_failures=1)))"""),
    ("md", """\
## Its plan

`trainer.explain()` prints the gang (its ranks, what each holds, how they are placed, the
backend that joins them, the datasets and how they are shared out), then the Plan the
run compiles to: an `ACTOR TrainWorker` stage per rank, each with one CPU, and each
rank's `start` call, which reads its shard of the dataset. `trainer.visualize()` draws
that Plan (a `graphviz.Digraph`, which Jupyter shows as SVG): the dataset feeds one shard
into each rank."""),
    ("code", "print(trainer.explain())"),
    ("code", "trainer.visualize()"),
    ("md", """\
## Running it

`trainer.fit()` returns when every rank's loop has returned. Here the first attempt ends
in epoch 3, when rank 1's process dies: the driver sees it at once, kills the other rank
(which waits for rank 1 in a collective), frees the placement group and logs the failure.
The second attempt starts a new gang, hands each rank a fresh split of the dataset and the
latest checkpoint, the one written after epoch 2, and runs epochs 3 to 7."""),
    ("code", """\
result = trainer.fit()
ctl = trainer.controller
print(f"failures: {ctl.failures}, attempts: {ctl.attempts}")
print(f"rank 1 was killed: {os.path.exists(os.path.join(storage, 'killed'))}")
frame = result.metrics_dataframe
for start, epochs in frame.groupby("start_epoch").epoch:
    print(f"the attempt that started at epoch {start} ran epochs {epochs.min()} to {epochs.max()}")
print(f"the second attempt resumed at epoch {frame.start_epoch.iloc[-1]}, "
      f"from the checkpoint written after epoch {frame.start_epoch.iloc[-1] - 1}")"""),
    ("md", """\
## The results

`result.metrics` is rank 0's last report. The model found the line: a weight near 3 and
a bias near 1, and a mean squared error near the noise's variance, 0.01. `result.checkpoint`
is the latest checkpoint; of the eight written (`checkpoint_000000` to
`checkpoint_000007`), the run's folder keeps the two latest. Its weights are those
reported."""),
    ("code", """\
m = result.metrics
print(f"final: epoch {m['epoch']}, loss {m['loss']:.4f}, weight {m['weight']:.3f}, "
      f"bias {m['bias']:.3f}, {m['rows']} rows an epoch")
print("kept checkpoints:", sorted(p.name for p in Path(result.path).glob("checkpoint_*")))
with result.checkpoint.as_directory() as folder:
    state = torch.load(Path(folder, "model.pt"))
assert state["epoch"] == m["epoch"]
assert np.isclose(state["model"]["weight"].item(), m["weight"])
print(f"latest checkpoint {Path(result.checkpoint.path).name}: epoch {state['epoch']}, "
      f"weight {state['model']['weight'].item():.3f}, as reported")"""),
    ("md", """\
Every round of reports is a row of `result.metrics_dataframe`, over both attempts: epochs
0 to 2 from the first, 3 to 7 from the second (the epoch that rank 1's death cut short ran
again, from its start, and is reported once)."""),
    ("code", """\
with pd.option_context("display.float_format", "{:.4f}".format, "display.width", 120):
    display(result.metrics_dataframe)"""),
    ("md", """\
## The loss curve

Left: the mean squared error after each epoch, by attempt, on a log scale. The dashed
line marks the restart: rank 1 was killed halfway through epoch 3, and the gang resumed
from epoch 2's checkpoint, so the failure cost only that half epoch. Right: the weight
and the bias, nearing those of the line the data came from (dotted)."""),
    ("code", """\
frame = result.metrics_dataframe
fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
for number, (start, rows) in enumerate(frame.groupby("start_epoch"), 1):
    left.plot(rows.epoch, rows.loss, marker="o", linewidth=2,
              label=f"attempt {number} (from epoch {start})")
left.axvline(KILL_EPOCH - 0.5, color="black", linestyle="--", linewidth=1)
left.annotate(f"rank 1 killed in epoch {KILL_EPOCH};\\nresumed from epoch "
              f"{KILL_EPOCH - 1}'s checkpoint", xy=(KILL_EPOCH - 0.4, frame.loss.max() / 2),
              fontsize="small")
left.set(title="Training loss per epoch", xlabel="epoch", ylabel="mean squared error",
         yscale="log")
left.legend()
for name, true in (("weight", 3.0), ("bias", 1.0)):
    line, = right.plot(frame.epoch, frame[name], marker="o", label=name)
    right.axhline(true, color=line.get_color(), linestyle=":", linewidth=1)
right.axvline(KILL_EPOCH - 0.5, color="black", linestyle="--", linewidth=1)
right.set(title="The model's parameters", xlabel="epoch")
right.legend()
fig.tight_layout()
plt.show()"""),
    ("md", """\
## Shutting down

`sluice.shutdown()` stops the runtime; the run's folder (a temporary one here) is
removed."""),
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
