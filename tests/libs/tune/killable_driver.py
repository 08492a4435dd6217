"""A Tune driver run in a process of its own by test_tuner.py, to be SIGKILLed mid-run.

``python killable_driver.py STORAGE GATE``: six trials of ten iterations, each iteration
checkpointed. Trials 2 and up wait at iteration 3 until the file ``GATE`` exists, so the
test can kill the driver while they are unfinished, with their checkpoints on disk. Every
start of a trial appends ``trial_id start_iteration`` to ``STORAGE/starts.log``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time


def make_trainable(storage: str, gate: str):
    """The trainable (a closure: pickled by value, so the workers need no test module)."""
    from sluice import tune

    def train(config):
        checkpoint = tune.get_checkpoint()
        start = 0
        if checkpoint is not None:
            with open(os.path.join(checkpoint.path, "step")) as f:
                start = int(f.read())
        with open(os.path.join(storage, "starts.log"), "a") as f:
            f.write(f"{tune.get_context().get_trial_id()} {start}\n")
        for step in range(start + 1, 11):
            if config["index"] >= 2 and step == 4:
                while not os.path.exists(gate):  # held here until the test says go
                    time.sleep(0.02)
            folder = tempfile.mkdtemp()
            with open(os.path.join(folder, "step"), "w") as f:
                f.write(str(step))
            tune.report({"score": config["index"] * 100 + step, "step": step},
                        checkpoint=tune.Checkpoint.from_directory(folder))

    return train


def main() -> None:
    storage, gate = sys.argv[1], sys.argv[2]
    import sluice
    from sluice import tune

    sluice.init(num_cpus=2)
    tuner = tune.Tuner(make_trainable(storage, gate),
                       param_space={"index": tune.grid_search(list(range(6)))},
                       tune_config=tune.TuneConfig(metric="score", mode="max",
                                                   max_concurrent_trials=2),
                       run_config=tune.RunConfig(name="killed", storage_path=storage, verbose=0,
                                                 checkpoint_config=tune.CheckpointConfig(
                                                     num_to_keep=2)))
    tuner.fit()


if __name__ == "__main__":
    main()
