"""The example notebooks run top to bottom, and their saved copies show what they render."""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import nbformat

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO_ROOT / "notebooks"
PLANS = NOTEBOOKS / "01-plans.ipynb"


def load_builder():
    """notebooks/build_01_plans.py as a module (notebooks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("build_01_plans", NOTEBOOKS / "build_01_plans.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def outputs(nb: nbformat.NotebookNode) -> list[dict]:
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]


def svg_outputs(nb: nbformat.NotebookNode) -> list[str]:
    return [out["data"]["image/svg+xml"] for out in outputs(nb)
            if "image/svg+xml" in out.get("data", {})]


def text_outputs(nb: nbformat.NotebookNode) -> str:
    return "".join(out.get("text", "") for out in outputs(nb))


def check_plans_notebook(nb: nbformat.NotebookNode) -> None:
    assert [out for out in outputs(nb) if out["output_type"] == "error"] == []
    assert all(cell.get("execution_count") for cell in nb.cells if cell.cell_type == "code")
    svgs = svg_outputs(nb)
    assert len(svgs) == 3    # the plan before and after optimization, and the logical graph
    assert "not optimized" in svgs[0] and 'class="cluster"' not in svgs[0]
    assert "physical plan (optimized)" in svgs[1] and 'class="cluster"' in svgs[1]
    text = text_outputs(nb)
    assert "== Physical Plan (not optimized) ==" in text
    assert "[CALL standardize+clip+scale]" in text and "Not fused:" in text
    assert "the plan agrees with numpy" in text


def test_the_saved_notebook_holds_its_rendered_plans() -> None:
    check_plans_notebook(nbformat.read(PLANS, as_version=4))


def test_the_saved_notebook_is_what_the_builder_writes() -> None:
    saved = nbformat.read(PLANS, as_version=4)
    built = load_builder().build_notebook()
    assert [c.source for c in saved.cells] == [c.source for c in built.cells]


def test_the_plans_notebook_runs_top_to_bottom(tmp_path) -> None:
    copy = tmp_path / PLANS.name
    shutil.copy(PLANS, copy)
    nb = nbformat.read(copy, as_version=4)
    for cell in nb.cells:   # start from a clean slate: every output must come from this run
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    executed = load_builder().execute_notebook(nb, cwd=tmp_path)
    nbformat.write(executed, copy)
    check_plans_notebook(nbformat.read(copy, as_version=4))


# --------------------------------------------------------------------------- 02-etl
ETL = NOTEBOOKS / "02-etl.ipynb"


def load_etl_builder():
    """notebooks/build_02_etl.py as a module."""
    spec = importlib.util.spec_from_file_location("build_02_etl", NOTEBOOKS / "build_02_etl.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def png_outputs(nb: nbformat.NotebookNode) -> list[str]:
    return [out["data"]["image/png"] for out in outputs(nb) if "image/png" in out.get("data", {})]


def check_etl_notebook(nb: nbformat.NotebookNode) -> None:
    assert [out for out in outputs(nb) if out["output_type"] == "error"] == []
    assert all(cell.get("execution_count") for cell in nb.cells if cell.cell_type == "code")
    svgs = svg_outputs(nb)
    assert len(svgs) == 1    # the plan of the job
    assert "ReadParquet" in svgs[0] and "MapBatches(add_speed)" in svgs[0]
    assert len(png_outputs(nb)) == 1    # the chart of the result
    text = text_outputs(nb)
    reads = text[text.index("Reads:"):].splitlines()[1]
    assert "filter=(distance_km > 0)" in reads and "columns=['day', 'zone'" in reads
    assert "ReadParquet+MapBatches(add_speed)+PartialAggregate(day, zone)" in text
    assert "318,000 rows" in text and "answered from metadata" in text
    assert "Dataset execution" in text and "WriteParquet" in text
    assert "_SUCCESS" in text and "35 rows (day x zone)" in text
    assert "the job agrees with pandas" in text


def test_the_saved_etl_notebook_holds_its_outputs() -> None:
    check_etl_notebook(nbformat.read(ETL, as_version=4))


def test_the_saved_etl_notebook_is_what_the_builder_writes() -> None:
    saved = nbformat.read(ETL, as_version=4)
    built = load_etl_builder().build_notebook()
    assert [c.source for c in saved.cells] == [c.source for c in built.cells]


def test_the_etl_notebook_runs_top_to_bottom(tmp_path) -> None:
    copy = tmp_path / ETL.name
    shutil.copy(ETL, copy)
    nb = nbformat.read(copy, as_version=4)
    for cell in nb.cells:   # start from a clean slate: every output must come from this run
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    executed = load_etl_builder().execute_notebook(nb, cwd=tmp_path)
    nbformat.write(executed, copy)
    check_etl_notebook(nbformat.read(copy, as_version=4))
    assert sorted(p.name for p in tmp_path.iterdir()) == [ETL.name]   # its data went to a temp folder


# --------------------------------------------------------------------------- 03-workflows
WORKFLOWS = NOTEBOOKS / "03-workflows.ipynb"


def load_workflows_builder():
    """notebooks/build_03_workflows.py as a module."""
    spec = importlib.util.spec_from_file_location("build_03_workflows",
                                                  NOTEBOOKS / "build_03_workflows.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cell_text(nb: nbformat.NotebookNode, source_start: str) -> str:
    """The printed text and plain-text results of the one code cell whose source starts so."""
    (cell,) = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith(source_start)]
    return "".join(out.get("text", "") or out.get("data", {}).get("text/plain", "")
                   for out in cell.outputs)


def check_workflows_notebook(nb: nbformat.NotebookNode) -> None:
    assert [out for out in outputs(nb) if out["output_type"] == "error"] == []
    assert all(cell.get("execution_count") for cell in nb.cells if cell.cell_type == "code")
    killed = cell_text(nb, "def wait_until")
    assert "driver killed by signal 9 (SIGKILL)" in killed
    assert killed.split("\n", 1)[1].split() == ["extract", "2026-11-01", "transform_load", "2026-11-01"]
    resumable = cell_text(nb, "def steps_table")
    assert "status: RESUMABLE" in resumable
    assert re.search(r"extract\s+SUCCESSFUL\s+1\s", resumable)
    assert re.search(r"transform_load\s+RUNNING\s+1\s", resumable)
    resumed = cell_text(nb, '(workdir / "gate").touch()')
    assert "output: warehouse/usage_2026-11-01.parquet" in resumed and "status: SUCCESSFUL" in resumed
    assert re.search(r"extract\s+SUCCESSFUL\s+1\s", resumed)              # not run again
    assert re.search(r"transform_load\s+SUCCESSFUL\s+2\s", resumed)      # its second attempt
    assert re.search(r"north\s+\d+\.\d\s+\d+\.\d", cell_text(nb, "assert workflow.get_output"))
    succeeded = int(re.search(r"(\d+) scheduled runs succeeded", text_outputs(nb)).group(1))
    assert succeeded >= 3
    listed = cell_text(nb, "for workflow_id, status in workflow.list_all").splitlines()
    assert re.fullmatch(r"nightly-2026-11-01\s+SUCCESSFUL", listed[0])
    fired = [line for line in listed if re.fullmatch(r"every-2s@\S+\s+SUCCESSFUL", line)]
    assert len(fired) == succeeded == len(listed) - 1
    fires = cell_text(nb, "fires = pd.DataFrame")
    assert all(line.split()[0] in fires for line in fired)               # each run has its fire
    assert fires.count("SUCCESSFUL") == succeeded
    log = cell_text(nb, 'print(workdir.joinpath("side_effects.log")').splitlines()
    assert log.count("extract 2026-11-01") == 1                       # the first step ran once
    assert log.count("transform_load 2026-11-01") == 2
    assert log.count("extract 2026-11-02") == log.count("transform_load 2026-11-02") == succeeded


def test_the_saved_workflows_notebook_holds_its_outputs() -> None:
    check_workflows_notebook(nbformat.read(WORKFLOWS, as_version=4))


def test_the_saved_workflows_notebook_is_what_the_builder_writes() -> None:
    saved = nbformat.read(WORKFLOWS, as_version=4)
    built = load_workflows_builder().build_notebook()
    assert [c.source for c in saved.cells] == [c.source for c in built.cells]


def test_the_workflows_notebook_runs_top_to_bottom(tmp_path) -> None:
    copy = tmp_path / WORKFLOWS.name
    shutil.copy(WORKFLOWS, copy)
    nb = nbformat.read(copy, as_version=4)
    for cell in nb.cells:   # start from a clean slate: every output must come from this run
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    executed = load_workflows_builder().execute_notebook(nb, cwd=tmp_path)
    nbformat.write(executed, copy)
    check_workflows_notebook(nbformat.read(copy, as_version=4))
    assert sorted(p.name for p in tmp_path.iterdir()) == [WORKFLOWS.name]   # its files went to a temp folder


# --------------------------------------------------------------------------- 04-serve
SERVE = NOTEBOOKS / "04-serve.ipynb"


def load_serve_builder():
    """notebooks/build_04_serve.py as a module."""
    spec = importlib.util.spec_from_file_location("build_04_serve", NOTEBOOKS / "build_04_serve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_serve_notebook(nb: nbformat.NotebookNode) -> None:
    """Everything but the autoscaling run: the plan, the answers, the batches, the chart."""
    assert [out for out in outputs(nb) if out["output_type"] == "error"] == []
    assert all(cell.get("execution_count") for cell in nb.cells if cell.cell_type == "code")
    (svg,) = svg_outputs(nb)                                   # the app's plan
    assert "Ingress (ingress)" in svg and "2 replica(s)" in svg and "Model" in svg
    explain = cell_text(nb, "print(app.explain())")
    assert "deployment Model: replicas=2, max_ongoing_requests=16, resources {CPU: 0.25}" in explain
    assert re.search(r"deployment Ingress \(ingress\): replicas=1, .*resources \{CPU: 0\.25\}\n"
                     r"    handle -> Model\n", explain)
    assert "[ACTOR Model]" in explain and "[ACTOR Ingress]" in explain
    http = cell_text(nb, "ingress = serve.run").splitlines()
    assert http == [f"GET /?x={x} -> 200 {{'x': {x}, 'y': {10 * x}}}" for x in (1, 2, 3)]
    handles = cell_text(nb, 'print("ingress.predict.remote(4)').splitlines()
    assert handles[:4] == ["ingress.predict.remote(4) -> {'x': 4, 'y': 40}", "model.remote(5) -> 50",
                           "model.remote(model.remote(6)) -> 600", "application: RUNNING"]
    assert re.search(r"Model: RUNNING, replicas \{'RUNNING': 2\b", "\n".join(handles))
    batched = cell_text(nb, "responses = [model.predict_batch")
    assert f"16 answers, all correct: {[10 * i for i in range(16)]}" in batched
    batches = [int(n) for n in re.search(r"batches: \[([\d, ]+)\]", batched).group(1).split(",")]
    assert sum(batches) == 16 and max(batches) <= 8
    assert max(batches) > 1                                      # calls were gathered
    assert cell_text(nb, "@serve.deployment(\n    ray_actor_options").strip() == "replicas at start: 1"
    assert len(png_outputs(nb)) == 1                             # replicas and latency over time
    assert cell_text(nb, "serve.shutdown()").strip() == "shut down"


def check_autoscaling_run(nb: nbformat.NotebookNode) -> None:
    """The autoscaled deployment went up under load and back down to min_replicas after."""
    run = cell_text(nb, "LOAD_S = ")
    start, peak, end = map(int, re.search(r"replicas: start (\d+) peak (\d+) end (\d+)", run).groups())
    assert (start, end) == (1, 1) and 2 <= peak <= 4, run
    assert int(re.search(r"calls answered: (\d+)", run).group(1)) > 0


def test_the_saved_serve_notebook_holds_its_outputs() -> None:
    check_serve_notebook(nbformat.read(SERVE, as_version=4))


def test_the_saved_serve_notebook_shows_replicas_scaling_up_and_down() -> None:
    check_autoscaling_run(nbformat.read(SERVE, as_version=4))


def test_the_saved_serve_notebook_is_what_the_builder_writes() -> None:
    saved = nbformat.read(SERVE, as_version=4)
    built = load_serve_builder().build_notebook()
    assert [c.source for c in saved.cells] == [c.source for c in built.cells]


def test_the_serve_notebook_runs_top_to_bottom(tmp_path) -> None:
    copy = tmp_path / SERVE.name
    shutil.copy(SERVE, copy)
    nb = nbformat.read(copy, as_version=4)
    for cell in nb.cells:   # start from a clean slate: every output must come from this run
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    executed = load_serve_builder().execute_notebook(nb, cwd=tmp_path)
    nbformat.write(executed, copy)
    fresh = nbformat.read(copy, as_version=4)
    check_serve_notebook(fresh)
    check_autoscaling_run(fresh)
    assert sorted(p.name for p in tmp_path.iterdir()) == [SERVE.name]   # it wrote no files


# --------------------------------------------------------------------------- 05-tune
TUNE = NOTEBOOKS / "05-tune.ipynb"


def load_tune_builder():
    """notebooks/build_05_tune.py as a module."""
    spec = importlib.util.spec_from_file_location("build_05_tune", NOTEBOOKS / "build_05_tune.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_tune_notebook(nb: nbformat.NotebookNode) -> None:
    """The plan, the 20 trials (some stopped by ASHA, some run to max_t), the best one and
    its checkpoint, the chart. Which trials ASHA stops depends on the order they reach a
    rung, so no exact losses are checked."""
    assert [out for out in outputs(nb) if out["output_type"] == "error"] == []
    assert all(cell.get("execution_count") for cell in nb.cells if cell.cell_type == "code")
    assert cell_text(nb, "rng = np.random.default_rng(0)").startswith(
        "train (3000, 20), validation (1000, 20)")
    explain = cell_text(nb, "print(tuner.explain())")
    assert re.search(r"== Tune experiment 'tune-logreg' at \S+/tune-logreg ==", explain)
    assert "trainable: train (function); each trial actor holds {'CPU': 1.0} " \
           "(reused across trials)" in explain
    assert "searcher: BasicVariantGenerator (20 trials: grid x num_samples)" in explain
    assert "scheduler: ASHAScheduler (metric='val_loss', mode='min', training_iteration " \
           "max_t=30, grace_period=3, reduction_factor=3, brackets=1)" in explain
    assert "[ACTOR TrialRunner] cpu {CPU: 1}" in explain
    assert "[METHOD TrialRunner.start]" in explain
    (svg,) = svg_outputs(nb)                                     # the experiment's plan
    assert "TrialRunner" in svg and "ASHAScheduler" in svg and "BasicVariantGenerator" in svg
    fit = cell_text(nb, "grid = tuner.fit()")
    assert "[tune] done: 20 TERMINATED | best val_loss=" in fit
    assert "ResultGrid<20 trials: 20 terminated, 0 errored>" in fit
    results = cell_text(nb, "frame = grid.get_dataframe()")
    full, early = map(int, re.search(r"20 trials: (\d+) ran 30 epochs, (\d+) were stopped early "
                                     r"by ASHA", results).groups())
    assert full >= 1 and early >= 1 and full + early == 20
    epochs, total = map(int, re.search(r"epochs run: (\d+) of (\d+)", results).groups())
    assert total == 600 and 30 * full + 3 * early <= epochs < 600
    ends = {int(k): int(v) for k, v in re.findall(
        r"(\d+): (\d+)", re.search(r"trials per last epoch: \{(.*)\}", results).group(1))}
    assert set(ends) <= {3, 9, 27, 30} and ends[30] == full and sum(ends.values()) == 20
    table = [line.split() for line in results.splitlines() if re.match(r"\d+\s+\w+_\d{5}\s", line)]
    assert len(table) == 20                                      # one row per trial
    header = next(line for line in results.splitlines() if "config/lr" in line).split()
    assert header == ["trial_id", "val_loss", "val_acc", "training_iteration", "config/lr",
                      "config/batch_size", "config/l2"]
    losses = [float(row[2]) for row in table]
    assert losses == sorted(losses) and 0.1 < losses[0] < 0.5 and losses[-1] < 0.75
    for row in table:
        assert 0.5 < float(row[3]) <= 1 and int(row[4]) in ends
        assert 1e-4 <= float(row[5]) <= 1 and int(row[6]) in (16, 64, 256)
        assert 0 <= float(row[7]) <= 0.02
    best = cell_text(nb, "best = grid.get_best_result()")
    assert re.search(r"best config: \{'lr': [\d.e-]+, 'batch_size': (16|64|256), 'l2': [\d.e-]+\}",
                     best)
    best_loss = float(re.search(r"best val_loss (\d\.\d+), val_acc 0\.\d+, after \d+ epochs",
                                best).group(1))
    assert f"{losses[0]:.4f}" == f"{best_loss:.4f}"              # the table's first row
    assert re.search(rf"checkpoint checkpoint_\d{{6}}: its weights give val_loss {best_loss:.4f}, "
                     r"as reported", best)
    assert re.search(r"kept checkpoints: \['checkpoint_\d{6}', 'checkpoint_\d{6}'\]", best)
    assert len(png_outputs(nb)) == 1                             # the learning curves
    assert cell_text(nb, "sluice.shutdown()").strip() == "shut down"


def test_the_saved_tune_notebook_holds_its_outputs() -> None:
    check_tune_notebook(nbformat.read(TUNE, as_version=4))


def test_the_saved_tune_notebook_is_what_the_builder_writes() -> None:
    saved = nbformat.read(TUNE, as_version=4)
    built = load_tune_builder().build_notebook()
    assert [c.source for c in saved.cells] == [c.source for c in built.cells]


def test_the_tune_notebook_runs_top_to_bottom(tmp_path) -> None:
    copy = tmp_path / TUNE.name
    shutil.copy(TUNE, copy)
    nb = nbformat.read(copy, as_version=4)
    for cell in nb.cells:   # start from a clean slate: every output must come from this run
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    executed = load_tune_builder().execute_notebook(nb, cwd=tmp_path)
    nbformat.write(executed, copy)
    check_tune_notebook(nbformat.read(copy, as_version=4))
    assert sorted(p.name for p in tmp_path.iterdir()) == [TUNE.name]   # its experiment went to a temp folder


# --------------------------------------------------------------------------- 06-train
TRAIN = NOTEBOOKS / "06-train.ipynb"


def load_train_builder():
    """notebooks/build_06_train.py as a module."""
    path = NOTEBOOKS / "build_06_train.py"
    spec = importlib.util.spec_from_file_location("build_06_train", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_train_notebook(nb: nbformat.NotebookNode) -> None:
    """The dataset, the gang's plan printed and drawn, a run whose rank 1 was killed in
    epoch 3 and which resumed from epoch 2's checkpoint, its results and the loss curve.
    Which rows each rank reads may differ between runs, so losses are checked by bounds."""
    assert [out for out in outputs(nb) if out["output_type"] == "error"] == []
    assert all(cell.get("execution_count") for cell in nb.cells if cell.cell_type == "code")
    assert cell_text(nb, "def make_point(row):").startswith("2000 rows; the first three:")
    explain = cell_text(nb, "print(trainer.explain())")
    assert re.search(r"== TorchTrainer run 'ddp-linear' at \S+/ddp-linear ==", explain)
    assert "loop: train_loop; 2 rank(s), each holding {'CPU': 1.0}, placed PACK; " \
           "backend: TorchConfig" in explain
    assert "dataset 'train' -> split over the 2 rank(s) (streaming_split, equal rows)" in explain
    assert explain.count("[ACTOR TrainWorker] cpu {CPU: 1}") == 2      # a stage per rank
    assert explain.count("[METHOD TrainWorker.start]") == 2
    (svg,) = svg_outputs(nb)                                      # the gang's plan, drawn
    assert "TorchTrainer: 2 rank(s), PACK" in svg
    assert svg.count(">TrainWorker</text>") == svg.count(">TrainWorker.start</text>") == 2
    assert svg.count(">dataset &#39;train&#39;</text>") == 1    # the dataset, split in two
    assert ">train shard 0/2</text>" in svg and ">train shard 1/2</text>" in svg
    fit = cell_text(nb, "result = trainer.fit()")
    assert re.search(r"training failed \(rank 1: its process died: .*exit code -9.*\); "
                     r"restarting the gang from \S+/checkpoint_000002 \(failure 1 of 1\)", fit)
    assert "failures: 1, attempts: 2\nrank 1 was killed: True\n" in fit
    assert "the attempt that started at epoch 0 ran epochs 0 to 2\n" \
           "the attempt that started at epoch 3 ran epochs 3 to 7\n" \
           "the second attempt resumed at epoch 3, from the checkpoint written after " \
           "epoch 2" in fit
    results = cell_text(nb, "m = result.metrics")
    loss, weight, bias = map(float, re.search(
        r"final: epoch 7, loss (\d\.\d{4}), weight (\d\.\d{3}), bias (\d\.\d{3}), "
        r"2000 rows an epoch", results).groups())
    assert 0.005 < loss < 0.02 and abs(weight - 3) < 0.1 and abs(bias - 1) < 0.05
    assert "kept checkpoints: ['checkpoint_000006', 'checkpoint_000007']" in results
    assert f"latest checkpoint checkpoint_000007: epoch 7, weight {weight:.3f}, as " \
           f"reported" in results
    table = cell_text(nb, "with pd.option_context")
    header = next(line for line in table.splitlines() if "epoch" in line).split()
    assert header == ["epoch", "loss", "rows", "weight", "bias", "start_epoch"]
    rows = [line.split() for line in table.splitlines() if re.match(r"\d+\s+\d+\s", line)]
    assert [int(row[1]) for row in rows] == list(range(8))      # each epoch reported once
    assert [int(row[6]) for row in rows] == [0] * 3 + [3] * 5   # the second attempt's from 3
    assert all(int(row[3]) == 2000 for row in rows)
    losses = [float(row[2]) for row in rows]
    assert losses[0] > 0.5 and f"{losses[-1]:.4f}" == f"{loss:.4f}"
    assert losses[3] < losses[2]     # the second attempt went on from the checkpoint's weights
    assert len(png_outputs(nb)) == 1                             # the loss curve
    assert cell_text(nb, "sluice.shutdown()").strip() == "shut down"


def test_the_saved_train_notebook_holds_its_outputs() -> None:
    check_train_notebook(nbformat.read(TRAIN, as_version=4))


def test_the_saved_train_notebook_is_what_the_builder_writes() -> None:
    saved = nbformat.read(TRAIN, as_version=4)
    built = load_train_builder().build_notebook()
    assert [c.source for c in saved.cells] == [c.source for c in built.cells]


def test_the_train_notebook_runs_top_to_bottom(tmp_path) -> None:
    import pytest

    pytest.importorskip("torch")    # (the saved notebook's checks need no torch)
    copy = tmp_path / TRAIN.name
    shutil.copy(TRAIN, copy)
    nb = nbformat.read(copy, as_version=4)
    for cell in nb.cells:   # start from a clean slate: every output must come from this run
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    executed = load_train_builder().execute_notebook(nb, cwd=tmp_path)
    nbformat.write(executed, copy)
    check_train_notebook(nbformat.read(copy, as_version=4))
    # its run went to a temporary folder, removed at the end
    assert sorted(p.name for p in tmp_path.iterdir()) == [TRAIN.name]
