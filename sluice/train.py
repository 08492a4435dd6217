"""``from sluice import train``: distributed training (it lives in ``sluice.libs.train``).

``sluice.train.torch`` is Ray Train's ``ray.train.torch`` (TorchTrainer, TorchConfig,
prepare_model, prepare_data_loader, get_device); it imports torch only when used.
"""

import importlib
import sys

from sluice.libs.train import *
from sluice.libs.train import __all__  # noqa: F401

sys.modules[f"{__name__}.torch"] = importlib.import_module("sluice.libs.train.torch")
torch = sys.modules[f"{__name__}.torch"]
