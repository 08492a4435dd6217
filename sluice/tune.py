"""``from sluice import tune``: hyperparameter search (it lives in ``sluice.libs.tune``).

Ray Tune's submodules users import from (``ray.tune.schedulers``, ``ray.tune.search``,
``ray.tune.search.basic_variant``) are here under the same names.
"""

import importlib
import sys

from sluice.libs.tune import *
from sluice.libs.tune import __all__  # noqa: F401

for _sub in ("schedulers", "search", "search.basic_variant", "search.optuna", "search.hyperopt",
             "search_space", "trainable"):
    sys.modules[f"{__name__}.{_sub}"] = importlib.import_module(f"sluice.libs.tune.{_sub}")
del _sub
