"""Apps lowered to Plans (sluice/libs/serve/lowering.py): one ACTOR stage per deployment,
handle edges as stage inputs, and explain() drawn from that Plan. No runtime needed."""

from __future__ import annotations

import pytest

import sluice.serve as serve
from sluice.compiler.ir import OpKind
from sluice.libs.serve.lowering import lower


@serve.deployment(num_replicas=2, ray_actor_options={"num_cpus": 0.5})
class Model:
    def __call__(self, x: int) -> int:
        return x


@serve.deployment
def tokenize(text: str) -> list:
    return text.split()


@serve.deployment
class Ingress:
    def __init__(self, model: object, tokens: object) -> None:
        self.model = model


def test_each_deployment_is_an_actor_stage_and_each_handle_an_edge() -> None:
    sp = lower(Ingress.bind(Model.bind(), tokenize.bind()), "shop", "/shop")
    kinds = [st.kind for st in sp.plan.stages]
    assert kinds == [OpKind.ACTOR] * 3
    assert sorted(d.name for _, d in sp.deployments) == ["Ingress", "Model", "tokenize"]
    assert sorted(sp.edges()) == [("Ingress", "Model"), ("Ingress", "tokenize")]
    ingress_stage = sp.plan.stage_of(sp.plan.outputs[0])
    assert len(ingress_stage.inputs) == 2 and sp.ingress == "Ingress"
    model_op = next(op_id for op_id, d in sp.deployments if d.name == "Model")
    assert dict(sp.plan.stage_of(model_op).resources).get("CPU") == 0.5


def test_explain_shows_deployments_replicas_resources_route_and_edges() -> None:
    text = Ingress.bind(Model.bind(), tokenize.bind()).explain()
    assert "deployment Model: replicas=2, max_ongoing_requests=5, resources {CPU: 0.5}" in text
    assert "deployment Ingress (ingress): replicas=1" in text
    assert "handle -> Model" in text and "handle -> tokenize" in text
    assert "route_prefix '/'" in text and "== Physical Plan" in text


def test_ids_are_content_addressed() -> None:
    a = lower(Ingress.bind(Model.bind(), tokenize.bind()))
    b = lower(Ingress.bind(Model.bind(), tokenize.bind()))
    assert [st.id for st in a.plan.stages] == [st.id for st in b.plan.stages]
    # the serve options and the deployment's code are part of its op's identity
    scaled = lower(Ingress.bind(Model.options(num_replicas=3).bind(), tokenize.bind()))
    assert {st.id for st in scaled.plan.stages} != {st.id for st in a.plan.stages}

    @serve.deployment(name="Model")
    class OtherModel:
        def __call__(self, x):
            return -x

    other = lower(Ingress.bind(OtherModel.bind(), tokenize.bind()))
    assert {st.id for st in other.plan.stages} != {st.id for st in a.plan.stages}


def test_one_deployment_bound_twice_gets_a_second_name() -> None:
    sp = lower(Ingress.bind(Model.bind(), Model.bind()))
    assert sorted(d.name for _, d in sp.deployments) == ["Ingress", "Model", "Model_1"]


def test_bind_checks_constructor_arguments_and_run_wants_an_application() -> None:
    with pytest.raises(TypeError):
        lower(Ingress.bind(1, 2, 3))  # the constructor takes two
    with pytest.raises(TypeError, match=r"bind it with no arguments"):
        tokenize.bind(1)
    with pytest.raises(TypeError, match=r"takes an Application .* Model.bind\(\)"):
        lower(Model)


def test_visualize_draws_the_plans_stages_labelled_with_replicas() -> None:
    source = Ingress.bind(Model.bind(), tokenize.bind()).visualize().source
    assert "Model\\n2 replica(s)" in source and "Ingress (ingress)\\n1 replica(s)" in source
    assert "serve app default (route_prefix /)" in source
