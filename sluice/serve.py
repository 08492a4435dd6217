"""``import sluice.serve as serve``: online serving (it lives in ``sluice.libs.serve``).

Ray Serve's submodules users import from (``ray.serve.handle``, ``ray.serve.config``,
``ray.serve.exceptions``) are here under the same names.
"""

import importlib
import sys

from sluice.libs.serve import *
from sluice.libs.serve import __all__  # noqa: F401

for _sub in ("handle", "config", "exceptions"):
    sys.modules[f"{__name__}.{_sub}"] = importlib.import_module(f"sluice.libs.serve.{_sub}")
del _sub
