"""The driver's serve API: start, run, status, delete, shutdown, and handles by name.

>>> ServeStatus({}).applications
{}
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sluice.libs.serve import handle as _handles
from sluice.libs.serve.config import HTTPOptions
from sluice.libs.serve.controller import DEPLOY_FAILED, DEPLOYING, ServeController
from sluice.libs.serve.deployment import Application
from sluice.libs.serve.exceptions import RayServeException
from sluice.libs.serve.handle import CONTROLLER_NAME, SERVE_NAMESPACE, DeploymentHandle
from sluice.libs.serve.replica import ReplicaContext, current_context


@dataclass(frozen=True)
class DeploymentStatusOverview:
    """One deployment's status (Ray's names): ``status``, ``message``, ``replica_states``."""

    status: str
    message: str = ""
    replica_states: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ApplicationStatusOverview:
    """One app's status: ``status`` (DEPLOYING, RUNNING, DEPLOY_FAILED, UNHEALTHY), its
    ``message``, ``route_prefix`` and ``deployments`` by name."""

    status: str
    message: str = ""
    route_prefix: str | None = None
    deployments: dict[str, DeploymentStatusOverview] = field(default_factory=dict)


@dataclass(frozen=True)
class ServeStatus:
    """What ``serve.status()`` gives: ``applications`` by name."""

    applications: dict[str, ApplicationStatusOverview] = field(default_factory=dict)


def _get(ref: Any, timeout: float | None = None) -> Any:
    """``sluice.get`` that raises the controller's own error (its type and message)."""
    import sluice

    try:
        return sluice.get(ref, timeout=timeout)
    except sluice.exceptions.TaskError as err:
        cause = getattr(err, "cause", None)
        if isinstance(cause, Exception):
            raise cause from None
        raise


def _controller(create: bool, http_options: HTTPOptions | None = None) -> Any:
    import sluice

    if not create and not sluice.is_initialized():
        raise RayServeException("sluice.serve is not running (no sluice runtime); start it "
                                "with serve.run(app) or serve.start()")
    try:
        return sluice.get_actor(CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
    except ValueError:
        if not create:
            raise RayServeException("sluice.serve is not running; start it with serve.run(app) "
                                    "or serve.start()") from None
    actor_cls = sluice.remote(ServeController).options(
        name=CONTROLLER_NAME, namespace=SERVE_NAMESPACE, lifetime="detached",
        get_if_exists=True, max_concurrency=100_000, num_cpus=0)
    return actor_cls.remote(http_options or HTTPOptions())


def _start_proxy(controller: Any, http_options: HTTPOptions | None) -> Any:
    """The HTTP proxy actor (started on ``http_options``' port when none runs)."""
    from sluice.libs.serve.proxy import start_proxy

    return start_proxy(controller, http_options)


def start(http_options: dict | HTTPOptions | None = None, **_ray_only: Any) -> None:
    """Start serve (its controller, and the HTTP proxy on ``http_options``' host and port)."""
    options = HTTPOptions.from_value(http_options)
    ctl = _controller(True, options)
    _start_proxy(ctl, options)


def run(target: Application, blocking: bool = False, name: str = "default",
        route_prefix: str | None = "/", **_ray_only: Any) -> DeploymentHandle:
    """Deploy app ``target`` as ``name`` and wait until every replica is up; the ingress's
    handle. A constructor that raises makes this raise, naming the deployment and the error."""
    from sluice.libs.serve.lowering import deployment_specs, lower

    if route_prefix is not None and (not isinstance(route_prefix, str)
                                     or not route_prefix.startswith("/")):
        raise ValueError(f"route_prefix={route_prefix!r} must be a str starting with '/' "
                         "(or None: no HTTP route)")
    serve_plan = lower(target, name, route_prefix)
    specs, ingress = deployment_specs(serve_plan)
    ctl = _controller(True)
    _get(ctl.deploy_app.remote(name, route_prefix, serve_plan.ingress, specs))
    proxy = _start_proxy(ctl, None) if route_prefix is not None else None
    while True:
        status, message = _get(ctl.wait_app.remote(name, 30.0))
        if status == DEPLOY_FAILED:
            raise RayServeException(f"app {name!r} failed to deploy: {message}")
        if status != DEPLOYING:
            break
    if proxy is not None:  # its route is served once this returns
        from sluice.libs.serve.proxy import wait_for_routes

        wait_for_routes(ctl, proxy)
    if blocking:
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            shutdown()
    return ingress


def status() -> ServeStatus:
    """Every app's status and its deployments' (empty when serve is not running)."""
    try:
        ctl = _controller(False)
    except RayServeException:
        return ServeStatus()
    apps = {}
    for app_name, app in _get(ctl.status.remote()).items():
        deps = {d: DeploymentStatusOverview(v["status"], v["message"], v["replica_states"])
                for d, v in app["deployments"].items()}
        apps[app_name] = ApplicationStatusOverview(app["status"], app["message"],
                                                   app["route_prefix"], deps)
    return ServeStatus(apps)


def delete(name: str, _blocking: bool = True) -> None:
    """Delete app ``name`` (its replicas stop); nothing happens if there is none."""
    try:
        ctl = _controller(False)
    except RayServeException:
        return
    _get(ctl.delete_app.remote(name))


def shutdown() -> None:
    """Delete every app and stop serve's controller and proxy."""
    import sluice

    try:
        ctl = _controller(False)
    except RayServeException:
        _handles.reset()
        return
    try:
        _get(ctl.shutdown.remote())
        proxy = _get(ctl.get_proxy.remote())
        if proxy is not None:
            sluice.kill(proxy)
    finally:
        sluice.kill(ctl)
        _handles.reset()
        _wait_gone()


def _wait_gone(deadline_s: float = 30.0) -> None:
    """Return once the controller's name is free (a new serve.run makes a new one)."""
    import sluice

    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            sluice.get_actor(CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
        except ValueError:
            return
        time.sleep(0.05)


def get_app_handle(name: str) -> DeploymentHandle:
    """The handle of app ``name``'s ingress deployment."""
    ctl = _controller(False)
    info = _get(ctl.app_info.remote(name))
    if info is None:
        apps = _get(ctl.app_names.remote())
        raise RayServeException(f"no app named {name!r} is running (apps: {apps}); "
                                "serve.run it first, or check the name")
    return DeploymentHandle(info["ingress"].partition("#")[2], name)


def get_deployment_handle(deployment_name: str, app_name: str | None = None
                          ) -> DeploymentHandle:
    """The handle of deployment ``deployment_name`` of app ``app_name`` (default: the app of
    the replica calling, else "default")."""
    if app_name is None:
        context = current_context()
        app_name = context.app_name if context is not None else "default"
    ctl = _controller(False)
    info = _get(ctl.app_info.remote(app_name))
    if info is None:
        apps = _get(ctl.app_names.remote())
        raise RayServeException(f"no app named {app_name!r} is running (apps: {apps}); "
                                "serve.run it first, or check the name")
    if deployment_name not in info["deployments"]:
        raise RayServeException(f"app {app_name!r} has no deployment {deployment_name!r} "
                                f"(its deployments: {info['deployments']})")
    return DeploymentHandle(deployment_name, app_name)


def get_replica_context() -> ReplicaContext:
    """The replica the calling code runs in (app, deployment, replica id, its object)."""
    context = current_context()
    if context is None:
        raise RuntimeError("serve.get_replica_context() was called outside a replica; call it "
                           "in a deployment's methods or constructor")
    return context


__all__ = ["ApplicationStatusOverview", "DeploymentStatusOverview", "ServeStatus", "delete",
           "get_app_handle", "get_deployment_handle", "get_replica_context", "run", "shutdown",
           "start", "status"]
