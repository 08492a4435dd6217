"""``import sluice.data``: the Dataset library (it lives in ``sluice.libs.data``)."""

from sluice.libs.data import *
from sluice.libs.data import __all__  # noqa: F401
