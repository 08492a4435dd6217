"""The serve controller: one async actor that owns the target state and brings replicas to it.

Apps arrive whole (:meth:`ServeController.deploy_app`: the specs the lowering made). For each
deployment the controller starts replicas (``Replica`` actors) until its target count runs,
and watches each one over its channel: a broken channel (the process died) or a failing
``check_health`` (every ``health_check_period_s``, at most ``health_check_timeout_s``) takes
it out of the membership at once and starts a replacement. A redeploy that changes only
``user_config`` reconfigures the running replicas in place; any other change replaces them
in a rolling update: at most ``scaling.ROLLING_WAVE_FRACTION`` of the target (at least one) new
replicas start at a time, and each one ready takes an old one's place (the old one drains
first). A deployment with an ``autoscaling_config`` gets a loop that sets its target count
(:mod:`sluice.libs.serve.scaling`).
Handles and the HTTP proxy follow the membership by long poll (:meth:`listen_replicas`,
:meth:`listen_routes`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from sluice.libs.serve.channel import CALL, ERROR, ChannelClient, ChannelClosed
from sluice.libs.serve.codec import dumps, error_from, loads
from sluice.libs.serve.config import DeploymentConfig
from sluice.libs.serve.replica import DRAIN, HEALTH, ONGOING, RECONFIGURE, WATCH, Replica
from sluice.libs.serve.router import ReplicaInfo
from sluice.libs.serve.scaling import (autoscale, rolling_wave, schedule_warning_s,
                                       unscheduled_message)

log = logging.getLogger("sluice.serve")
LONG_POLL_S = 30.0

# Status names as Ray Serve's (ApplicationStatus / DeploymentStatus).
DEPLOYING, RUNNING, DEPLOY_FAILED, UNHEALTHY, DELETING = (
    "DEPLOYING", "RUNNING", "DEPLOY_FAILED", "UNHEALTHY", "DELETING")


@dataclass(frozen=True)
class DeploymentSpec:
    """One deployment of an app as the lowering hands it to the controller (plain data)."""

    app_name: str
    name: str
    definition: bytes  # the pickled class or function
    init: bytes  # the pickled (args, kwargs) of its constructor (handles in place of binds)
    config: DeploymentConfig
    code_digest: str = ""  # changes when the code or constructor arguments change

    @property
    def deployment_id(self) -> str:
        return f"{self.app_name}#{self.name}"


@dataclass
class _ReplicaState:
    replica_id: str
    actor: Any
    info: ReplicaInfo | None = None
    client: ChannelClient | None = None
    stopping: bool = False
    outdated: bool = False  # started for an earlier version: stops once a new one is ready


@dataclass
class _DeploymentState:
    spec: DeploymentSpec
    replicas: dict[str, _ReplicaState] = field(default_factory=dict)  # running (published)
    starting: int = 0
    status: str = DEPLOYING
    message: str = ""
    version: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    deleted: bool = False
    autoscaled: int | None = None  # the autoscaler's replica count, within its min and max
    autoscaler: asyncio.Task | None = None  # its autoscaling loop, while it autoscales
    pending: dict[str, float] = field(default_factory=dict)  # replica id -> when it started
    # handle id -> (requests queued in that caller's router, when it said so)
    handle_queued: dict[str, tuple[int, float]] = field(default_factory=dict)

    def queued_at_handles(self, now: float, interval_s: float) -> int:
        """The requests callers' routers queue, from their reports of the last two intervals
        (a caller that stopped reporting, gone with its process, stops counting)."""
        fresh = now - max(2 * interval_s, 1.0)
        for handle_id, (_, at) in list(self.handle_queued.items()):
            if at < fresh:
                del self.handle_queued[handle_id]
        return sum(queued for queued, _ in self.handle_queued.values())

    @property
    def target(self) -> int:
        """How many replicas should run."""
        if self.autoscaled is not None and self.spec.config.autoscaling_config is not None:
            return self.autoscaled
        return self.spec.config.target_replicas

    def publish(self) -> None:
        self.version += 1
        self.changed.set()
        self.changed = asyncio.Event()


def replica_actor_options(config: DeploymentConfig) -> dict[str, Any]:
    """The actor options a replica of a deployment of ``config`` starts with: its
    ``ray_actor_options`` (num_cpus defaulting to 1, as Ray Serve's), ``accelerator_type`` as
    Ray's ``accelerator_type:<TYPE>`` resource. (``max_restarts`` is not passed on: the
    controller replaces a replica that dies.)

    >>> replica_actor_options(DeploymentConfig(ray_actor_options={"accelerator_type": "A10G"}))
    ... # doctest: +NORMALIZE_WHITESPACE
    {'num_cpus': 1, 'num_gpus': 0, 'resources': {'accelerator_type:A10G': 0.001},
     'max_concurrency': 100000}
    """
    opts = config.ray_actor_options
    out: dict[str, Any] = {"num_cpus": opts.get("num_cpus", 1), "num_gpus": opts.get("num_gpus", 0),
                           "resources": opts.get("resources"), "max_concurrency": 100_000}
    if opts.get("accelerator_type"):
        out["resources"] = {**(out["resources"] or {}),
                            f"accelerator_type:{opts['accelerator_type']}": 0.001}
    for name in ("memory", "runtime_env", "scheduling_strategy"):
        if opts.get(name) is not None:
            out[name] = opts[name]
    return out


@dataclass
class _AppState:
    name: str
    route_prefix: str | None
    ingress: str
    deployments: list[str]
    status: str = DEPLOYING
    message: str = ""


class ServeController:
    """The controller actor (named ``SERVE_CONTROLLER`` in namespace ``serve``)."""

    def __init__(self, http_options: Any = None):
        self.http_options = http_options
        self.apps: dict[str, _AppState] = {}
        self.deployments: dict[str, _DeploymentState] = {}
        self.routes_version = 0
        self._routes_changed: asyncio.Event | None = None
        self._app_changed: asyncio.Event | None = None
        self._tasks: set[asyncio.Task] = set()
        self._pool = concurrent.futures.ThreadPoolExecutor(64, thread_name_prefix="serve-ctl")
        self.proxy: Any = None

    # -- helpers -------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _get(self, ref: Any, timeout: float | None = None) -> Any:
        import sluice

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: sluice.get(ref, timeout=timeout))

    def _events(self) -> None:
        if self._routes_changed is None:
            self._routes_changed = asyncio.Event()
            self._app_changed = asyncio.Event()

    def _notify_apps(self) -> None:
        self._events()
        self._app_changed.set()
        self._app_changed = asyncio.Event()

    def _notify_routes(self) -> None:
        self._events()
        self.routes_version += 1
        self._routes_changed.set()
        self._routes_changed = asyncio.Event()

    # -- target state --------------------------------------------------------------------

    async def deploy_app(self, name: str, route_prefix: str | None, ingress: str,
                         specs: list[DeploymentSpec]) -> int:
        """Make app ``name`` these deployments (start, update or delete replicas to match);
        the version of the route table that has it."""
        self._events()
        if route_prefix is not None:
            for other in self.apps.values():
                if other.name != name and other.route_prefix == route_prefix:
                    raise ValueError(f"route_prefix {route_prefix!r} is already taken by app "
                                     f"{other.name!r}; give app {name!r} another "
                                     f"route_prefix, or serve.delete({other.name!r}) first")
        old = self.apps.get(name)
        wanted = {spec.deployment_id for spec in specs}
        if old is not None:
            for dep_id in old.deployments:
                if dep_id not in wanted:
                    self._spawn(self._delete_deployment(dep_id))
        app = _AppState(name, route_prefix, f"{name}#{ingress}", [s.deployment_id for s in specs])
        self.apps[name] = app
        for spec in specs:
            await self._deploy(spec)
        self._notify_routes()
        self._update_app(app)
        return self.routes_version

    async def _deploy(self, spec: DeploymentSpec) -> None:
        state = self.deployments.get(spec.deployment_id)
        if state is None or state.deleted:
            state = self.deployments[spec.deployment_id] = _DeploymentState(spec)
            self._reconcile(state)
            self._start_autoscaler(state)
            return
        old = state.spec
        state.spec = spec
        if state.status == DEPLOY_FAILED:  # asked again: try again
            state.status = DEPLOYING
        if old == spec:
            self._reconcile(state)
            return
        same_code = (old.definition, old.init, old.code_digest) == (
            spec.definition, spec.init, spec.code_digest)
        if same_code and old.config.same_but_user_config(spec.config):
            await self._reconfigure_all(state)
        elif same_code and _only_count_changed(old.config, spec.config):
            state.publish()  # the limits the routers read may have changed
        else:  # new code or options: each new replica ready replaces an old one
            state.status = DEPLOYING
            for rep in state.replicas.values():
                rep.outdated = True
        self._reconcile(state)
        self._start_autoscaler(state)

    def _start_autoscaler(self, state: _DeploymentState) -> None:
        """Run ``state``'s autoscaling loop if it autoscales and none runs yet."""
        if state.spec.config.autoscaling_config is None or (
                state.autoscaler is not None and not state.autoscaler.done()):
            return
        dep_id = state.spec.deployment_id

        def config() -> Any:
            live = not state.deleted and self.deployments.get(dep_id) is state
            return state.spec.config.autoscaling_config if live else None

        async def measure() -> int:
            at_replicas = sum((await self.ongoing_requests(dep_id)).values())
            interval = state.spec.config.autoscaling_config.metrics_interval_s
            return at_replicas + state.queued_at_handles(
                asyncio.get_running_loop().time(), interval)

        def running() -> int:
            return sum(1 for r in state.replicas.values() if not (r.outdated or r.stopping))

        def set_target(count: int) -> None:
            if config() is not None:
                state.autoscaled = max(1, count)
                self._reconcile(state)
                self._update_state(state)

        state.autoscaler = asyncio.ensure_future(
            autoscale(config, running, measure, lambda: state.target, set_target))
        self._tasks.add(state.autoscaler)
        state.autoscaler.add_done_callback(self._tasks.discard)

    async def _reconfigure_all(self, state: _DeploymentState) -> None:
        body = dumps(state.spec.config.user_config)
        for rep in list(state.replicas.values()):
            if rep.client is None:
                continue
            frame = await rep.client.call(CALL, RECONFIGURE, b"", body)
            if frame.kind == ERROR:
                err = error_from(frame.body)
                state.message = f"reconfigure raised {type(err).__name__}: {err}"
                raise ValueError(f"deployment {state.spec.name!r}: reconfigure(user_config) "
                                 f"raised {type(err).__name__}: {err}")

    def _reconcile(self, state: _DeploymentState) -> None:
        """Start replicas until the deployment's target count runs or is starting."""
        if state.deleted or state.status == DEPLOY_FAILED:
            return
        current = [r for r in state.replicas.values() if not r.outdated and not r.stopping]
        old = [r for r in state.replicas.values() if r.outdated and not r.stopping]
        if old and len(current) >= state.target:  # the new version runs in full
            for rep in old:
                self._retire(state, rep, "replaced by a new version")
            old = []
        missing = state.target - len(current) - state.starting
        if old:  # a rolling update: at most one wave of new replicas starts at a time
            missing = min(missing, rolling_wave(state.target) - state.starting)
        for _ in range(max(0, missing)):
            state.starting += 1
            self._spawn(self._start_replica(state))
        extra = len(current) + state.starting - state.target
        for rep in current[:max(0, extra)]:
            self._retire(state, rep, "scaled down")

    def _retire(self, state: _DeploymentState, rep: _ReplicaState, reason: str) -> None:
        """Drain and stop ``rep`` in the background (at once marked as stopping)."""
        rep.stopping = True
        self._spawn(self._stop(state, rep, reason=reason))

    async def _start_replica(self, state: _DeploymentState) -> None:
        import sluice

        spec = state.spec
        rid = f"{spec.deployment_id}#{uuid.uuid4().hex[:8]}"
        actor_cls = sluice.remote(Replica).options(**replica_actor_options(spec.config))
        rep = _ReplicaState(rid, None)
        try:
            rep.actor = actor_cls.remote(spec.deployment_id, rid, spec.definition, spec.init,
                                         spec.config)
            rep.info = await self._wait_started(state, rep)
            if rep.info is not None:
                rep.client = ChannelClient(rep.info.address)
        except Exception as exc:  # noqa: BLE001 - the constructor raised, or the actor died
            state.starting -= 1
            self._kill(rep)
            self._failed(state, exc)
            return
        except asyncio.CancelledError:  # the controller shuts down
            self._kill(rep)
            raise
        state.starting -= 1
        if rep.info is None:  # deleted while it waited to start
            self._kill(rep)
            return
        if state.deleted or state.spec is not spec:
            self._spawn(self._stop(state, rep, reason="outdated"))
            self._reconcile(state)
            return
        state.replicas[rid] = rep
        state.publish()
        self._spawn(self._monitor(state, rep))
        old = next((r for r in state.replicas.values() if r.outdated and not r.stopping), None)
        if old is not None:  # each new replica ready replaces one old one
            self._retire(state, old, "replaced by a new version")
        self._reconcile(state)
        self._update_state(state)

    async def _wait_started(self, state: _DeploymentState, rep: _ReplicaState
                            ) -> ReplicaInfo | None:
        """``rep``'s info once it is scheduled and constructed (None if its deployment is
        deleted meanwhile). Past :func:`schedule_warning_s` it warns, in the log and in the
        deployment's status message, that replicas wait to be scheduled."""
        loop = asyncio.get_running_loop()
        ready = asyncio.ensure_future(self._get(rep.actor.initialize.remote()))
        state.pending[rep.replica_id] = loop.time()
        try:
            while True:
                done, _ = await asyncio.wait([ready], timeout=min(1.0, schedule_warning_s()))
                if done:
                    return ready.result()
                if state.deleted:
                    return None
                waited = [t for t in state.pending.values()
                          if loop.time() - t >= schedule_warning_s()]
                if waited:
                    await self._warn_unscheduled(state, len(waited))
        finally:
            state.pending.pop(rep.replica_id, None)
            if not ready.done():
                ready.add_done_callback(lambda f: f.cancelled() or f.exception())

    async def _warn_unscheduled(self, state: _DeploymentState, count: int) -> None:
        import sluice

        loop = asyncio.get_running_loop()
        try:
            free = await loop.run_in_executor(self._pool, sluice.available_resources)
        except Exception:  # noqa: BLE001 - the runtime is going away
            return
        spec = state.spec
        need = spec.config.resources
        fits = all(free.get(k, 0.0) >= v for k, v in need.items())
        message = unscheduled_message(spec.name, spec.app_name, count, need, dict(free), fits)
        if message != state.message:
            log.warning(message)
            state.message = message
            app = self.apps.get(spec.app_name)
            if app is not None and app.status != RUNNING:
                app.message = message
                self._notify_apps()

    def _failed(self, state: _DeploymentState, exc: BaseException) -> None:
        cause = _cause(exc)
        message = (f"deployment {state.spec.name!r} of app {state.spec.app_name!r}: a replica "
                   f"failed to start: {type(cause).__name__}: {cause}")
        log.error(message)
        state.message = message
        if not any(not r.outdated for r in state.replicas.values()):
            state.status = DEPLOY_FAILED  # (replicas of an earlier version keep serving)
        else:  # some run: try again later
            state.status = UNHEALTHY
            asyncio.get_running_loop().call_later(2.0, self._reconcile, state)
        self._update_state(state)

    async def _monitor(self, state: _DeploymentState, rep: _ReplicaState) -> None:
        """Watch ``rep`` until it stops: replace it when it dies or fails its health check."""
        config = state.spec.config
        client = rep.client
        assert client is not None
        watch = asyncio.ensure_future(client.call(CALL, WATCH, b"", b""))
        reason = ""
        try:
            while not rep.stopping:
                done, _ = await asyncio.wait([watch], timeout=config.health_check_period_s)
                if rep.stopping:
                    return
                if done:
                    reason = "its process died (the channel to it broke)"
                    break
                try:
                    frame = await asyncio.wait_for(client.call(CALL, HEALTH, b"", b""),
                                                   config.health_check_timeout_s)
                except asyncio.TimeoutError:
                    reason = f"check_health took over {config.health_check_timeout_s} s"
                    break
                except ChannelClosed:
                    reason = "its process died (the channel to it broke)"
                    break
                if frame.kind == ERROR:
                    err = error_from(frame.body)
                    reason = f"check_health raised {type(err).__name__}: {err}"
                    break
        finally:
            watch.cancel()
        if rep.stopping:
            return
        log.warning("replica %s is unhealthy (%s): replacing it", rep.replica_id, reason)
        state.message = f"replica {rep.replica_id} replaced: {reason}"
        await self._stop(state, rep, reason=reason, drain=False)
        self._reconcile(state)

    async def _stop(self, state: _DeploymentState, rep: _ReplicaState, reason: str,
                    drain: bool = True) -> None:
        """Take ``rep`` out of the membership, let it finish its requests, stop it. A replica
        replaced while its deployment lives also waits until no request has come for
        ``graceful_shutdown_wait_loop_s`` (every router has seen it leave)."""
        rep.stopping = True
        if state.replicas.pop(rep.replica_id, None) is not None:
            state.publish()
            self._update_state(state)
        if drain and rep.client is not None and not rep.client.closed:
            config = state.spec.config
            timeout = config.graceful_shutdown_timeout_s
            quiet = 0.0 if state.deleted else config.graceful_shutdown_wait_loop_s
            try:
                await asyncio.wait_for(rep.client.call(CALL, DRAIN, b"", dumps((timeout, quiet))),
                                       timeout + 1)
            except (asyncio.TimeoutError, ChannelClosed):
                pass
            except asyncio.CancelledError:  # serve shuts down while it drains: stop it now
                self._kill(rep)
                raise
        self._kill(rep)
        self._update_state(state)

    def _kill(self, rep: _ReplicaState) -> None:
        import sluice

        rep.stopping = True
        if rep.client is not None:
            rep.client.close()
        if rep.actor is not None:
            try:
                sluice.kill(rep.actor)
            except Exception:  # noqa: BLE001 - already gone
                pass

    async def _delete_deployment(self, dep_id: str) -> None:
        state = self.deployments.pop(dep_id, None)
        if state is None:
            return
        state.deleted = True
        state.status = DELETING
        await asyncio.gather(*(self._stop(state, rep, "deleted")
                               for rep in list(state.replicas.values())))
        state.publish()

    def _update_state(self, state: _DeploymentState) -> None:
        if state.status != DEPLOY_FAILED and not state.deleted:
            current = sum(1 for r in state.replicas.values() if not r.outdated)
            if current >= state.target and current == len(state.replicas):
                state.status, state.message = RUNNING, ""
            elif state.status == RUNNING:
                state.status = UNHEALTHY if not state.replicas else DEPLOYING
        app = self.apps.get(state.spec.app_name)
        if app is not None:
            self._update_app(app)

    def _update_app(self, app: _AppState) -> None:
        states = [self.deployments[d] for d in app.deployments if d in self.deployments]
        failed = [s for s in states if s.status == DEPLOY_FAILED]
        if failed:
            app.status, app.message = DEPLOY_FAILED, failed[0].message
        elif all(s.status == RUNNING for s in states):
            app.status, app.message = RUNNING, ""
        elif app.status == RUNNING:
            app.status = UNHEALTHY if any(s.status == UNHEALTHY for s in states) else DEPLOYING
        self._notify_apps()

    # -- what handles, the proxy and serve.run read ----------------------------------------

    async def set_target_replicas(self, deployment_id: str, count: int) -> int:
        """The autoscaler's lever: run ``count`` replicas of an autoscaling deployment (clamped
        to its min and max replicas); the count it will run."""
        state = self.deployments.get(deployment_id)
        if state is None or state.spec.config.autoscaling_config is None:
            raise ValueError(f"{deployment_id!r} is not an autoscaling deployment that runs; "
                             "give it num_replicas='auto' or an autoscaling_config")
        policy = state.spec.config.autoscaling_config
        state.autoscaled = max(policy.min_replicas, min(policy.max_replicas, int(count)), 1)
        self._reconcile(state)
        self._update_state(state)
        return state.autoscaled

    async def ongoing_requests(self, deployment_id: str) -> dict[str, int]:
        """{replica id: requests it serves now} of a running deployment (for the autoscaler)."""
        state = self.deployments.get(deployment_id)
        if state is None:
            raise ValueError(f"no deployment {deployment_id!r} runs; check the id (app#name)")
        out: dict[str, int] = {}
        for rep in list(state.replicas.values()):
            if rep.client is None or rep.stopping:
                continue
            try:
                frame = await asyncio.wait_for(rep.client.call(CALL, ONGOING, b"", b""),
                                               state.spec.config.health_check_timeout_s)
            except (asyncio.TimeoutError, ChannelClosed):
                continue  # its monitor replaces it
            if frame.kind != ERROR:
                out[rep.replica_id] = loads(frame.body)
        return out

    async def record_handle_metrics(self, deployment_id: str, handle_id: str, queued: int) -> None:
        """A caller's router reports ``queued`` requests waiting for a replica of
        ``deployment_id`` (counted by its autoscaler, as replicas' ongoing requests are)."""
        state = self.deployments.get(deployment_id)
        if state is None:
            return
        if queued:
            state.handle_queued[handle_id] = (queued, asyncio.get_running_loop().time())
        else:
            state.handle_queued.pop(handle_id, None)

    async def listen_replicas(self, deployment_id: str, known_version: int
                              ) -> tuple[int, list[ReplicaInfo]]:
        """Long poll: (version, running replicas) of ``deployment_id`` at once when
        ``known_version`` is not the current version, else when it changes (or after 30 s)."""
        state = self.deployments.get(deployment_id)
        if state is None:
            app, _, name = deployment_id.partition("#")
            known = sorted(d.partition("#")[2] for d in self.deployments if d.startswith(app + "#"))
            raise ValueError(f"no deployment {name!r} in app {app!r} (its deployments: {known}; "
                             f"apps: {sorted(self.apps)}); check the names, or serve.run the app")
        if state.version == known_version:
            try:
                await asyncio.wait_for(state.changed.wait(), LONG_POLL_S)
            except asyncio.TimeoutError:
                pass
        if state.deleted:
            raise ValueError(f"deployment {state.spec.name!r} of app {state.spec.app_name!r} "
                             "was deleted")
        return state.version, [r.info for r in state.replicas.values() if r.info is not None]

    async def listen_routes(self, known_version: int) -> tuple[int, dict[str, tuple[str, str]]]:
        """Long poll: (version, {route_prefix: (app_name, ingress deployment id)})."""
        self._events()
        if self.routes_version == known_version:
            try:
                await asyncio.wait_for(self._routes_changed.wait(), LONG_POLL_S)
            except asyncio.TimeoutError:
                pass
        return self.routes_version, self.routes()

    def routes(self) -> dict[str, tuple[str, str]]:
        """{route_prefix: (app_name, ingress deployment id)} of every app with a route."""
        return {a.route_prefix: (a.name, a.ingress) for a in self.apps.values()
                if a.route_prefix is not None}

    async def wait_app(self, name: str, timeout_s: float) -> tuple[str, str]:
        """(status, message) of app ``name`` once it is no longer DEPLOYING (or after
        ``timeout_s``)."""
        self._events()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            app = self.apps.get(name)
            if app is None:
                raise ValueError(f"no app named {name!r}; serve.run it first")
            if app.status != DEPLOYING or loop.time() >= deadline:
                return app.status, app.message
            try:
                await asyncio.wait_for(self._app_changed.wait(), deadline - loop.time())
            except asyncio.TimeoutError:
                pass

    async def app_names(self) -> list[str]:
        """The names of the apps deployed."""
        return sorted(self.apps)

    async def app_info(self, name: str) -> dict[str, Any] | None:
        """App ``name``'s route prefix, ingress, deployments (None if there is none)."""
        app = self.apps.get(name)
        if app is None:
            return None
        return {"route_prefix": app.route_prefix, "ingress": app.ingress,
                "deployments": [d.partition("#")[2] for d in app.deployments]}

    async def status(self) -> dict[str, Any]:
        """Every app's status, message and deployments (status, message, replicas)."""
        out: dict[str, Any] = {}
        for app in self.apps.values():
            deps = {}
            for dep_id in app.deployments:
                st = self.deployments.get(dep_id)
                if st is not None:
                    deps[st.spec.name] = {"status": st.status, "message": st.message,
                                          "replica_states": {"RUNNING": len(st.replicas),
                                                             "STARTING": st.starting},
                                          "target_replicas": st.target}
            out[app.name] = {"status": app.status, "message": app.message,
                             "route_prefix": app.route_prefix, "deployments": deps}
        return out

    async def delete_app(self, name: str) -> None:
        """Stop app ``name``'s replicas and forget it (no error if there is none)."""
        app = self.apps.pop(name, None)
        if app is None:
            return
        await asyncio.gather(*(self._delete_deployment(d) for d in app.deployments))
        self._notify_routes()
        self._notify_apps()

    async def shutdown(self) -> None:
        """Delete every app (the caller kills this actor next)."""
        await asyncio.gather(*(self.delete_app(name) for name in list(self.apps)))
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:  # replicas still starting or draining are stopped as their tasks end
            await asyncio.wait(tasks, timeout=10.0)

    async def set_proxy(self, proxy: Any) -> None:
        """Remember the HTTP proxy actor (to stop it on shutdown)."""
        self.proxy = proxy

    async def get_proxy(self) -> Any:
        """The HTTP proxy actor, or None."""
        return self.proxy

    async def get_http_options(self) -> Any:
        """The http_options serve was started with."""
        return self.http_options


def _only_count_changed(old: DeploymentConfig, new: DeploymentConfig) -> bool:
    import dataclasses

    return dataclasses.replace(new, num_replicas=old.num_replicas,
                               autoscaling_config=old.autoscaling_config) == old


def _cause(exc: BaseException) -> BaseException:
    """The user's error inside a task error (its original type and message)."""
    cause = getattr(exc, "cause", None) or exc.__cause__
    return cause if isinstance(cause, BaseException) else exc
