"""What a training loop calls to use the gang with PyTorch: the rank's device, a model
wrapped for data parallel training, a data loader that gives each rank its share."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sluice.libs.train.session import current_session
from sluice.libs.train.torch.config import import_torch


def get_device() -> Any:
    """The rank's device: its GPU with ``ScalingConfig(use_gpu=True)`` (where CUDA is
    available), else the CPU."""
    torch = import_torch()
    session = current_session()
    if session is not None and session.use_gpu and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _world_size() -> int:
    session = current_session()
    return session.context.world_size if session is not None else 1


def prepare_model(model: Any, move_to_device: bool | Any = True,
                  parallel_strategy: str | None = "ddp",
                  parallel_strategy_kwargs: dict[str, Any] | None = None) -> Any:
    """``model`` on the rank's device, wrapped in ``DistributedDataParallel`` when there is
    more than one rank (``parallel_strategy=None``: not wrapped)."""
    import_torch()
    if parallel_strategy not in ("ddp", None):
        raise ValueError(f"prepare_model(parallel_strategy={parallel_strategy!r}): give 'ddp' "
                         f"or None ('fsdp' is not supported by sluice.train)")
    device = get_device()
    if move_to_device is True:
        model = model.to(device)
    elif move_to_device:  # (a device given)
        model = model.to(move_to_device)
    if parallel_strategy == "ddp" and _world_size() > 1:
        from torch.nn.parallel import DistributedDataParallel

        kwargs = dict(parallel_strategy_kwargs or {})
        if device.type == "cuda":
            kwargs.setdefault("device_ids", [device.index])
        model = DistributedDataParallel(model, **kwargs)
    return model


def prepare_data_loader(data_loader: Any, add_dist_sampler: bool = True,
                        move_to_device: bool = True, auto_transfer: bool = False) -> Any:
    """A loader over this rank's share of ``data_loader``'s dataset (a
    ``DistributedSampler``, shuffled if the loader shuffled; the epoch advanced on each
    pass) whose batches are on the rank's device."""
    import_torch()
    from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

    session = current_session()
    loader = data_loader
    if add_dist_sampler and _world_size() > 1 and session is not None and not isinstance(
            data_loader.sampler, DistributedSampler):
        sampler: Any = DistributedSampler(data_loader.dataset,
                                     num_replicas=session.context.world_size,
                                     rank=session.context.world_rank,
                                     shuffle=isinstance(data_loader.sampler, RandomSampler))
        loader = DataLoader(data_loader.dataset, batch_size=data_loader.batch_size,
                            sampler=sampler, num_workers=data_loader.num_workers,
                            collate_fn=data_loader.collate_fn,
                            pin_memory=data_loader.pin_memory, drop_last=data_loader.drop_last,
                            timeout=data_loader.timeout,
                            worker_init_fn=data_loader.worker_init_fn,
                            generator=data_loader.generator)
    return _DeviceLoader(loader, get_device() if move_to_device else None)


class _DeviceLoader:
    """Iterates a loader, moving each batch to ``device`` and advancing a distributed
    sampler's epoch on each pass (so each epoch shuffles differently)."""

    def __init__(self, loader: Any, device: Any):
        self._loader = loader
        self._device = device
        self._epoch = 0

    def __len__(self) -> int:
        return len(self._loader)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)

    def __iter__(self) -> Iterator[Any]:
        sampler: Any = getattr(self._loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self._epoch)
        self._epoch += 1
        for batch in self._loader:
            yield batch if self._device is None else _to(batch, self._device)


def _to(batch: Any, device: Any) -> Any:
    if hasattr(batch, "to"):
        return batch.to(device)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    return batch
