"""sluice.serve's public names: Ray Serve's, each documented."""

from __future__ import annotations

import inspect

import pytest

import sluice.serve as serve

RAY_NAMES = ["Application", "Deployment", "DeploymentHandle", "DeploymentResponse",
             "DeploymentResponseGenerator", "batch", "delete", "deployment",
             "get_app_handle", "get_deployment_handle", "get_replica_context", "ingress",
             "run", "shutdown", "start", "status"]


def test_ray_serves_names_are_there_and_documented() -> None:
    for name in serve.__all__:
        assert getattr(serve, name).__doc__, f"sluice.serve.{name} has no docstring"
    assert set(RAY_NAMES) <= set(serve.__all__)


def test_ray_serves_submodules_import_under_sluice() -> None:
    from sluice.serve.config import AutoscalingConfig
    from sluice.serve.exceptions import BackPressureError
    from sluice.serve.handle import DeploymentHandle

    assert DeploymentHandle is serve.DeploymentHandle and AutoscalingConfig is serve.AutoscalingConfig
    assert issubclass(BackPressureError, Exception)


def test_the_names_are_ray_serves_own() -> None:
    ray_serve = pytest.importorskip("ray.serve")
    import ray.serve.handle

    assert all(hasattr(ray_serve, name) or hasattr(ray.serve.handle, name) for name in RAY_NAMES)
    ours, rays = inspect.signature(serve.batch), inspect.signature(ray_serve.batch)
    for name in ("max_batch_size", "batch_wait_timeout_s"):
        assert ours.parameters[name].default == rays.parameters[name].default
    for name in ("name", "blocking", "route_prefix"):
        assert (inspect.signature(serve.run).parameters[name].default
                == inspect.signature(ray_serve.run).parameters[name].default)
