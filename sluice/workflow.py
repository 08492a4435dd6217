"""``import sluice.workflow`` / ``from sluice import workflow``: durable runs and schedules
(the library lives in ``sluice.libs.workflow``)."""

from sluice.libs.workflow import *
from sluice.libs.workflow import __all__  # noqa: F401
