"""The one runtime handle of this process.

In the driver it is the :class:`~sluice.executor.runtime.Runtime` that
``sluice.init`` starts; inside a worker process it is the worker's proxy that
talks to the driver over its pipe. Everything reaches it through
:func:`current`, never through an imported global.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sluice.executor.backend import Backend

_current: Any = None


def current() -> Backend | None:
    """The active runtime of this process, or ``None`` before ``init``."""
    return _current


def set_current(runtime: Backend | None) -> None:
    """Install ``runtime`` as this process's runtime (``None`` clears it)."""
    global _current
    _current = runtime
