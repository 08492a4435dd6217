"""``@serve.deployment``, :class:`Deployment` and :class:`Application` (a bound deployment graph).

>>> @deployment(num_replicas=2)
... class Model:
...     def __call__(self, x):
...         return x + 1
>>> Model.name, Model.num_replicas, Model.options(name="M2").name
('Model', 2, 'M2')
>>> app = Model.bind()
>>> type(app).__name__, app.deployment.name
('Application', 'Model')
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from sluice.libs.serve.config import DeploymentConfig

_CONFIG_NAMES = ("num_replicas", "max_ongoing_requests", "max_queued_requests",
                 "ray_actor_options", "autoscaling_config", "user_config",
                 "health_check_period_s", "health_check_timeout_s",
                 "graceful_shutdown_wait_loop_s", "graceful_shutdown_timeout_s", "version")
# Ray Serve options sluice accepts and does not act on yet (placement per replica, logging).
_ACCEPTED = ("placement_group_bundles", "placement_group_strategy", "max_replicas_per_node",
             "logging_config", "max_constructor_retry_count")

class Deployment:
    """A class or function made servable by ``@serve.deployment``; ``.bind()`` it into an app.

    Its options read as attributes (``name``, ``num_replicas``, ``user_config``,
    ``max_ongoing_requests``, ``ray_actor_options``, ...); ``.options(...)`` makes a copy with
    some changed.
    """

    def __init__(self, func_or_class: Callable, name: str, config: DeploymentConfig):
        self.func_or_class = func_or_class
        self.name = name
        self.config = config

    def __getattr__(self, item: str) -> Any:
        if item in _CONFIG_NAMES:
            return getattr(self.config, item)
        raise AttributeError(f"Deployment has no attribute {item!r}")

    def options(self, *, name: str | None = None, **changes: Any) -> Deployment:
        """A copy of this deployment with the options given changed (Ray Serve's names)."""
        new_name = self.name if name is None else _checked_name(name)
        return Deployment(self.func_or_class, new_name,
                          _config(changes, f"{new_name}.options()", self.config))

    def bind(self, *args: Any, **kwargs: Any) -> Application:
        """An :class:`Application`: this deployment constructed with ``args``/``kwargs``.
        Bound deployments among them reach the constructor as DeploymentHandles."""
        if not inspect.isclass(self.func_or_class) and (args or kwargs):
            raise TypeError(f"deployment {self.name!r} is a function: bind it with no "
                            "arguments (a function deployment has no constructor)")
        return Application(self, args, kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"deployment {self.name!r} cannot be called directly; use "
                        f"{self.name}.bind(...) and serve.run(app), then call its handle with "
                        ".remote(...)")

    def __repr__(self) -> str:
        return f"Deployment(name={self.name!r})"


class Application:
    """A deployment bound to its constructor arguments: the root of a ``.bind()`` graph.

    ``serve.run(app)`` deploys it; :meth:`explain` and :meth:`visualize` show the Plan it
    lowers to (deployments, replica counts, resources, handle edges).
    """

    def __init__(self, deployment: Deployment, args: tuple, kwargs: dict):
        self.deployment = deployment
        self.args = args
        self.kwargs = kwargs

    def explain(self, route_prefix: str | None = "/") -> str:
        """The app's deployments (replicas, resources, handle edges) and the Plan they lower to."""
        from sluice.libs.serve.lowering import lower

        return lower(self, route_prefix=route_prefix).explain()

    def visualize(self, path: str | None = None) -> Any:
        """A ``graphviz.Digraph`` of the app's Plan (rendered to ``path`` when given)."""
        from sluice.libs.serve.lowering import lower

        return lower(self).visualize(path)

    def __repr__(self) -> str:
        return f"Application({self.deployment.name})"


def _checked_name(name: Any) -> str:
    if not isinstance(name, str) or not name or "#" in name or "/" in name:
        raise ValueError(f"deployment name={name!r} must be a non-empty str without '#' or '/'")
    return name


def _config(changes: dict[str, Any], where: str, base: DeploymentConfig | None = None
            ) -> DeploymentConfig:
    known = set(_CONFIG_NAMES) | set(_ACCEPTED)
    unknown = sorted(set(changes) - known)
    if unknown:
        raise TypeError(f"{where}: unknown option(s) {unknown}; the options are "
                        f"{sorted(known | {'name'})}")
    given = {k: v for k, v in changes.items() if k in _CONFIG_NAMES}
    if base is not None and "num_replicas" in given and "autoscaling_config" not in given:
        given["autoscaling_config"] = None  # a fixed count (or "auto") replaces the old policy
    if base is None:
        return DeploymentConfig(**given)
    if given.get("autoscaling_config") is not None and "num_replicas" not in given:
        given["num_replicas"] = None  # autoscaling replaces a fixed count
    return base.replace(**given)


def deployment(_func_or_class: Callable | None = None, *, name: str | None = None,
               **options: Any) -> Any:
    """Ray Serve's ``@serve.deployment``: on a class (or a function), with or without options.

    Options and defaults are Ray Serve's: ``num_replicas=1`` (or ``"auto"``),
    ``max_ongoing_requests=5``, ``max_queued_requests=-1``, ``ray_actor_options``,
    ``autoscaling_config``, ``user_config``, ``health_check_period_s=10``,
    ``health_check_timeout_s=30``, ``graceful_shutdown_timeout_s=20``. Bad values raise here.
    """
    config = _config(options, f"@serve.deployment({_func_or_class and _func_or_class.__name__ or ''})")

    def wrap(target: Callable) -> Deployment:
        if isinstance(target, Deployment):
            raise TypeError(f"{target!r} is already a deployment; use .options(...) to change it")
        if not callable(target):
            raise TypeError(f"@serve.deployment goes on a class or a function, not {target!r}")
        return Deployment(target, _checked_name(name or target.__name__), config)

    return wrap(_func_or_class) if _func_or_class is not None else wrap


def ingress(app: Any) -> Callable[[type], type]:
    """``@serve.ingress(fastapi_app)`` on a deployment class: HTTP requests go to ``app``'s
    routes (its methods bound to the replica's object), as in Ray Serve (see
    :func:`sluice.libs.serve.http.ingress`)."""
    from sluice.libs.serve import http

    return http.ingress(app)
