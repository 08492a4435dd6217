"""The trial actor: runs trials of one trainable, one at a time, and hands their results
to the controller one call at a time.

:class:`TrialRunner` is the actor class of the experiment's template. ``start(spec)``
begins a trial and returns its first event; ``next()`` lets it run to its next event;
``stop()`` ends it early (a function trainable leaves ``tune.report`` with
:class:`StopTrial`, which user code does not catch); ``save()`` checkpoints a class
trainable now (pausing, PBT). An event is a plain dict:

- ``{"kind": "result", "metrics": {...}, "checkpoint": path or None}``
- ``{"kind": "done"}``: the trainable returned (or its step said ``done``)
- ``{"kind": "error", "error": text, "exception": pickled exception or None}``
- ``{"kind": "batch", "events": [...]}``: a buffered trial's events in order (see below)

A function trainable runs on a thread of the actor; ``tune.report`` puts its result in a
queue and waits until the controller asks for the next one, so a trial never runs ahead
of the scheduler's decision (as in Ray Tune). When no decision can depend on a result
(FIFO scheduling and no stop criteria: every answer is "continue"), the trial is
*buffered*: ``tune.report`` returns at once and ``next()`` takes every result waiting, so
the controller pays one call per batch instead of one per result. The actor is reused for
the next trial when the experiment asks for it (``reuse_actors``).
"""

from __future__ import annotations

import os
import pickle
import queue
import shutil
import socket
import threading
import time
import traceback
from typing import Any

from sluice.libs.tune.checkpoint import Checkpoint
from sluice.libs.tune.session import TrialSession, TuneContext, set_session
from sluice.libs.tune.trainable import (
    is_class_trainable,
    load_from_checkpoint,
    save_to_checkpoint,
)

STOP_WAIT_S = 30.0
"""How long ``stop()`` waits for a function trainable to leave (then the actor is dropped)."""

BUFFERED = 1000
"""Results a buffered trial may report before the controller took them (then it waits)."""

BATCH_WAIT_S = 0.002
"""How long a buffered trial's ``next()`` waits for more events after the first."""


class StopTrial(BaseException):  # noqa: N818 - not an error: the trial was told to stop
    """Raised inside ``tune.report`` of a trial the scheduler stopped (a BaseException so
    that a trainable's ``except Exception`` does not keep it running)."""


def _error_event(exc: BaseException) -> dict[str, Any]:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        blob = pickle.dumps(exc)
    except Exception:  # noqa: BLE001 - the text still says what happened
        blob = None
    return {"kind": "error", "error": text, "exception": blob}


class _Clock:
    """A trial's iteration count and times, filled into every result (Ray's auto metrics)."""

    def __init__(self, spec: dict[str, Any]):
        self.trial_id = spec["trial_id"]
        self.iteration = int(spec.get("iteration", 0))
        self.time_total = float(spec.get("time_total_s", 0.0))
        self.restored_iteration = self.iteration
        self.started = self.last = time.time()
        self.pid = os.getpid()
        self.hostname = socket.gethostname()

    def stamp(self, metrics: dict[str, Any]) -> dict[str, Any]:
        now = time.time()
        this_iter = now - self.last
        self.last = now
        self.iteration += 1
        self.time_total += this_iter
        out = dict(metrics)
        out.update(training_iteration=self.iteration, time_this_iter_s=this_iter,
                   time_total_s=self.time_total, timestamp=int(now), trial_id=self.trial_id,
                   time_since_restore=now - self.started,
                   iterations_since_restore=self.iteration - self.restored_iteration,
                   pid=self.pid, hostname=self.hostname)
        out.setdefault("done", False)
        return out


class _Checkpoints:
    """Copies the checkpoints a trial reports into its folder (``checkpoint_000000``, ...),
    so they outlive the trainable's temporary directories."""

    def __init__(self, trial_dir: str, start_index: int):
        self.trial_dir = trial_dir
        self.index = start_index

    def next_dir(self) -> str:
        path = os.path.join(self.trial_dir, f"checkpoint_{self.index:06d}")
        self.index += 1
        return path

    def keep(self, checkpoint: Checkpoint) -> str:
        source = os.path.abspath(checkpoint.path)
        if os.path.dirname(source) == os.path.abspath(self.trial_dir):
            return source  # already in the trial's folder
        target = self.next_dir()
        shutil.copytree(source, target, dirs_exist_ok=True)
        return target


class _FunctionSession(TrialSession):
    """A function trainable's session: ``report`` hands the result over and waits for the
    controller to ask for the next one. Buffered (the experiment's decisions never depend
    on a result: FIFO scheduling, no stop criteria), it waits only when ``BUFFERED``
    results are already waiting to be taken."""

    def __init__(self, context: TuneContext, checkpoint: Checkpoint | None, clock: _Clock,
                 checkpoints: _Checkpoints, buffered: bool = False):
        super().__init__(context, checkpoint)
        self.clock = clock
        self.checkpoints = checkpoints
        self.buffered = buffered
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.go = threading.Semaphore(BUFFERED if buffered else 0)
        self.stopping = False

    def report(self, metrics: dict[str, Any], checkpoint: Checkpoint | None) -> None:
        if self.stopping:
            raise StopTrial()
        path = self.checkpoints.keep(checkpoint) if checkpoint is not None else None
        if path is not None:
            self.checkpoint = Checkpoint(path)
        self.events.put({"kind": "result", "metrics": self.clock.stamp(metrics),
                         "checkpoint": path})
        self.go.acquire()
        if self.stopping:
            raise StopTrial()

    def take(self) -> dict[str, Any]:
        """The next event; buffered, every event that comes within ``BATCH_WAIT_S`` of it
        (one ``batch`` event: the trial's end often follows its last result at once, and
        a call saved is worth more than the wait)."""
        if not self.buffered:
            self.go.release()
            return self.events.get()
        events = [self.events.get()]
        until = time.monotonic() + BATCH_WAIT_S
        while events[-1]["kind"] == "result" and len(events) < BUFFERED:
            left = until - time.monotonic()
            try:
                events.append(self.events.get(timeout=left) if left > 0
                              else self.events.get_nowait())
            except queue.Empty:
                break
        for event in events:
            if event["kind"] == "result":
                self.go.release()  # room for one more result
        return events[0] if len(events) == 1 else {"kind": "batch", "events": events}


class TrialRunner:
    """Runs trials of ``trainable`` one at a time (see the module's docstring).

    ``parameters`` are :func:`~sluice.libs.tune.trainable.with_parameters`'s object refs:
    read from the object store once per actor and passed to every trial.
    """

    def __init__(self, trainable: Any, parameters: dict[str, Any] | None = None,
                 checkpoint_frequency: int = 0, checkpoint_at_end: bool = False):
        self.trainable = trainable
        self.refs = dict(parameters or {})
        self._parameters: dict[str, Any] | None = None
        self.checkpoint_frequency = checkpoint_frequency
        self.checkpoint_at_end = checkpoint_at_end
        self.is_class = is_class_trainable(trainable)
        self._session: _FunctionSession | None = None
        self._thread: threading.Thread | None = None
        self._instance: Any = None  # a class trainable's running instance
        self._clock: _Clock | None = None
        self._checkpoints: _Checkpoints | None = None
        self._last_checkpoint: str | None = None

    def ready(self) -> int:
        """The actor's pid, once it is up."""
        return os.getpid()

    @property
    def parameters(self) -> dict[str, Any]:
        if self._parameters is None:
            import sluice

            names = list(self.refs)
            values = sluice.get([self.refs[n] for n in names]) if names else []
            self._parameters = dict(zip(names, values))
        return self._parameters

    # -- a trial --------------------------------------------------------------------------
    def start(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Begin the trial ``spec`` (its id, name, folder, config, and the checkpoint and
        iteration it resumes from); its first event."""
        self.stop()
        os.makedirs(spec["trial_dir"], exist_ok=True)
        checkpoint = Checkpoint(spec["checkpoint"]) if spec.get("checkpoint") else None
        context = TuneContext(spec["trial_id"], spec["trial_name"], spec["trial_dir"],
                              spec.get("experiment_name", ""), spec.get("resources", {}))
        self._clock = _Clock(spec)
        self._checkpoints = _Checkpoints(spec["trial_dir"], int(spec.get("checkpoint_index", 0)))
        self._last_checkpoint = spec.get("checkpoint")
        try:
            if self.is_class:
                return self._start_class(spec, context, checkpoint)
            return self._start_function(spec, context, checkpoint)
        except Exception as exc:  # noqa: BLE001 - the trial's error, reported
            return _error_event(exc)

    def next(self) -> dict[str, Any]:
        """Let the trial run to its next event."""
        if self.is_class:
            return self._step()
        session = self._session
        if session is None:
            return {"kind": "error", "error": "no trial runs on this actor", "exception": None}
        return session.take()

    def stop(self) -> bool:
        """End the running trial (if any); False if a function trainable would not leave
        (busy outside ``tune.report``): the actor should then be replaced."""
        left = True
        session, thread = self._session, self._thread
        if session is not None and thread is not None and thread.is_alive():
            session.stopping = True
            session.go.release()
            thread.join(STOP_WAIT_S)
            left = not thread.is_alive()
        self._session = self._thread = None
        if self._instance is not None:
            try:
                self._instance.cleanup()
            finally:
                self._instance = None
        set_session(None)
        return left

    def save(self) -> str | None:
        """Checkpoint the running trial now (a class trainable; a function trainable's is
        the latest it reported); the checkpoint's folder, or None."""
        if self._instance is not None and self._checkpoints is not None:
            path = save_to_checkpoint(self._instance, self._checkpoints.next_dir()).path
            self._last_checkpoint = path
            return path
        if self._session is not None and self._session.checkpoint is not None:
            return self._session.checkpoint.path
        return self._last_checkpoint

    def reset(self, config: dict[str, Any]) -> bool:
        """Whether a class trainable took ``config`` in place (``reset_config``)."""
        return bool(self._instance is not None and self._instance.reset_config(config))

    # -- function trainables --------------------------------------------------------------
    def _start_function(self, spec: dict[str, Any], context: TuneContext,
                        checkpoint: Checkpoint | None) -> dict[str, Any]:
        assert self._clock is not None and self._checkpoints is not None
        session = _FunctionSession(context, checkpoint, self._clock, self._checkpoints,
                                   buffered=bool(spec.get("buffered")))
        config = spec["config"]
        parameters = self.parameters

        def run() -> None:
            set_session(session)
            try:
                self.trainable(config, **parameters)
            except StopTrial:
                return
            except BaseException as exc:  # noqa: BLE001 - the trial's error, reported
                session.events.put(_error_event(exc))
                return
            session.events.put({"kind": "done"})

        self._session = session
        self._thread = threading.Thread(target=run, daemon=True,
                                        name=f"sluice-trial-{spec['trial_id']}")
        self._thread.start()
        # the first event: a lockstep trial waits in report() until next() releases it
        return session.take() if session.buffered else session.events.get()

    # -- class trainables -----------------------------------------------------------------
    def _start_class(self, spec: dict[str, Any], context: TuneContext,
                     checkpoint: Checkpoint | None) -> dict[str, Any]:
        set_session(TrialSession(context, checkpoint))
        self._instance = self.trainable(spec["config"], trial_id=spec["trial_id"],
                                        trial_name=spec["trial_name"],
                                        trial_dir=spec["trial_dir"],
                                        setup_kwargs=self.parameters)
        if checkpoint is not None:
            load_from_checkpoint(self._instance, checkpoint)
        self._instance._iteration = self._clock.iteration if self._clock else 0
        return self._step()

    def _step(self) -> dict[str, Any]:
        instance, clock = self._instance, self._clock
        if instance is None or clock is None:
            return {"kind": "error", "error": "no trial runs on this actor", "exception": None}
        try:
            metrics = instance.step()
            if not isinstance(metrics, dict):
                raise TypeError(f"{type(instance).__name__}.step() returned "
                                f"{type(metrics).__name__}; return a dict of metrics")
            result = clock.stamp(metrics)
            instance._iteration = clock.iteration
            path = None
            every = self.checkpoint_frequency
            if (every and clock.iteration % every == 0) or (
                    result.get("done") and self.checkpoint_at_end):
                path = self.save()
        except Exception as exc:  # noqa: BLE001 - the trial's error, reported
            return _error_event(exc)
        return {"kind": "result", "metrics": result, "checkpoint": path}
