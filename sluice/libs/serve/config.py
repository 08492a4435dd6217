"""A deployment's options with Ray Serve's names and defaults, checked when they are given.

>>> DeploymentConfig().max_ongoing_requests, DeploymentConfig().health_check_period_s
(5, 10.0)
>>> DeploymentConfig(num_replicas="auto").autoscaling_config.max_replicas
100
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from sluice.libs.serve.autoscaling import AutoscalingConfig

_NUMBER = (int, float)


def _bad(where: str, name: str, value: Any, want: str) -> ValueError:
    return ValueError(f"{where}: {name}={value!r} {want}")


def autoscaling_config_of(value: Any, where: str) -> AutoscalingConfig:
    """``value`` (a dict of Ray's option names, or an :class:`AutoscalingConfig`) as a checked
    config; a ValueError naming ``where`` and the bad option otherwise."""
    if isinstance(value, AutoscalingConfig):
        return value
    if not isinstance(value, dict):
        raise _bad(where, "autoscaling_config", value, "must be a dict of Ray Serve's "
                   "autoscaling options (min_replicas, max_replicas, ...) or None")
    try:
        return AutoscalingConfig.from_dict(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: {err}") from None


@dataclass(frozen=True)
class DeploymentConfig:
    """Every option of ``@serve.deployment`` except the name (plain data, picklable).

    ``num_replicas="auto"`` means autoscaling with Ray's "auto" defaults; the replica count a
    deployment starts with is :attr:`target_replicas`.
    """

    num_replicas: int | str | None = 1
    max_ongoing_requests: int = 5
    max_queued_requests: int = -1
    ray_actor_options: dict = field(default_factory=dict)
    autoscaling_config: AutoscalingConfig | None = None
    user_config: Any = None
    health_check_period_s: float = 10.0
    health_check_timeout_s: float = 30.0
    graceful_shutdown_wait_loop_s: float = 2.0
    graceful_shutdown_timeout_s: float = 20.0
    version: str | None = None

    def __post_init__(self) -> None:
        check(self, "@serve.deployment")

    @property
    def target_replicas(self) -> int:
        """The number of replicas to start (autoscaling: its initial or min replicas)."""
        if self.autoscaling_config is not None:
            return self.autoscaling_config.start_replicas
        return int(self.num_replicas)  # type: ignore[arg-type]

    @property
    def resources(self) -> dict[str, float]:
        """Each replica's resource demand, from ``ray_actor_options`` (num_cpus default 1)."""
        opts = self.ray_actor_options
        demand = {"CPU": float(opts.get("num_cpus", 1)), "GPU": float(opts.get("num_gpus", 0))}
        demand.update({k: float(v) for k, v in (opts.get("resources") or {}).items()})
        return {k: v for k, v in demand.items() if v}

    def replace(self, **changes: Any) -> DeploymentConfig:
        """A copy with ``changes`` (checked)."""
        return dataclasses.replace(self, **changes)

    def same_but_user_config(self, other: DeploymentConfig) -> bool:
        """Whether ``other`` differs from self in ``user_config`` alone (reconfigure in place)."""
        return dataclasses.replace(other, user_config=self.user_config) == self


_ACTOR_OPTIONS = ("num_cpus", "num_gpus", "resources", "memory", "runtime_env",
                  "accelerator_type", "scheduling_strategy", "max_restarts")


def _autoscaling(config: DeploymentConfig, where: str) -> AutoscalingConfig | None:
    given = config.autoscaling_config
    if config.num_replicas == "auto":
        base = {"min_replicas": 1, "max_replicas": 100, "target_ongoing_requests": 2}
        if isinstance(given, AutoscalingConfig):
            return given
        return autoscaling_config_of({**base, **(given or {})}, where)
    if given is None:
        return None
    if config.num_replicas not in (None, 1):
        raise ValueError(f"{where}: num_replicas={config.num_replicas!r} and autoscaling_config "
                         "were both given; give one (num_replicas=None or 'auto' with "
                         "autoscaling_config)")
    return autoscaling_config_of(given, where)


def check(config: DeploymentConfig, where: str) -> None:
    """Raise ValueError naming the first bad option of ``config`` (Ray Serve's rules)."""
    n = config.num_replicas
    if n != "auto" and n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise _bad(where, "num_replicas", n, "must be an int >= 1 or 'auto' (autoscaling)")
    object.__setattr__(config, "autoscaling_config", _autoscaling(config, where))
    if n is None and config.autoscaling_config is None:
        object.__setattr__(config, "num_replicas", 1)
    m = config.max_ongoing_requests
    if not isinstance(m, int) or isinstance(m, bool) or m < 1:
        raise _bad(where, "max_ongoing_requests", m, "must be an int >= 1 (the requests one "
                   "replica serves at once; Ray Serve's default is 5)")
    q = config.max_queued_requests
    if not isinstance(q, int) or isinstance(q, bool) or (q < 0 and q != -1):
        raise _bad(where, "max_queued_requests", q, "must be -1 (no limit) or an int >= 0")
    for name in ("health_check_period_s", "health_check_timeout_s",
                 "graceful_shutdown_wait_loop_s", "graceful_shutdown_timeout_s"):
        v = getattr(config, name)
        if not isinstance(v, _NUMBER) or isinstance(v, bool) or v < 0 or (
                v == 0 and name.startswith("health")):
            raise _bad(where, name, v, "must be a number of seconds > 0")
    opts = config.ray_actor_options
    if not isinstance(opts, dict):
        raise _bad(where, "ray_actor_options", opts, "must be a dict (num_cpus, num_gpus, "
                   "resources, ...)")
    unknown = sorted(set(opts) - set(_ACTOR_OPTIONS))
    if unknown:
        raise ValueError(f"{where}: ray_actor_options has unknown option(s) {unknown}; "
                         f"the known ones are {list(_ACTOR_OPTIONS)}")
    for name in ("num_cpus", "num_gpus"):
        v = opts.get(name, 0)
        if not isinstance(v, _NUMBER) or isinstance(v, bool) or v < 0:
            raise _bad(where, f"ray_actor_options['{name}']", v, "must be a number >= 0")


@dataclass(frozen=True)
class HTTPOptions:
    """Where the HTTP proxy listens (Ray's names and defaults)."""

    host: str = "127.0.0.1"
    port: int = 8000
    root_path: str = ""
    request_timeout_s: float | None = None
    keep_alive_timeout_s: float = 90

    @classmethod
    def from_value(cls, value: Any) -> HTTPOptions:
        """``value`` (None, a dict of Ray's names, or HTTPOptions), checked."""
        if value is None:
            return cls()
        if isinstance(value, HTTPOptions):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"http_options={value!r} must be a dict like "
                             "{'host': '127.0.0.1', 'port': 8000} or None")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(value) - names - {"location", "num_cpus", "middlewares",
                                                "root_url"})
        if unknown:
            raise ValueError(f"http_options has unknown option(s) {unknown}; the known ones "
                             f"are {sorted(names)}")
        opts = cls(**{k: v for k, v in value.items() if k in names})
        if not isinstance(opts.port, int) or not 0 <= opts.port < 65536:
            raise ValueError(f"http_options port={opts.port!r} must be an int in 0..65535")
        return opts
