"""``sluice.train.torch``: PyTorch's distributed data parallel on a gang of ranks (Ray
Train's ``ray.train.torch``): :class:`TorchTrainer`, :class:`TorchConfig`,
:func:`prepare_model`, :func:`prepare_data_loader`, :func:`get_device`.

torch is imported only on the ranks and when these functions run (the ``train`` extra:
``pip install 'sluice[train]'``).
"""

from sluice.libs.train.torch.config import TorchConfig
from sluice.libs.train.torch.prepare import get_device, prepare_data_loader, prepare_model
from sluice.libs.train.torch.trainer import TorchTrainer

__all__ = ["TorchConfig", "TorchTrainer", "get_device", "prepare_data_loader", "prepare_model"]
