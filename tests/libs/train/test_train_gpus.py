"""sluice.train's GPU placement: with logical GPUs (``sluice.init(num_gpus=2)``) each rank
holds its own GPU and sees only it; with real ones (skipped without CUDA) the ranks join
an nccl group and train on their devices."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

torch = pytest.importorskip("torch")

import sluice  # noqa: E402
from sluice import train  # noqa: E402
from sluice.train.torch import TorchConfig, TorchTrainer, get_device  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def runtime() -> Iterator[None]:
    sluice.init(num_cpus=2, num_gpus=2)
    yield
    sluice.shutdown()


def gpu_loop(config):
    import torch.distributed as dist

    ids = sluice.get_gpu_ids()
    mine = torch.tensor([float(ids[0]) if ids else -1.0])
    everyone = [torch.zeros(1) for _ in range(dist.get_world_size())]
    dist.all_gather(everyone, mine)
    train.report({"ids": [t.item() for t in everyone], "visible": os.environ.get(
        "CUDA_VISIBLE_DEVICES"), "device": str(get_device()), "backend": dist.get_backend()})


def test_each_rank_holds_its_own_gpu(tmp_path) -> None:
    run = TorchTrainer(gpu_loop, torch_config=TorchConfig(backend="gloo"),
                       scaling_config=train.ScalingConfig(num_workers=2, use_gpu=True),
                       run_config=train.RunConfig(name="gpus", storage_path=str(tmp_path)))
    assert run.scaling_config.worker_resources() == {"CPU": 1.0, "GPU": 1.0}
    m = run.fit().metrics
    assert sorted(m["ids"]) == [0.0, 1.0]  # two GPUs, one each
    assert m["visible"] is not None and len(m["visible"].split(",")) == 1
    expected = "cuda:0" if torch.cuda.is_available() else "cpu"
    assert m["device"] == expected and m["backend"] == "gloo"


def test_use_gpu_picks_nccl_unless_a_backend_is_given() -> None:
    assert TorchConfig().backend_for(use_gpu=True) == "nccl"
    assert TorchConfig().backend_for(use_gpu=False) == "gloo"
    assert TorchConfig(backend="gloo").backend_for(use_gpu=True) == "gloo"


def test_more_gpus_than_the_cluster_has_is_a_clear_error(tmp_path) -> None:
    run = TorchTrainer(gpu_loop, scaling_config=train.ScalingConfig(num_workers=3, use_gpu=True,
                                                                    resources_per_worker={"CPU": 0.5}),
                       run_config=train.RunConfig(name="x", storage_path=str(tmp_path)))
    with pytest.raises(ValueError, match=r"'GPU': 3.0\}.*the cluster has \{'GPU': 2.0\}"):
        run.fit()


@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 1,
                    reason="needs a CUDA GPU")
def test_ranks_train_on_real_gpus_over_nccl(tmp_path) -> None:
    count = min(torch.cuda.device_count(), 2)

    def loop(config):
        import torch.distributed as dist

        x = torch.ones(4, device=get_device()) * (train.get_context().get_world_rank() + 1)
        dist.all_reduce(x)
        train.report({"sum": float(x[0]), "backend": dist.get_backend(),
                      "device": str(get_device())})

    m = TorchTrainer(loop, scaling_config=train.ScalingConfig(num_workers=count, use_gpu=True),
                     run_config=train.RunConfig(name="nccl", storage_path=str(tmp_path))).fit().metrics
    assert m["backend"] == "nccl" and m["device"].startswith("cuda")
    assert m["sum"] == sum(range(1, count + 1))
