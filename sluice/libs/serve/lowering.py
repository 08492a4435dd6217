"""An Application lowered to a compiler Plan, and the hooks that deploy it.

Each deployment becomes an actor node (a ClassNode of its class, or of a wrapper for a
function) whose constructor reads the deployments bound into its arguments, so the app is an
ordinary ``.bind()`` graph and compiles to a Plan: one ACTOR stage per deployment, the handle
edges its inputs, ids content-addressed. The serve options (replicas, limits, route) ride
beside the Plan by op id. :class:`ServeHooks` runs the Plan with the Plan runner: a
deployment stage does not start an actor; it becomes a :class:`DeploymentSpec` for the
controller, and its value is its :class:`DeploymentHandle`, so the stages reading it get
handles as constructor arguments.
"""

from __future__ import annotations

import hashlib
import inspect
import types
from dataclasses import dataclass
from typing import Any

import cloudpickle

from sluice.compiler.ir import code_digest
from sluice.compiler.plan import Plan, Stage
from sluice.compiler.run import call_arguments
from sluice.compiler.runner import Execution, StageHooks, run_plan
from sluice.libs.serve.controller import DeploymentSpec
from sluice.libs.serve.deployment import Application, Deployment
from sluice.libs.serve.handle import DeploymentHandle


@dataclass(frozen=True)
class ServePlan:
    """An app's Plan and, by ACTOR op id, the deployment each stage is."""

    app_name: str
    route_prefix: str | None
    plan: Plan
    deployments: tuple[tuple[str, Deployment], ...]  # (op id, deployment), plan order
    ingress: str  # the ingress deployment's name

    def deployment_of(self, op_id: str) -> Deployment:
        """The deployment of ACTOR op ``op_id``."""
        return dict(self.deployments)[op_id]

    def edges(self) -> list[tuple[str, str]]:
        """(caller, callee) deployment names: each handle a constructor receives."""
        names = dict(self.deployments)
        out = []
        for stage in self.plan.stages:
            op = stage.ops[0]
            if op.id in names:
                out.extend((names[op.id].name, names[i].name) for i in op.inputs if i in names)
        return out

    def explain(self) -> str:
        """The deployments (replicas, limits, resources, route, handle edges), then the Plan."""
        number = {st.id: i for i, st in enumerate(self.plan.stages, start=1)}
        lines = [f"== Serve application {self.app_name!r} "
                 f"(route_prefix {self.route_prefix!r}, ingress {self.ingress}) =="]
        edges = self.edges()
        for op_id, dep in self.deployments:
            stage = self.plan.stage_of(op_id)
            cfg = dep.config
            replicas = (f"autoscaling {cfg.autoscaling_config.min_replicas}.."
                        f"{cfg.autoscaling_config.max_replicas}" if cfg.autoscaling_config
                        else f"replicas={cfg.num_replicas}")
            resources = ", ".join(f"{k}: {v:g}" for k, v in cfg.resources.items()) or "none"
            role = " (ingress)" if dep.name == self.ingress else ""
            lines.append(f"({number[stage.id]}) deployment {dep.name}{role}: {replicas}, "
                         f"max_ongoing_requests={cfg.max_ongoing_requests}, "
                         f"resources {{{resources}}}")
            lines.extend(f"    handle -> {callee}" for caller, callee in edges if caller == dep.name)
        return "\n".join(lines) + "\n" + self.plan.explain()

    def visualize(self, path: str | None = None) -> Any:
        """The Plan's graphviz drawing, labelled with the deployments and their replicas."""
        graph = self.plan.visualize()
        for op_id, dep in self.deployments:  # a node defined again takes the later label
            cfg = dep.config
            count = ("auto" if cfg.autoscaling_config else cfg.num_replicas)
            role = " (ingress)" if dep.name == self.ingress else ""
            graph.node(op_id, label=f"{dep.name}{role}\\n{count} replica(s)")
        graph.attr(label=f"serve app {self.app_name} (route_prefix {self.route_prefix})")
        if path is not None:
            stem, _, fmt = path.rpartition(".")
            graph.render(stem, format=fmt, cleanup=True)
        return graph


def lower(app: Application, name: str = "default", route_prefix: str | None = "/") -> ServePlan:
    """``app`` as a Plan: each deployment an ACTOR stage, each handle an edge."""
    import sluice

    if not isinstance(app, Application):
        raise TypeError(f"serve.run takes an Application (Deployment.bind(...)), got "
                        f"{type(app).__name__}; bind the deployment: {_name(app)}.bind()")
    nodes: dict[int, Any] = {}  # id(Application) -> its ClassNode
    by_class: dict[int, Deployment] = {}  # id(ClassNode) -> deployment (renamed if needed)
    names: dict[str, int] = {}
    order: list[Application] = []
    _collect(app, order)
    for each in order:  # children before parents
        dep = each.deployment
        if dep.name in names and names[dep.name] != id(each):
            count = sum(1 for n in names if n == dep.name or n.startswith(dep.name + "_"))
            dep = dep.options(name=f"{dep.name}_{count}")
        names[dep.name] = id(each)
        opts = dep.config.ray_actor_options
        actor_cls = sluice.remote(num_cpus=opts.get("num_cpus", 1), num_gpus=opts.get("num_gpus", 0),
                                  resources=opts.get("resources"))(_actor_class(dep))
        node = actor_cls.bind(*_swap(each.args, nodes), **_swap(each.kwargs, nodes))
        nodes[id(each)] = node
        by_class[id(node)] = dep
    root = nodes[id(app)]
    plan = root.compile()
    # An ACTOR op is named after its class, which is named after its (unique) deployment.
    deps = {dep.name: dep for dep in by_class.values()}
    deployments = [(st.ops[0].id, deps[st.ops[0].name]) for st in plan.stages
                   if st.ops[0].name in deps and st.kind.name == "ACTOR"]
    return ServePlan(name, route_prefix, plan, tuple(deployments),
                     by_class[id(root)].name)


def _collect(app: Application, order: list[Application]) -> None:
    """Every Application reachable from ``app``, each after those bound into it."""
    seen: set[int] = set()
    stack: list[tuple[Any, bool]] = [(app, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for child in reversed(_children((node.args, node.kwargs))):
            if id(child) not in seen:
                stack.append((child, False))


def _children(value: Any) -> list[Application]:
    found: list[Application] = []
    todo = [value]
    while todo:
        v = todo.pop()
        if isinstance(v, Application):
            found.append(v)
        elif isinstance(v, (list, tuple)):
            todo.extend(reversed(v))
        elif isinstance(v, dict):
            todo.extend(reversed(list(v.values())))
    return found


def _swap(value: Any, nodes: dict[int, Any]) -> Any:
    if isinstance(value, Application):
        return nodes[id(value)]
    if isinstance(value, tuple):
        return tuple(_swap(v, nodes) for v in value)
    if isinstance(value, list):
        return [_swap(v, nodes) for v in value]
    if isinstance(value, dict):
        return {k: _swap(v, nodes) for k, v in value.items()}
    return value


def _actor_class(dep: Deployment) -> type:
    """The class a deployment's stage stands for: its own, or a wrapper of its function,
    named after the deployment (the op's name in the Plan)."""
    target = dep.func_or_class
    opts = dep.config.ray_actor_options
    attrs = {"__module__": __name__, "_serve_target": target,
             "_serve_resources": (opts.get("num_cpus", 1), opts.get("num_gpus", 0)),
             "_serve_identity": _identity_member(dep)}
    if inspect.isclass(target):
        base_init = target.__init__
        cls = type(dep.name, (), {**attrs, "__init__": _signature_init(base_init)})
    else:
        cls = type(dep.name, (), {**attrs, "__init__": lambda self: None})
    return cls


def _identity_member(dep: Deployment) -> Any:
    """A member whose code carries a digest of the deployment's code and options: the Plan
    hashes a class by its members' code, so the op id changes with the user's code and with
    the serve options (``num_replicas``, ``max_ongoing_requests``, ...), as for every op."""
    digest = hashlib.blake2b(f"{code_digest(dep.func_or_class)}|{dep.config!r}".encode(),
                             digest_size=8).hexdigest()

    def identity(self: Any) -> str:
        return "<deployment digest>"

    code = identity.__code__
    consts = tuple(digest if c == "<deployment digest>" else c for c in code.co_consts)
    return types.FunctionType(code.replace(co_consts=consts), {}, "_serve_identity")


def _signature_init(init: Any) -> Any:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807
        pass

    try:
        __init__.__signature__ = inspect.signature(init)  # bind() checks arguments against it
    except (TypeError, ValueError):
        pass
    return __init__


def _name(value: Any) -> str:
    return getattr(value, "name", None) or type(value).__name__


class ServeHooks(StageHooks):
    """Runs an app's Plan: each deployment stage becomes a spec for the controller, and its
    value (what the stages reading it get) is its DeploymentHandle."""

    def __init__(self, serve_plan: ServePlan):
        self.serve_plan = serve_plan
        self.deployments = dict(serve_plan.deployments)
        self.specs: list[DeploymentSpec] = []

    def create_actor(self, run: Execution, stage: Stage) -> Any:
        op = stage.ops[0]
        dep = self.deployments[op.id]
        args, kwargs = call_arguments(op, run._template(op.id, op.template), run.values)
        definition = cloudpickle.dumps(dep.func_or_class, protocol=5)
        init = cloudpickle.dumps((args, kwargs), protocol=5)
        digest = hashlib.blake2b(definition + init, digest_size=8).hexdigest()
        app = self.serve_plan.app_name
        self.specs.append(DeploymentSpec(app, dep.name, definition, init, dep.config, digest))
        return DeploymentHandle(dep.name, app)


def deployment_specs(serve_plan: ServePlan) -> tuple[list[DeploymentSpec], DeploymentHandle]:
    """Run the app's Plan with :class:`ServeHooks`: its specs and the ingress's handle."""
    hooks = ServeHooks(serve_plan)
    run = run_plan(serve_plan.plan, hooks)
    return hooks.specs, run.outputs()[0]
