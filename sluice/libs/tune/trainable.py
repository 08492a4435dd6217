"""Trainables: a function calling ``tune.report``, or a :class:`Trainable` subclass; and
:func:`with_parameters` / :func:`with_resources` around either (Ray Tune's API).
"""

from __future__ import annotations

import copy
import functools
import inspect
import os
import tempfile
from typing import Any

from sluice.libs.tune.checkpoint import Checkpoint

DEFAULT_RESOURCES = {"CPU": 1.0}
"""A trial's resources when the trainable does not say (Ray's: one CPU)."""


class Trainable:
    """The class API: ``setup(config)`` once, ``step()`` per iteration returning its metrics
    (``{"done": True}`` among them to finish), ``save_checkpoint(dir)`` /
    ``load_checkpoint(checkpoint)`` for pausing, PBT and failures, ``reset_config(config)``
    returning True to take a new trial's config in place (``reuse_actors``), ``cleanup()``."""

    def __init__(self, config: dict[str, Any] | None = None, trial_id: str = "default",
                 trial_name: str = "default", trial_dir: str | None = None,
                 setup_kwargs: dict[str, Any] | None = None):
        self.config = config or {}
        self._iteration = 0
        self._trial_id = trial_id
        self._trial_name = trial_name
        self._trial_dir = trial_dir or tempfile.mkdtemp(prefix="trainable-")
        # with_parameters' objects arrive as setup's keyword arguments, as in Ray Tune
        self.setup(copy.deepcopy(self.config), **(setup_kwargs or {}))

    # -- what users override ----------------------------------------------------------------
    def setup(self, config: dict[str, Any], **kwargs: Any) -> None:
        """Set up the trial (once, before the first step); ``kwargs``: the objects given
        with :func:`with_parameters`."""

    def step(self) -> dict[str, Any]:
        """One iteration; its metrics."""
        raise NotImplementedError(f"{type(self).__name__} must define step(self) returning a "
                                  f"dict of metrics")

    def save_checkpoint(self, checkpoint_dir: str) -> dict | None:
        """Write the trial's state into ``checkpoint_dir`` (or return a dict to be saved)."""
        return None

    def load_checkpoint(self, checkpoint: dict | str | None) -> None:
        """Restore the state ``save_checkpoint`` wrote (its directory, or its dict)."""

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        """Ray Tune asks this to reuse an instance for a new trial; sluice does not call it:
        each trial gets a new instance (its ``setup`` runs), also on a reused actor."""
        return False

    def cleanup(self) -> None:
        """Release what ``setup`` took (the trial ended)."""

    # -- what the runner and users read -----------------------------------------------------
    @property
    def iteration(self) -> int:
        """Iterations run so far."""
        return self._iteration

    training_iteration = iteration

    @property
    def trial_id(self) -> str:
        return self._trial_id

    @property
    def trial_name(self) -> str:
        return self._trial_name

    @property
    def logdir(self) -> str:
        return self._trial_dir

    trial_dir = logdir

    @classmethod
    def default_resource_request(cls, config: dict[str, Any]) -> dict[str, float] | None:
        """The trial's resources for ``config`` (None: one CPU)."""
        return None


def is_class_trainable(trainable: Any) -> bool:
    """True for a :class:`Trainable` subclass (the class API)."""
    return inspect.isclass(trainable) and issubclass(trainable, Trainable)


def trainable_name(trainable: Any) -> str:
    """The name trials are named after (``train_fn`` for a function ``train_fn``)."""
    inner = getattr(trainable, "__wrapped__", trainable)
    return getattr(inner, "__name__", type(inner).__name__)


def check_trainable(trainable: Any) -> None:
    """Raise unless ``trainable`` is a function or a Trainable subclass."""
    if is_class_trainable(trainable):
        return
    if inspect.isclass(trainable) or not callable(trainable):
        raise TypeError(f"Tuner(trainable={trainable!r}): give a function taking the config "
                        f"(and calling tune.report) or a subclass of tune.Trainable")


def with_resources(trainable: Any, resources: dict[str, float] | Any) -> Any:
    """``trainable`` whose every trial holds ``resources`` (``{"cpu": 2, "gpu": 1}``, custom
    resources by name); a function ``config -> dict`` gives them per config."""
    if not (isinstance(resources, dict) or callable(resources)):
        raise TypeError(f"with_resources({resources!r}): give a dict like {{'cpu': 2, 'gpu': 1}}"
                        f" or a function of the config returning one")
    return _wrapped(trainable, _tune_resources=resources)


def with_parameters(trainable: Any, **objects: Any) -> Any:
    """``trainable`` called with ``objects`` as keyword arguments (a function) or passed to
    ``setup`` (a Trainable): each object is put in the object store once, and every trial
    reads it from there (zero-copy for arrays and Arrow tables)."""
    import sluice

    refs = {name: sluice.put(value) for name, value in objects.items()}
    return _wrapped(trainable, _tune_parameters=refs)


def _wrapped(trainable: Any, **attrs: Any) -> Any:
    check_trainable(trainable)
    if is_class_trainable(trainable):
        cls = type(trainable.__name__, (trainable,), dict(attrs))
        cls.__qualname__ = trainable.__qualname__
        return cls

    @functools.wraps(trainable)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return trainable(*args, **kwargs)

    for key in ("_tune_resources", "_tune_parameters", "_tune_actor_resources"):  # kept
        if hasattr(trainable, key):
            setattr(wrapper, key, getattr(trainable, key))
    for key, value in attrs.items():
        setattr(wrapper, key, value)
    return wrapper


def resources_of(trainable: Any, config: dict[str, Any]) -> dict[str, float]:
    """The resources one trial of ``trainable`` holds with ``config`` (Ray's names:
    ``CPU``, ``GPU``, custom names as given)."""
    found = getattr(trainable, "_tune_resources", None)
    if callable(found):
        found = found(config)
    if found is None and is_class_trainable(trainable):
        found = trainable.default_resource_request(config)
    if found is None:
        return dict(DEFAULT_RESOURCES)
    names = {"cpu": "CPU", "gpu": "GPU", "memory": "memory"}
    out = {names.get(str(k), str(k)): float(v) for k, v in dict(found).items() if v}
    for key, value in out.items():
        if value < 0:
            raise ValueError(f"with_resources: {key}={value} is negative; give 0 or more")
    return out


def reserved_by_gang(trainable: Any, resources: Any) -> Any:
    """``trainable`` whose trials each count ``resources`` (a dict, or a function of the
    config) against the cluster while their own actors hold nothing: for a trainable that
    starts a gang of actors holding them (a sluice.train run), so that no more trials run
    at once than gangs fit, as Ray's placement group per trial does."""
    wrapped = with_resources(trainable, resources)
    wrapped._tune_actor_resources = {}
    return wrapped


def actor_resources(trainable: Any, counted: dict[str, float]) -> dict[str, float]:
    """What the actor of a trial that counts ``counted`` holds itself."""
    held = getattr(trainable, "_tune_actor_resources", None)
    return dict(counted) if held is None else dict(held)


def parameters_of(trainable: Any) -> dict[str, Any]:
    """The object-store refs :func:`with_parameters` attached (name -> ref)."""
    return dict(getattr(trainable, "_tune_parameters", None) or {})


def save_to_checkpoint(trainable: Trainable, directory: str) -> Checkpoint:
    """Save a class trainable's state into ``directory`` (a dict returned goes to a file)."""
    os.makedirs(directory, exist_ok=True)
    state = trainable.save_checkpoint(directory)
    if isinstance(state, dict):
        import pickle

        with open(os.path.join(directory, "_dict_checkpoint.pkl"), "wb") as f:
            pickle.dump(state, f)
    return Checkpoint(directory)


def load_from_checkpoint(trainable: Trainable, checkpoint: Checkpoint) -> None:
    """Give a class trainable the state :func:`save_to_checkpoint` wrote."""
    saved = os.path.join(checkpoint.path, "_dict_checkpoint.pkl")
    if os.path.exists(saved):
        import pickle

        with open(saved, "rb") as f:
            trainable.load_checkpoint(pickle.load(f))
    else:
        trainable.load_checkpoint(checkpoint.path)
