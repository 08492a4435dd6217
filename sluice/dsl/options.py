"""Task and actor options: defaults, validation, and ``.options()`` merging."""

from __future__ import annotations

from typing import Any

from sluice.executor.calls import ExceptionTypes
from sluice.executor.resources import demand_key
from sluice.executor.strategies import PlacementGroupSchedulingStrategy, check_strategy, group_demand

TASK_DEFAULTS: dict[str, Any] = {
    "num_cpus": 1, "num_gpus": 0, "resources": None, "memory": None, "max_retries": 3,
    "retry_exceptions": False, "num_returns": 1, "name": None, "jit": False,
    # a pool worker exits after running this many calls of the function (0: no limit), as Ray's
    "max_calls": 0,
    # a generator's items the consumer may fall behind before the producer pauses (None: no bound)
    "_generator_backpressure_num_objects": None,
    "scheduling_strategy": None,  # None/"DEFAULT" or NodeAffinitySchedulingStrategy
    "runtime_env": None,  # a dict (sluice.executor.runtime_env), checked when submitted
    "pure": True,  # graphs only: equal calls of a pure function may be computed once (CSE)
    # sluice.workflow steps only: retries of a failing step (delay, growth), the step's output
    # as (result, error) instead of raising, and reuse of an unchanged step across runs.
    "retry_delay_s": 0.0, "backoff": 1.0, "catch_exceptions": False, "cache": False,
}
WORKFLOW_OPTIONS = ("retry_delay_s", "backoff", "catch_exceptions", "cache")
"""Options only sluice.workflow reads: accepted on ``.bind()`` steps, an error on ``.remote()``."""
ACTOR_DEFAULTS: dict[str, Any] = {
    "num_cpus": 0, "num_gpus": 0, "resources": None, "memory": None, "max_restarts": 0,
    "max_concurrency": None, "name": None, "scheduling_strategy": None, "runtime_env": None,
    # Named actors: the namespace the name lives in (None: the job's), return the live actor
    # of that name instead of raising, and "detached" to outlive the driver on a cluster.
    "namespace": None, "get_if_exists": False, "lifetime": None,
    # Calls in flight when the actor's process dies run again on the restarted actor, each
    # at most this many times (-1: no limit); with max_restarts=0 nothing restarts to retry.
    "max_task_retries": 0,
}
METHOD_DEFAULTS: dict[str, Any] = {"num_returns": 1, "name": None,
                                   "_generator_backpressure_num_objects": None}
STREAMING = "streaming"
"""``num_returns=STREAMING``: the call returns an ObjectRefGenerator, one ref per yielded item
(the default for generator functions and methods, as in Ray)."""


def workflow_only_error(names: list[str] | tuple[str, ...], where: str, what: str) -> ValueError:
    """The error for workflow step options given where no workflow reads them.

    >>> workflow_only_error(["cache"], "@remote class C", "actors")  # doctest: +ELLIPSIS
    ValueError('@remote class C: cache applies only to workflow steps (...), not to actors; drop it here')
    """
    listed = ", ".join(names)
    verb, pronoun = ("applies", "it") if len(names) == 1 else ("apply", "them")
    return ValueError(f"{where}: {listed} {verb} only to workflow steps (@remote functions bound "
                      f"with .bind() and run by sluice.workflow.run), not to {what}; drop "
                      f"{pronoun} here")


def normalize(kind: str, given: dict[str, Any], defaults: dict[str, Any], where: str) -> dict[str, Any]:
    """Merge ``given`` over ``defaults`` and check every value; errors name the option."""
    unknown = sorted(set(given) - set(defaults))
    workflow_only = [name for name in unknown if name in WORKFLOW_OPTIONS]
    if workflow_only:
        raise workflow_only_error(workflow_only, where, "actors" if kind.startswith("actor") else f"{kind}s")
    if unknown:
        raise ValueError(f"{where}: unknown option(s) {', '.join(unknown)} for a {kind}; "
                         f"valid options are {', '.join(sorted(defaults))}")
    opts = {**defaults, **given}
    for name in ("num_cpus", "num_gpus"):
        if name not in opts:
            continue
        v = opts[name]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ValueError(f"{where}: {name}={v!r} must be a number >= 0")
    if opts.get("resources") is not None and not isinstance(opts["resources"], dict):
        raise ValueError(f"{where}: resources={opts['resources']!r} must be a dict of name -> amount")
    for name in ("max_retries", "max_restarts", "max_task_retries"):
        if name in opts:
            v = opts[name]
            if isinstance(v, bool) or not isinstance(v, int) or v < -1:
                raise ValueError(f"{where}: {name}={v!r} must be an int >= 0 (or -1 for no limit)")
            if v == -1:
                opts[name] = 1 << 30
    if "max_calls" in opts:
        v = opts["max_calls"]
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{where}: max_calls={v!r} must be an int >= 0 (0: no limit)")
    if "num_returns" in opts:
        v = opts["num_returns"]
        if v != STREAMING and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"{where}: num_returns={v!r} must be an int >= 1 or "
                             f"\"{STREAMING}\" (a generator's items, one ref each)")
    bp = opts.get("_generator_backpressure_num_objects")
    if bp is not None:
        if isinstance(bp, bool) or not isinstance(bp, int) or bp == 0 or bp < -1:
            raise ValueError(f"{where}: _generator_backpressure_num_objects={bp!r} must be an int "
                             ">= 1 (or -1 / None for no backpressure)")
        if bp == -1:
            opts["_generator_backpressure_num_objects"] = None
    if opts.get("max_concurrency") is not None:
        v = opts["max_concurrency"]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{where}: max_concurrency={v!r} must be an int >= 1")
    for name, low in (("retry_delay_s", 0.0), ("backoff", 1.0)):
        if name in opts:
            v = opts[name]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < low:
                raise ValueError(f"{where}: {name}={v!r} must be a number >= {low:g}")
    if opts.get("name") is not None and (not isinstance(opts["name"], str) or not opts["name"]):
        raise ValueError(f"{where}: name={opts['name']!r} must be a non-empty str (or None)")
    if opts.get("namespace") is not None and (not isinstance(opts["namespace"], str)
                                              or not opts["namespace"]):
        raise ValueError(f"{where}: namespace={opts['namespace']!r} must be a non-empty str (or "
                         "None for the job's namespace)")
    if opts.get("lifetime") not in (None, "detached", "non_detached"):
        raise ValueError(f"{where}: lifetime={opts['lifetime']!r} must be None, 'detached' or "
                         "'non_detached'")
    if opts.get("lifetime") == "non_detached":
        opts["lifetime"] = None
    for name in ("get_if_exists",):
        if name in opts and not isinstance(opts[name], bool):
            raise ValueError(f"{where}: {name}={opts[name]!r} must be True or False")
    for name in ("catch_exceptions", "cache"):
        if name in opts and not isinstance(opts[name], bool):
            raise ValueError(f"{where}: {name}={opts[name]!r} must be True or False")
    if "scheduling_strategy" in opts:
        opts["scheduling_strategy"] = check_strategy(opts["scheduling_strategy"], where)
    if "retry_exceptions" in opts:
        opts["retry_exceptions"] = _retry_spec(opts["retry_exceptions"], where)
    if opts.get("memory") is not None:
        opts["resources"] = _with_memory(opts["memory"], opts.get("resources"), where)
    if "num_cpus" in opts:
        opts["_key"] = demand_key(opts["num_cpus"], opts["num_gpus"], opts["resources"])
        strategy = opts.get("scheduling_strategy")
        if isinstance(strategy, PlacementGroupSchedulingStrategy):
            opts["_key"] = group_demand(opts["_key"], strategy, where)
    if "max_calls" in opts:  # a task's options: may it take the runtime's short submit path?
        opts["_plain"] = (opts.get("scheduling_strategy") is None and not opts.get("runtime_env")
                          and opts["num_returns"] != STREAMING and not opts["max_calls"])
    return opts


def _with_memory(memory: Any, resources: dict | None, where: str) -> dict:
    """``resources`` with ``memory`` (bytes) as the ``"memory"`` resource, as Ray counts it:
    a logical amount reserved on a node while the task or actor holds it, not a limit."""
    if isinstance(memory, bool) or not isinstance(memory, (int, float)) or memory < 0:
        raise ValueError(f"{where}: memory={memory!r} must be a number of bytes >= 0")
    if resources and "memory" in resources:
        raise ValueError(f"{where}: memory={memory!r} and resources={{'memory': ...}} both given; "
                         "give memory= alone")
    return {**(resources or {}), "memory": float(memory)}


def _retry_spec(value: Any, where: str) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(t, type) and issubclass(t, BaseException)
                                                 for t in value):
        return ExceptionTypes(value)
    raise ValueError(f"{where}: retry_exceptions={value!r} must be True, False, or a list of "
                     "exception types")


def method(*, num_returns: int | str | None = None,
           _generator_backpressure_num_objects: int | None = None):
    """Set per-method options on an actor method: ``@sluice.method(num_returns=2)``
    (unset, a generator method streams: ``num_returns="streaming"``)."""
    def decorate(fn):
        opts: dict[str, Any] = {}
        if num_returns is not None:
            opts["num_returns"] = num_returns
        if _generator_backpressure_num_objects is not None:
            opts["_generator_backpressure_num_objects"] = _generator_backpressure_num_objects
        fn.__sluice_method_options__ = opts
        return fn
    return decorate
