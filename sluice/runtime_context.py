"""Ray's ``ray.runtime_context`` import path: :class:`RuntimeContext` and :func:`get_runtime_context`."""

from sluice.executor.runtime_context import RuntimeContext, get_runtime_context

__all__ = ["RuntimeContext", "get_runtime_context"]
