"""sluice.serve's errors, with Ray Serve's names."""

from __future__ import annotations

from sluice.libs.serve.router import BackPressureError


class RayServeException(Exception):
    """A serve call could not do what it was asked (an app failed to deploy, ...)."""


__all__ = ["BackPressureError", "RayServeException"]
