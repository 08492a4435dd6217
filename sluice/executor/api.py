"""The eager API: init/shutdown and get/put/wait/cancel/kill on the current runtime."""

from __future__ import annotations

import atexit
import importlib
import json
import logging
import math
import numbers
import os
import sys
import threading
from typing import Any, Sequence

from sluice.executor import context
from sluice.executor.backend import Backend
from sluice.executor.object_ref import ObjectRef

_init_lock = threading.Lock()
_DRIVER_MODULES = ("sluice.dsl.to_graph", "sluice.compiler.pipeline", "sluice.compiler.runner")
"""What a driver loads at ``init`` and a worker never needs (the compiler and networkx)."""


def init(num_cpus: float | None = None, num_gpus: float | None = None,
         resources: dict[str, float] | None = None, object_store_memory: int | None = None,
         *, spill_dir: str | None = None, ignore_reinit_error: bool = False,
         address: Any = None, backend: str = "local", token: str | None = None,
         namespace: str | None = None, runtime_env: dict[str, Any] | None = None,
         log_to_driver: bool = True, include_dashboard: bool | None = None,
         dashboard_host: str = "127.0.0.1", dashboard_port: int | None = None,
         configure_logging: bool = True, logging_level: int | str = logging.INFO,
         _system_config: dict[str, Any] | None = None) -> None:
    """Start the embedded local runtime in this process, or connect to a cluster.

    ``num_cpus`` defaults to the machine's CPUs (one worker process each),
    ``num_gpus`` to the GPUs found, ``object_store_memory`` to 30% of /dev/shm
    (objects past it spill to ``spill_dir`` on disk). Calling it is optional:
    the first ``.remote()`` or ``put`` starts a default runtime.

    ``address="sluice://HOST:PORT"`` connects to a cluster started with
    ``sluice start --head`` instead (``token``: the cluster's token, else
    ``SLUICE_TOKEN``, else the head's token file on this machine); the
    resource arguments then belong to the nodes. ``backend="dask"`` runs on a
    Dask cluster: ``address`` is its scheduler's address or a ``distributed.Client``.

    ``namespace``: where this job's named actors live and are looked up (default: a
    fresh anonymous namespace of this job's own, as in Ray); drivers that give the same
    namespace share named actors on a cluster. Dask keeps no namespaces.

    ``runtime_env``: the job's runtime environment (``env_vars``, ``working_dir``,
    ``py_modules``, ``excludes``, ``pip``; see :mod:`sluice.executor.runtime_env`), the
    default under each task's and actor's own (whose ``env_vars`` are merged over
    it). A bad one raises :class:`~sluice.exceptions.RuntimeEnvSetupError` here.

    Ray's other arguments (:mod:`sluice.executor.init_options`): ``address="auto"`` (or
    ``init("auto")``: a str first argument is Ray's ``address``) connects to the cluster
    ``SLUICE_ADDRESS`` or ``RAY_ADDRESS`` names, else to the head ``sluice start --head``
    runs on this machine, and raises ``ConnectionError`` when there is none.
    ``log_to_driver=False`` sends the local runtime's workers' stdout and stderr to
    /dev/null; on a cluster their output stays on their node either way (Dask: on its
    workers). ``logging_level`` sets the ``sluice`` logger's level (unless
    ``configure_logging=False``). sluice has no dashboard: ``include_dashboard=True``, a
    ``dashboard_host`` or a ``dashboard_port`` warn that none starts. ``_system_config``:
    a ``filesystem`` ``object_spilling_config`` sets ``spill_dir``; its other keys (Ray's
    internal settings) are ignored with a warning naming them.

    >>> import sluice
    >>> sluice.init(num_cpus=1)
    >>> sluice.is_initialized()
    True
    >>> sluice.shutdown()
    """
    from sluice.executor import init_options
    from sluice.executor.runtime import Runtime

    if isinstance(num_cpus, str) and address is None:  # Ray's first parameter: init("auto")
        num_cpus, address = None, num_cpus
    spilling_to = init_options.check(log_to_driver, include_dashboard, dashboard_host,
                                     dashboard_port, configure_logging, logging_level, _system_config)
    if spilling_to is not None:
        if spill_dir is not None and spill_dir != spilling_to:
            raise ValueError(f"init(spill_dir={spill_dir!r}) and _system_config's spilling "
                             f"directory {spilling_to!r} disagree; give one")
        spill_dir = spilling_to
    if address == "auto" and backend == "local" and context.current() is None:
        address = init_options.auto_address()
    if address is None and backend == "local" and os.environ.get(init_options.JOB_ADDRESS_VAR):
        # A job submitted to a cluster (`sluice job submit`): its driver joins that cluster,
        # with the job's runtime_env, as a Ray job's ray.init() does.
        address = os.environ[init_options.JOB_ADDRESS_VAR]
        if runtime_env is None:
            runtime_env = json.loads(os.environ.get(init_options.JOB_RUNTIME_ENV_VAR) or "{}") \
                or None
    if backend not in ("local", "dask"):
        raise ValueError(f"init(backend={backend!r}): give backend='local' (the embedded runtime, "
                         "or a sluice cluster with address='sluice://HOST:PORT') or 'dask'")
    if backend == "dask" or address is not None:
        given = [name for name, value in (("num_cpus", num_cpus), ("num_gpus", num_gpus),
                                          ("resources", resources),
                                          ("object_store_memory", object_store_memory),
                                          ("spill_dir", spill_dir)) if value is not None]
        if given:
            where = ("its Dask workers (dask worker --resources ...)" if backend == "dask" else
                     "its nodes (sluice start --num-cpus/--num-gpus/--resources ...)")
            raise ValueError(f"init({', '.join(given)}=...) together with "
                             f"{'backend=dask' if backend == 'dask' else 'address='}: a running "
                             f"cluster's resources are set where {where} start; drop "
                             f"{', '.join(given)} here")
    with _init_lock:
        current = context.current()
        if current is not None:
            if current.is_driver:
                if ignore_reinit_error:
                    return
                raise RuntimeError("sluice.init() was already called; call sluice.shutdown() first, "
                                   "or pass ignore_reinit_error=True")
            raise RuntimeError("sluice.init() cannot be called inside a task or actor")
        for name, value in (("num_cpus", num_cpus), ("num_gpus", num_gpus)):
            if value is not None and (not isinstance(value, (int, float)) or value < 0):
                raise ValueError(f"init({name}={value!r}): give a number >= 0")
        if namespace is not None and (not isinstance(namespace, str) or not namespace):
            raise ValueError(f"init(namespace={namespace!r}): give a non-empty str, or None for "
                             "an anonymous namespace of this job's own")
        init_options.apply_logging(configure_logging, logging_level)
        if object_store_memory is not None and object_store_memory <= 0:
            raise ValueError(f"init(object_store_memory={object_store_memory!r}): give a positive "
                             "number of bytes")
        if backend == "dask":
            from sluice.executor.dask_backend import DaskRuntime, no_namespaces, no_runtime_env

            no_namespaces(namespace, "init(namespace=...)")
            no_runtime_env(runtime_env, "init")
            context.set_current(DaskRuntime(address))
        elif address is not None:
            from sluice.executor.cluster.client import connect
            from sluice.executor.runtime_env import Shipper, check_spec

            job_env = check_spec(runtime_env) if runtime_env is not None else None  # bad: fails here
            client = connect(address, token=token, namespace=namespace)
            if not log_to_driver:
                client.printer = None
            client.inherited_runtime_env = job_env
            client.shipper = Shipper(client.put)
            context.set_current(client)
        else:
            context.set_current(Runtime(num_cpus, num_gpus, resources, object_store_memory, spill_dir,
                                        namespace=namespace, runtime_env=runtime_env,
                                        log_to_driver=log_to_driver))
        # A driver builds graphs: load the compiler now (workers, which import sluice too,
        # never do), so the first .bind()/compile() does not pay its imports (~0.1 s).
        for module in _DRIVER_MODULES:
            importlib.import_module(module)
        if include_dashboard:  # (above the executor: loaded by name, as the compiler is)
            dashboard = importlib.import_module("sluice.dashboard")
            dashboard.start(dashboard.BackendSource(context.current()), dashboard_host,
                            dashboard_port)


def shutdown() -> None:
    """Stop the runtime: workers and actors exit, shared memory and spill files are removed."""
    with _init_lock:
        rt = context.current()
        if rt is None or not rt.is_driver:
            return
        context.set_current(None)
        dashboard = sys.modules.get("sluice.dashboard")
        if dashboard is not None:
            dashboard.stop()
        history = sys.modules.get("sluice.compiler.history")
        if history is not None:  # (its object ids were this runtime's)
            history.clear()
        rt.shutdown()


atexit.register(shutdown)


def is_initialized() -> bool:
    """Whether a runtime is running in this process (a worker counts as initialized)."""
    return context.current() is not None


def runtime() -> Backend:
    """The current backend, starting the default local runtime on first use."""
    rt = context.current()
    if rt is None:
        init(ignore_reinit_error=True)
        rt = context.current()
        assert rt is not None
    return rt


def get(refs: ObjectRef | Sequence[ObjectRef], *, timeout: float | None = None) -> Any:
    """The value of a ref, or the values of a list of refs, waiting until they are ready.

    Arrays and Arrow tables come back as read-only zero-copy views of the
    store. A task's exception re-raises here as a ``TaskError`` that is also
    an instance of its original type. ``timeout`` (seconds) raises
    ``GetTimeoutError`` when it passes first.
    """
    if isinstance(refs, ObjectRef):
        return runtime().get([refs], _check_timeout(timeout, "get"))[0]
    if not isinstance(refs, (list, tuple)) or not all(isinstance(r, ObjectRef) for r in refs):
        raise TypeError(f"get() takes an ObjectRef or a list of ObjectRefs, got {_describe(refs)}")
    if not refs:
        return []
    return runtime().get(list(refs), _check_timeout(timeout, "get"))


def put(value: Any) -> ObjectRef:
    """Store ``value`` in the object store once; pass the ref to many tasks without copies."""
    return runtime().put(value)


def wait(refs: Sequence[ObjectRef], *, num_returns: int = 1, timeout: float | None = None,
         fetch_local: bool = True) -> tuple[list[ObjectRef], list[ObjectRef]]:
    """Split ``refs`` into (ready, not ready) once ``num_returns`` are ready or ``timeout`` passes.

    Both lists keep the order of ``refs``; ``ready`` holds at most ``num_returns`` refs.
    ``fetch_local`` is accepted for Ray's programs and changes nothing: a ref is ready
    once its value is stored on any node (Ray's ``fetch_local=False``); ``get`` copies it
    to this node then.
    """
    from sluice.executor.generators import ObjectRefGenerator

    if not isinstance(fetch_local, bool):
        raise TypeError(f"wait(fetch_local={fetch_local!r}) takes True or False")
    if isinstance(refs, ObjectRef) or not isinstance(refs, (list, tuple)) \
            or not all(isinstance(r, (ObjectRef, ObjectRefGenerator)) for r in refs):
        raise TypeError(f"wait() takes a list of ObjectRefs, got {_describe(refs)}")
    if any(isinstance(r, ObjectRefGenerator) for r in refs):
        return _wait_with_generators(list(refs), num_returns, _check_timeout(timeout, "wait"))
    if len(set(refs)) != len(refs):
        raise ValueError("wait() got the same ObjectRef twice; pass each ref once")
    if isinstance(num_returns, bool) or not isinstance(num_returns, numbers.Integral) \
            or not 0 <= num_returns <= len(refs):
        raise ValueError(f"wait(num_returns={num_returns!r}) with {len(refs)} refs; "
                         f"num_returns must be an int between 0 and {len(refs)}")
    if not refs:
        return [], []
    done = set(runtime().wait(list(refs), num_returns, _check_timeout(timeout, "wait")))
    ready = [r for r in refs if r.id in done][:num_returns] if num_returns else []
    chosen = {r.id for r in ready}
    return ready, [r for r in refs if r.id not in chosen]


def _wait_with_generators(refs: list, num_returns: int, timeout: float | None) -> tuple[list, list]:
    """:func:`wait` over refs and generators: a generator is ready when ``next`` would not
    block (its next item, or its end, is there), as in Ray. Checks every millisecond."""
    import time

    from sluice.executor.generators import ObjectRefGenerator

    if len(set(map(id, refs))) != len(refs):
        raise ValueError("wait() got the same ObjectRef or generator twice; pass each once")
    if isinstance(num_returns, bool) or not isinstance(num_returns, numbers.Integral) \
            or not 0 <= num_returns <= len(refs):
        raise ValueError(f"wait(num_returns={num_returns!r}) with {len(refs)} refs; "
                         f"num_returns must be an int between 0 and {len(refs)}")
    rt = runtime()
    plain = [r for r in refs if isinstance(r, ObjectRef)]
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        done = set(rt.wait(plain, 0, 0)) if plain else set()
        ready = [r for r in refs if (r._runtime.stream_ready(r._ref.id)
                                     if isinstance(r, ObjectRefGenerator) else r.id in done)]
        if len(ready) >= num_returns or deadline is not None and time.monotonic() >= deadline:
            ready = ready[:num_returns]
            chosen = set(map(id, ready))
            return ready, [r for r in refs if id(r) not in chosen]
        time.sleep(0.001)


def cancel(ref: ObjectRef, *, force: bool = False, recursive: bool = True) -> None:
    """Cancel the task that computes ``ref``; its ``get`` raises ``TaskCancelledError``.

    A task not started yet never runs. A running task is abandoned (its result
    discarded) unless ``force=True``, which kills its worker process; but not a task
    running inside the ``get`` of the task that waits for it (in that task's process,
    see ``sluice/executor/nesting.py``): killing it would kill that task too, so it is
    abandoned. ``recursive`` (Ray's default, True): the unfinished tasks the cancelled
    task submitted, and the ones they submitted, are cancelled the same way (not the
    actor calls it made; on the dask backend no child is cancelled). A task already
    finished cancels nothing.
    """
    from sluice.executor.generators import ObjectRefGenerator

    if isinstance(ref, ObjectRefGenerator):  # stop the producer; later items raise the cancel
        ref = ref._ref
    if not isinstance(ref, ObjectRef):
        raise TypeError(f"cancel() takes an ObjectRef or ObjectRefGenerator, got {_describe(ref)}")
    if not isinstance(force, bool) or not isinstance(recursive, bool):
        raise TypeError(f"cancel(force={force!r}, recursive={recursive!r}): give True or False")
    runtime().cancel(ref, force, recursive)


def kill(actor: Any, *, no_restart: bool = True) -> None:
    """Kill an actor's process at once; its pending and later calls raise ``ActorDiedError``."""
    actor_id = getattr(actor, "_actor_id", None)
    if actor_id is None:
        raise TypeError(f"kill() takes an actor handle, got {_describe(actor)}; "
                        "to stop a task use sluice.cancel(ref, force=True)")
    runtime().kill(actor_id, no_restart)


def cluster_resources() -> dict[str, float]:
    """Total resources of the runtime (CPU, GPU, custom)."""
    return runtime().cluster_resources()


def available_resources() -> dict[str, float]:
    """Resources free right now."""
    return runtime().available_resources()


def nodes() -> list[dict[str, Any]]:
    """The runtime's nodes, as Ray's ``ray.nodes()`` lists them (one dict per node).

    Keys: ``NodeID`` (the id a ``NodeAffinitySchedulingStrategy`` names),
    ``Alive`` and ``alive``, ``NodeManagerAddress``, ``NodeName``, ``Resources``
    (total CPU, GPU and custom amounts). The embedded local runtime is one node.
    """
    return [{"NodeID": n.node_id, "Alive": n.alive, "alive": n.alive,
             "NodeManagerAddress": n.address, "NodeName": n.address,
             "Resources": dict(n.resources)} for n in runtime().nodes()]


def get_gpu_ids() -> list[int]:
    """The GPU ids granted to the current task or actor (from ``CUDA_VISIBLE_DEVICES``)."""
    import os

    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    return [int(g) for g in visible.split(",") if g.strip().isdigit()]


def _check_timeout(timeout: float | None, call: str) -> float | None:
    """``timeout`` as the backends take it: None (wait as long as it takes) or seconds >= 0
    (0: only what is ready now). As in Ray, None waits forever and 0 does not wait; a
    negative, NaN or non-number timeout is an error here (it would wait forever or not at
    all, silently); infinity is None."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        raise TypeError(f"{call}(timeout={timeout!r}): give seconds as a number >= 0 (0 takes only "
                        "what is ready now), or None to wait as long as it takes")
    if math.isnan(timeout) or timeout < 0:
        raise ValueError(f"{call}(timeout={timeout!r}): give seconds >= 0 (0 takes only what is "
                         "ready now), or None to wait as long as it takes")
    return None if math.isinf(timeout) else float(timeout)


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r:.60}"
