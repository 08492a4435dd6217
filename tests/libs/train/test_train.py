"""sluice.train with real 2-rank gloo process groups (torch, the CPU build): the gang's
rendezvous and context, report as a barrier, checkpoints merged and kept by
CheckpointConfig, failures (an error, a SIGKILL, a peer stuck in a collective), bad input."""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import sluice  # noqa: E402
from sluice import train  # noqa: E402
from sluice.train.torch import (  # noqa: E402
    TorchConfig,
    TorchTrainer,
    get_device,
    prepare_data_loader,
    prepare_model,
)

DEADLINE_S = 60


@pytest.fixture(scope="module", autouse=True)
def runtime() -> Iterator[None]:
    sluice.init(num_cpus=2)
    yield
    sluice.shutdown()


def trainer(loop, tmp_path: Path, config: dict | None = None, workers: int = 2,
            **run) -> TorchTrainer:
    return TorchTrainer(loop, train_loop_config=config,
                        scaling_config=train.ScalingConfig(num_workers=workers),
                        run_config=train.RunConfig(name="run", storage_path=str(tmp_path), **run))


def gathered(value: float) -> list[float]:
    """Every rank's ``value``, by rank (a real collective over the gang's process group)."""
    import torch.distributed as dist

    out = [torch.zeros(1) for _ in range(dist.get_world_size())]
    dist.all_gather(out, torch.tensor([float(value)]))
    return [t.item() for t in out]


# -- the gang -----------------------------------------------------------------------------

def context_loop(config):
    ctx = train.get_context()
    ranks = gathered(ctx.get_world_rank())
    train.report({"rank": ctx.get_world_rank(), "size": ctx.get_world_size(),
                  "local_rank": ctx.get_local_rank(), "local_size": ctx.get_local_world_size(),
                  "node_rank": ctx.get_node_rank(), "name": ctx.get_experiment_name(),
                  "ranks": ranks, "env_rank": int(os.environ["RANK"]),
                  "env_world": int(os.environ["WORLD_SIZE"]), "x": config["x"]})


def test_two_ranks_join_one_process_group_and_rank_0s_report_is_kept(tmp_path) -> None:
    result = trainer(context_loop, tmp_path, {"x": 7}).fit()
    m = result.metrics
    assert m["rank"] == 0 and m["size"] == 2 and m["env_rank"] == 0 and m["env_world"] == 2
    assert m["local_rank"] == 0 and m["local_size"] == 2 and m["node_rank"] == 0
    assert m["ranks"] == [0.0, 1.0]  # the all_gather saw both ranks
    assert m["name"] == "run" and m["x"] == 7
    assert result.path == str(tmp_path / "run") and result.error is None
    assert list(result.metrics_dataframe["rank"]) == [0]


def barrier_loop(config):
    folder = Path(config["folder"])
    rank = train.get_context().get_world_rank()
    for step in range(3):
        if rank == 1:
            time.sleep(0.2)  # (makes a missing barrier show: rank 0 would run ahead)
        (folder / f"{rank}-{step}").write_text("")
        train.report({"step": step})
        other = folder / f"{1 - rank}-{step}"
        if not other.exists():
            raise AssertionError(f"rank {rank} left report {step} before rank {1 - rank} made it")


def test_report_is_a_barrier_across_ranks(tmp_path) -> None:
    result = trainer(barrier_loop, tmp_path, {"folder": str(tmp_path)}).fit()
    assert list(result.metrics_dataframe["step"]) == [0, 1, 2]


def ddp_loop(config):
    model = prepare_model(torch.nn.Linear(3, 1))
    wrapped = isinstance(model, torch.nn.parallel.DistributedDataParallel)
    rank = train.get_context().get_world_rank()
    torch.manual_seed(rank)  # each rank its own data: DDP averages the gradients
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    loss = model(torch.randn(16, 3)).pow(2).mean()
    loss.backward()
    optimizer.step()
    checksum = float(sum(p.sum() for p in model.parameters()))
    loader = prepare_data_loader(torch.utils.data.DataLoader(list(range(10)), batch_size=4))
    seen = [int(i) for batch in loader for i in batch]
    everyone = gathered(len(seen))
    train.report({"wrapped": wrapped, "checksums": gathered(checksum), "seen": seen,
                  "counts": everyone, "device": str(get_device())})


def test_prepare_model_averages_gradients_and_the_loader_splits_the_data(tmp_path) -> None:
    m = trainer(ddp_loop, tmp_path).fit().metrics
    assert m["wrapped"] and m["device"] == "cpu"
    assert m["checksums"][0] == pytest.approx(m["checksums"][1])  # same weights after a step
    assert m["counts"] == [5.0, 5.0] and len(set(m["seen"])) == 5  # half of range(10) each


def test_explain_shows_the_gang(tmp_path) -> None:
    run = TorchTrainer(context_loop, scaling_config=train.ScalingConfig(
        num_workers=2, resources_per_worker={"CPU": 0.5}, placement_strategy="SPREAD"),
        run_config=train.RunConfig(name="gang", storage_path=str(tmp_path)))
    text = run.explain()
    assert "2 rank(s), each holding {'CPU': 0.5}, placed SPREAD" in text
    assert text.count("[ACTOR TrainWorker] cpu {CPU: 0.5}") == 2
    assert text.count("[METHOD TrainWorker.start]") == 2
    assert run.visualize().source.count("TrainWorker.start") >= 2


# -- checkpoints --------------------------------------------------------------------------

def checkpointing_loop(config):
    rank = train.get_context().get_world_rank()
    for step in range(config["steps"]):
        folder = tempfile.mkdtemp()
        Path(folder, f"rank{rank}.txt").write_text(str(step))
        train.report({"step": step, "score": config["scores"][step]},
                     checkpoint=train.Checkpoint.from_directory(folder))


def test_checkpoints_merge_every_ranks_files_and_keep_num_to_keep(tmp_path) -> None:
    result = trainer(checkpointing_loop, tmp_path, {"steps": 5, "scores": [0] * 5},
                     checkpoint_config=train.CheckpointConfig(num_to_keep=2)).fit()
    kept = sorted(p.name for p in (tmp_path / "run").iterdir() if p.name.startswith("checkpoint_"))
    assert kept == ["checkpoint_000003", "checkpoint_000004"]
    latest = Path(result.checkpoint.path)
    assert latest.name == "checkpoint_000004"
    assert {p.name: p.read_text() for p in latest.iterdir()} == {"rank0.txt": "4", "rank1.txt": "4"}
    assert [m["step"] for _, m in result.best_checkpoints] == [3, 4]


def test_checkpoints_kept_by_score_and_the_latest_always(tmp_path) -> None:
    scores = [0.5, 0.9, 0.1, 0.8, 0.2]
    config = train.CheckpointConfig(num_to_keep=2, checkpoint_score_attribute="score",
                                    checkpoint_score_order="max")
    result = trainer(checkpointing_loop, tmp_path, {"steps": 5, "scores": scores},
                     checkpoint_config=config).fit()
    kept = sorted(p.name for p in (tmp_path / "run").iterdir() if p.name.startswith("checkpoint_"))
    assert kept == ["checkpoint_000001", "checkpoint_000004"]  # the best, and the latest
    best = result.get_best_checkpoint("score", "max")
    assert best is not None and Path(best.path).name == "checkpoint_000001"


# -- failures -----------------------------------------------------------------------------

def resuming_loop(config):
    """Counts to ``steps`` from its checkpoint; rank 1 SIGKILLs its own process at step 3
    of the first attempt (the marker file says it did)."""
    rank = train.get_context().get_world_rank()
    checkpoint = train.get_checkpoint()
    start = int(Path(checkpoint.path, "step").read_text()) if checkpoint else 0
    if rank == 0:
        with open(config["starts"], "a") as f:
            f.write(f"{start}\n")
    for step in range(start, config["steps"]):
        if rank == 1 and step == 3 and not os.path.exists(config["marker"]):
            Path(config["marker"]).write_text("")
            os.kill(os.getpid(), signal.SIGKILL)
        gathered(step)  # a collective each step: rank 0 waits in it for the dead rank
        folder = tempfile.mkdtemp()
        Path(folder, "step").write_text(str(step + 1))
        train.report({"step": step + 1}, checkpoint=train.Checkpoint.from_directory(folder))


def test_a_sigkilled_rank_restarts_the_gang_from_the_latest_checkpoint(tmp_path) -> None:
    config = {"steps": 6, "starts": str(tmp_path / "starts"), "marker": str(tmp_path / "m")}
    run = trainer(resuming_loop, tmp_path, config,
                  failure_config=train.FailureConfig(max_failures=1))
    result = run.fit()
    assert (tmp_path / "m").exists()  # the rank was killed
    starts = [int(s) for s in (tmp_path / "starts").read_text().split()]
    assert starts == [0, 3]  # the second attempt resumed from step 3's checkpoint
    assert result.metrics["step"] == 6
    assert [m["step"] for m in result.metrics_history] == [1, 2, 3, 4, 5, 6]
    assert run.controller.failures == 1 and run.controller.attempts == 2


def test_a_dead_rank_fails_the_run_at_once_when_no_failure_is_allowed(tmp_path) -> None:
    # rank 0 waits in a collective for rank 1, which is dead: the gang is torn down at
    # once (gloo's own timeout is 30 minutes), and fit() says which rank died
    config = {"steps": 6, "starts": str(tmp_path / "starts"), "marker": str(tmp_path / "m")}
    run = TorchTrainer(resuming_loop, train_loop_config=config,
                       torch_config=TorchConfig(timeout_s=1800),
                       scaling_config=train.ScalingConfig(num_workers=2),
                       run_config=train.RunConfig(name="run", storage_path=str(tmp_path)))
    with pytest.raises(train.WorkerGroupError, match="rank 1") as info:
        run.fit()
    failures = info.value.worker_failures
    assert isinstance(failures[1], sluice.exceptions.ActorDiedError)
    # On a busy machine rank 0 may see its peer's socket close (an error of its own, from
    # the collective) before the gang is torn down; its process did not die.
    assert set(failures) <= {0, 1}
    assert not isinstance(failures.get(0), sluice.exceptions.ActorDiedError)


def raising_loop(config):
    if train.get_context().get_world_rank() == 1:
        raise ValueError("bad batch 42")
    gathered(1.0)  # rank 0 waits for rank 1 in a collective


def test_a_rank_that_raises_fails_fit_with_its_original_error(tmp_path) -> None:
    with pytest.raises(train.TrainingFailedError, match="bad batch 42") as info:
        trainer(raising_loop, tmp_path, failure_config=train.FailureConfig(max_failures=1)).fit()
    error = info.value
    assert isinstance(error, train.WorkerGroupError) and set(error.worker_failures) == {1}
    assert isinstance(error.worker_failures[1], ValueError)
    assert isinstance(error.__cause__, ValueError)  # raised from the original


class Unloadable:
    """Unpickles only in the process that made it: a rank's actor given it cannot be made
    (as with a loop whose module its node lacks)."""

    def __init__(self, pid: int):
        self.pid = pid

    def __reduce__(self):
        return (_load, (self.pid,))


def _load(pid: int) -> Unloadable:
    if os.getpid() != pid:
        raise RuntimeError("this object cannot be loaded on a rank")
    return Unloadable(pid)


def test_ranks_that_cannot_start_count_as_failures_and_fail_the_run(tmp_path) -> None:
    run = TorchTrainer(context_loop, train_loop_config={"x": 1},
                       torch_config=TorchConfig(), scaling_config=train.ScalingConfig(2),
                       run_config=train.RunConfig(name="run", storage_path=str(tmp_path),
                                                  failure_config=train.FailureConfig(1)))
    run.backend_config = Unloadable(os.getpid())  # (what every rank's actor is made with)
    with pytest.raises(train.WorkerGroupError, match="could not start") as info:
        run.fit()
    assert run.controller.attempts == 2 and run.controller.failures == 2  # one restart
    assert 0 in info.value.worker_failures
    assert isinstance(info.value.worker_failures[0], sluice.exceptions.ActorDiedError)


def uneven_loop(config):
    rank = train.get_context().get_world_rank()
    for step in range(2 + rank):  # rank 1 reports once more
        train.report({"step": step})


def test_ranks_reporting_a_different_number_of_times_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(train.WorkerGroupError,
                       match=r"ranks \[1\] called train.report\(\) a 3rd time, but ranks \[0\] "
                             r"returned after 2 report"):
        trainer(uneven_loop, tmp_path).fit()


# -- bad input ----------------------------------------------------------------------------

def test_bad_settings_are_clear_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match="num_workers=0"):
        train.ScalingConfig(num_workers=0)
    with pytest.raises(ValueError, match="placement_strategy='CLOSE'"):
        train.ScalingConfig(placement_strategy="CLOSE")
    with pytest.raises(TypeError, match="is not callable"):
        TorchTrainer(42)
    with pytest.raises(ValueError, match="takes 2 arguments; it must take one"):
        TorchTrainer(lambda a, b: None)
    with pytest.raises(ValueError, match="backend='mpi'"):
        TorchConfig(backend="mpi")
    too_many = trainer(context_loop, tmp_path, {"x": 1}, workers=3)
    with pytest.raises(ValueError, match=r"num_workers=3\) asks for .*the gang could never start"):
        too_many.fit()
    with pytest.raises(RuntimeError, match="only inside a training loop"):
        train.report({"x": 1})


def data_loop(config):
    import torch.distributed as dist

    shard = train.get_dataset_shard("train")
    epochs = []
    for _ in range(2):
        ids = [int(i) for batch in shard.iter_torch_batches(batch_size=7) for i in batch["id"]]
        everyone: list = [None] * dist.get_world_size()
        dist.all_gather_object(everyone, ids)
        epochs.append(everyone)
    whole = train.get_dataset_shard("val").count()
    train.report({"epochs": epochs, "val_rows": whole})


def test_a_dataset_is_split_over_the_ranks_and_streams_to_them_each_epoch(tmp_path) -> None:
    import sluice.data as sd

    run = TorchTrainer(data_loop, datasets={"train": sd.range(60).repartition(5),
                                            "val": sd.range(9)},
                       dataset_config=train.DataConfig(datasets_to_split=["train"]),
                       scaling_config=train.ScalingConfig(num_workers=2),
                       run_config=train.RunConfig(name="data", storage_path=str(tmp_path)))
    assert "dataset 'train' -> split over the 2 rank(s)" in run.explain()
    # Drawn: 'train' through one shard into each rank, 'val' whole into both.
    from sluice.compiler.views import plan_to_json

    plan = plan_to_json(run.template().compile())
    label = {op["id"]: op["label"] for stage in plan["stages"] for op in stage["ops"]}
    feeds: dict[str, set] = {}
    for edge in plan["edges"]:
        feeds.setdefault(edge["dst"], set()).add(label[edge["src"]])
    ranks = sorted(sorted(feeds[op] - {"TrainWorker", "input"}) for op in feeds
                   if label[op] == "TrainWorker.start")
    assert ranks == [["dataset 'val'", "train shard 0/2"], ["dataset 'val'", "train shard 1/2"]]
    shards = [op for op in feeds if label[op].startswith("train shard")]
    assert [feeds[op] for op in shards] == [{"dataset 'train'"}] * 2
    assert 'label="train shard 0/2"' in run.visualize().source
    m = run.fit().metrics
    for ranks in m["epochs"]:
        assert [len(ids) for ids in ranks] == [30, 30]  # equal shares
        assert sorted(ranks[0] + ranks[1]) == list(range(60))  # disjoint, every row
    assert m["val_rows"] == 9  # not split: whole on every rank


def shard_loop(config):
    train.get_dataset_shard("validation")


def test_an_unknown_dataset_name_is_named(tmp_path) -> None:
    with pytest.raises(train.WorkerGroupError, match="no dataset of that name"):
        trainer(shard_loop, tmp_path).fit()


# -- Tune over Train ----------------------------------------------------------------------

def running_trials(db: str) -> int:
    """How many trials the experiment's database shows RUNNING, once this one is."""
    import sqlite3

    trial_id = train.get_context().get_trial_id()
    deadline = time.monotonic() + 60
    while True:  # the driver commits trial changes within milliseconds
        with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn:
            rows = dict(conn.execute("SELECT trial_id, status FROM trials").fetchall())
        if rows.get(trial_id) == "RUNNING" or time.monotonic() > deadline:
            return sum(status == "RUNNING" for status in rows.values())
        time.sleep(0.01)


def tuned_loop(config):
    world = gathered(1.0)
    together = running_trials(config["db"]) if train.get_context().get_world_rank() == 0 else 0
    for step in range(2):
        folder = tempfile.mkdtemp()
        Path(folder, "step").write_text(str(step))
        train.report({"score": config["lr"] * (step + 1), "world": sum(world), "base": config["base"],
                      "together": together}, checkpoint=train.Checkpoint.from_directory(folder))


def test_a_trainer_is_a_tuners_trainable_each_trial_a_gang(tmp_path) -> None:
    from sluice import tune

    db = str(tmp_path / "tt" / "experiment.db")
    trainer = TorchTrainer(tuned_loop, train_loop_config={"base": 1, "lr": 0.0, "db": db},
                           scaling_config=train.ScalingConfig(num_workers=2))
    grid = tune.Tuner(trainer, param_space={"train_loop_config": {"lr": tune.grid_search([0.1, 0.5])}},
                      tune_config=tune.TuneConfig(metric="score", mode="max"),
                      run_config=tune.RunConfig(name="tt", storage_path=str(tmp_path),
                                                verbose=0)).fit()
    assert len(grid) == 2 and grid.num_errors == 0
    scores = sorted(r.metrics["score"] for r in grid)
    assert scores == pytest.approx([0.2, 1.0])  # lr * 2 at the last round
    best = grid.get_best_result()
    assert best.config["train_loop_config"]["lr"] == 0.5
    assert best.metrics["world"] == 2.0 and best.metrics["base"] == 1  # a 2-rank gang each
    assert best.metrics["training_iteration"] == 2
    assert best.checkpoint is not None and Path(best.checkpoint.path, "step").read_text() == "1"
    # Each trial counts its gang (2 ranks of 1 CPU: the whole cluster), so the second
    # waits PENDING while the first runs instead of RUNNING with its gang unplaced.
    assert [r.metrics["together"] for r in grid] == [1, 1]
    assert "each trial counts {'CPU': 2.0} (its gang's), its actor holds {}" in \
        tune.Tuner(trainer).explain()
