"""Deployment options (sluice/libs/serve/config.py, deployment.py): Ray Serve's names and
defaults, bad values refused where they are given."""

from __future__ import annotations

import pytest

import sluice.serve as serve
from sluice.libs.serve.config import AutoscalingConfig, DeploymentConfig, HTTPOptions


@serve.deployment
class Model:
    def __init__(self, k: int = 1) -> None:
        self.k = k

    def __call__(self, x: int) -> int:
        return x + self.k


def test_defaults_are_ray_serves() -> None:
    cfg = Model.config
    assert (cfg.num_replicas, cfg.max_ongoing_requests, cfg.max_queued_requests) == (1, 5, -1)
    assert (cfg.health_check_period_s, cfg.health_check_timeout_s) == (10, 30)
    assert cfg.graceful_shutdown_timeout_s == 20 and cfg.user_config is None
    assert cfg.resources == {"CPU": 1.0}
    assert Model.name == "Model" and Model.num_replicas == 1
    assert HTTPOptions.from_value(None) == HTTPOptions("127.0.0.1", 8000)


def test_options_copy_the_deployment_with_changes() -> None:
    two = Model.options(name="Two", num_replicas=2, user_config={"a": 1},
                        ray_actor_options={"num_cpus": 0.5, "resources": {"disk": 1}})
    assert (two.name, two.num_replicas, two.user_config) == ("Two", 2, {"a": 1})
    assert two.config.resources == {"CPU": 0.5, "disk": 1.0}
    assert Model.num_replicas == 1 and Model.name == "Model"


def test_auto_replicas_autoscale_from_min_replicas() -> None:
    auto = Model.options(num_replicas="auto")
    assert auto.autoscaling_config.max_replicas == 100
    assert auto.config.target_replicas == 1
    scaled = Model.options(autoscaling_config={"min_replicas": 2, "max_replicas": 5,
                                               "initial_replicas": 3})
    assert scaled.config.target_replicas == 3
    assert AutoscalingConfig().target_ongoing_requests == 2
    assert AutoscalingConfig().upscale_delay_s == 30 and AutoscalingConfig().downscale_delay_s == 600


def test_max_ongoing_requests_zero_is_refused_at_the_decorator() -> None:
    with pytest.raises(ValueError, match=r"max_ongoing_requests=0 must be an int >= 1"):
        @serve.deployment(max_ongoing_requests=0)
        class Bad:
            pass


@pytest.mark.parametrize(("options", "message"), [
    ({"num_replicas": 0}, r"num_replicas=0 must be an int >= 1 or 'auto'"),
    ({"max_queued_requests": -2}, r"max_queued_requests=-2 must be -1"),
    ({"health_check_period_s": 0}, r"health_check_period_s=0 must be a number of seconds > 0"),
    ({"autoscaling_config": {"min_replicas": 3, "max_replicas": 2}},
     r"max_replicas=2 is below min_replicas=3"),
    ({"autoscaling_config": {"min_replicas": 1, "max_replicas": 2, "initial_replicas": 5}},
     r"initial_replicas=5 is outside \[min_replicas=1, max_replicas=2\]"),
    ({"autoscaling_config": {"max_replica": 2}}, r"unknown option\(s\) 'max_replica'"),
    ({"num_replicas": 2, "autoscaling_config": {"max_replicas": 2}},
     r"num_replicas=2 and autoscaling_config were both given"),
    ({"ray_actor_options": {"num_cpu": 1}}, r"ray_actor_options has unknown option\(s\) \['num_cpu'\]"),
])
def test_bad_options_name_the_value(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Model.options(**options)


def test_unknown_option_and_direct_call_say_what_to_do() -> None:
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['replicas'\]"):
        Model.options(replicas=2)
    with pytest.raises(TypeError, match=r"cannot be called directly; use Model.bind"):
        Model(1)


def test_a_user_config_change_alone_is_told_apart() -> None:
    a = DeploymentConfig(user_config=1)
    assert a.same_but_user_config(a.replace(user_config=2))
    assert not a.same_but_user_config(a.replace(user_config=2, max_ongoing_requests=3))
