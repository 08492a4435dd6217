"""``import sluice.serve as serve``: online serving (it lives in ``sluice.libs.serve``)."""

from sluice.libs.serve import *
from sluice.libs.serve import __all__  # noqa: F401
