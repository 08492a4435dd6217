"""The trial actor: runs trials of one trainable, one at a time, and hands their results
to the controller one call at a time.

:class:`TrialRunner` is the actor class of the experiment's template. ``start(spec)``
begins a trial and returns its first event; ``next()`` lets it run to its next event;
``stop()`` ends it early (a function trainable leaves ``tune.report`` with
:class:`StopTrial`, which user code does not catch); ``save()`` checkpoints a class
trainable now (pausing, PBT). An event is a plain dict:

- ``{"kind": "result", "metrics": {...}, "text": the metrics as JSON (encoded here, off the
  driver, which writes it to the database as it is), "checkpoint": path or None}``
- ``{"kind": "done"}``: the trainable returned (or its step said ``done``)
- ``{"kind": "error", "error": text, "exception": pickled exception or None}``
- ``{"kind": "batch", "events": [...]}``: a buffered trial's events in order (see below)

A function trainable runs on a thread of the actor; ``tune.report`` puts its result in a
queue and waits until the controller asks for the next one, so a trial never runs ahead
of the scheduler's decision (as in Ray Tune), except the results the scheduler said it
decides nothing on (``until``: before its next rung, milestone or perturbation), which
come back in batches as they are made. When no decision can depend on a result
(FIFO scheduling and no stop criteria: every answer is "continue"), the trial is
*buffered*: ``tune.report`` returns at once and ``next()`` takes every result waiting, so
the controller pays one call per batch instead of one per result. The actor is reused for
the next trial when the experiment asks for it (``reuse_actors``).
"""

from __future__ import annotations

import asyncio
import os
import pickle
import shutil
import socket
import tempfile
import threading
import time
import traceback
from typing import Any

from sluice.libs.tune.checkpoint import Checkpoint, pack, unpack
from sluice.libs.tune.experiment_db import dumps
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


def error_event(exc: BaseException) -> dict[str, Any]:
    """The event that reports ``exc`` to the driver: its traceback, and the exception
    pickled (None when it does not pickle)."""
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
    so they outlive the trainable's temporary directories; on another node than the
    driver's, each also travels back as an archive (:meth:`event`)."""

    def __init__(self, trial_dir: str, start_index: int, remote: bool = False):
        self.trial_dir = trial_dir
        self.index = start_index
        self.remote = remote

    def event(self, path: str | None) -> dict[str, Any]:
        """What a result event says of its checkpoint at ``path`` (None: none)."""
        if path is None:
            return {"checkpoint": None}
        if self.remote:
            return {"checkpoint": path, "checkpoint_data": pack(path)}
        return {"checkpoint": path}

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


def _remote(driver_node: str | None) -> bool:
    """True when this actor runs on another node than the driver's."""
    if driver_node is None:
        return False
    import sluice

    return sluice.get_runtime_context().get_node_id() != driver_node


class _FunctionSession(TrialSession):
    """A function trainable's session: ``report`` hands the result over and waits for the
    controller to ask for the next one. Buffered (the experiment's decisions never depend
    on a result: FIFO scheduling, no stop criteria), it waits only when ``BUFFERED``
    results are already waiting to be taken.

    The trainable runs on a thread of its own; its events reach the actor's event loop
    through an asyncio queue, so the actor's process keeps serving the runtime (a
    trainable may call ``sluice.get``, submit tasks, read its context) while it waits.
    """

    def __init__(self, context: TuneContext, checkpoint: Checkpoint | None, clock: _Clock,
                 checkpoints: _Checkpoints, buffered: bool = False):
        super().__init__(context, checkpoint)
        self.clock = clock
        self.checkpoints = checkpoints
        self.buffered = buffered
        self.loop = asyncio.get_running_loop()
        self.events: asyncio.Queue = asyncio.Queue()
        self.go = threading.Semaphore(BUFFERED if buffered else 0)
        self.stopping = False
        self.until: int | None = None  # lockstep: results before this iteration do not wait
        self.waiting = False  # lockstep: the trainable waits in report() for a decision

    def put(self, event: dict[str, Any]) -> None:
        """Hand ``event`` to the actor's loop (from the trainable's thread)."""
        self.loop.call_soon_threadsafe(self.events.put_nowait, event)

    def report(self, metrics: dict[str, Any], checkpoint: Checkpoint | None) -> None:
        if self.stopping:
            raise StopTrial()
        path = self.checkpoints.keep(checkpoint) if checkpoint is not None else None
        if path is not None:
            self.checkpoint = Checkpoint(path)
        result = self.clock.stamp(metrics)
        until = self.until
        # lockstep, a result the scheduler may decide on waits for the decision; one before
        # ``until`` does not (the event says which, for take())
        waits = not self.buffered and (until is None or result["training_iteration"] >= until)
        self.put({"kind": "result", "metrics": result, "text": dumps(result),
                  **self.checkpoints.event(path), "waits": waits})
        if self.buffered or waits:
            self.go.acquire()
            if self.stopping:
                raise StopTrial()

    async def first(self) -> dict[str, Any]:
        """The trial's first event (a lockstep trial's first result waits for a decision)."""
        return await self.take()

    async def take(self, until: int | None = None) -> dict[str, Any]:
        """The next event, with every one that comes within ``BATCH_WAIT_S`` of it while
        the trainable runs on (one ``batch`` event: the trial's end often follows its last
        result at once, and a call saved is worth more than the wait). Lockstep, the
        trainable waiting for a decision goes on first, its results before ``until`` not
        waiting; a result that waits ends the batch."""
        if not self.buffered:
            self.until = until  # read by report() from its next result on
            if self.waiting:
                self.waiting = False
                self.go.release()
        events = [await self.events.get()]
        deadline = time.monotonic() + BATCH_WAIT_S
        while (events[-1]["kind"] == "result" and not events[-1]["waits"]
               and len(events) < BUFFERED):
            if not self.events.empty():
                events.append(self.events.get_nowait())
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                events.append(await asyncio.wait_for(self.events.get(), left))
            except asyncio.TimeoutError:
                break
        if self.buffered:
            for event in events:
                if event["kind"] == "result":
                    self.go.release()  # room for one more result
        else:
            self.waiting = events[-1].get("waits", False)
        for event in events:
            event.pop("waits", None)
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
        self.remote = False  # the running trial's node is not the driver's
        self._lock_made: asyncio.Lock | None = None

    async def ready(self) -> int:
        """The actor's pid, once it is up."""
        return os.getpid()

    @property
    def _lock(self) -> asyncio.Lock:
        """One method at a time, in the order called (made on the actor's loop)."""
        if self._lock_made is None:
            self._lock_made = asyncio.Lock()
        return self._lock_made

    @property
    def parameters(self) -> dict[str, Any]:
        if self._parameters is None:
            import sluice

            names = list(self.refs)
            values = sluice.get([self.refs[n] for n in names]) if names else []
            self._parameters = dict(zip(names, values))
        return self._parameters

    # -- a trial (the actor's methods: async, run one at a time in the order called) -----
    async def start(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Begin the trial ``spec`` (its id, name, folder, config, and the checkpoint and
        iteration it resumes from); its first event.

        On another node than the driver's (``spec["driver_node"]``), the trial works in a
        folder of this node, its checkpoint arrives as an archive (``checkpoint_data``) and
        the checkpoints it reports go back as archives: no shared file system is needed.
        """
        async with self._lock:
            await self._stop()
            self.remote = _remote(spec.get("driver_node"))
            trial_dir = spec["trial_dir"]
            if self.remote:
                trial_dir = os.path.join(tempfile.gettempdir(), f"sluice-tune-{os.getuid()}",
                                         spec.get("experiment_name", ""),
                                         os.path.basename(trial_dir))
            os.makedirs(trial_dir, exist_ok=True)
            path = spec.get("checkpoint")
            if path and self.remote and spec.get("checkpoint_data") is not None:
                path = unpack(spec["checkpoint_data"],
                              os.path.join(trial_dir, os.path.basename(path)))
            checkpoint = Checkpoint(path) if path else None
            context = TuneContext(spec["trial_id"], spec["trial_name"], trial_dir,
                                  spec.get("experiment_name", ""), spec.get("resources", {}))
            self._clock = _Clock(spec)
            self._checkpoints = _Checkpoints(trial_dir, int(spec.get("checkpoint_index", 0)),
                                             self.remote)
            self._last_checkpoint = path
            try:
                if self.is_class:
                    return self._start_class(spec, context, checkpoint)
                return await self._start_function(spec, context, checkpoint)
            except Exception as exc:  # noqa: BLE001 - the trial's error, reported
                return error_event(exc)

    async def next(self, until: int | None = None) -> dict[str, Any]:
        """Let the trial run to its next event; with ``until``, a function trainable's
        results before iteration ``until`` do not wait (the scheduler said it decides
        nothing before it): those made meanwhile come back together."""
        async with self._lock:
            if self.is_class:
                return self._step()
            session = self._session
            if session is None:
                return {"kind": "error", "error": "no trial runs on this actor",
                        "exception": None}
            return await session.take(until)

    async def stop(self) -> bool:
        """End the running trial (if any); False if a function trainable would not leave
        (busy outside ``tune.report``): the actor should then be replaced."""
        async with self._lock:
            return await self._stop()

    async def _stop(self) -> bool:
        left = True
        session, thread = self._session, self._thread
        if session is not None and thread is not None and thread.is_alive():
            session.stopping = True
            session.go.release()
            await asyncio.get_running_loop().run_in_executor(None, thread.join, STOP_WAIT_S)
            left = not thread.is_alive()
        self._session = self._thread = None
        if self._instance is not None:
            try:
                self._instance.cleanup()
            finally:
                self._instance = None
        set_session(None)
        return left

    async def save(self) -> dict[str, Any]:
        """Checkpoint the running trial now (a class trainable; a function trainable's is
        the latest it reported): ``{"checkpoint": folder or None}`` (and its archive, on
        another node than the driver's)."""
        async with self._lock:
            return self._save_now()

    def _save_now(self) -> dict[str, Any]:
        path = self._last_checkpoint
        if self._instance is not None and self._checkpoints is not None:
            path = save_to_checkpoint(self._instance, self._checkpoints.next_dir()).path
            self._last_checkpoint = path
        elif self._session is not None and self._session.checkpoint is not None:
            path = self._session.checkpoint.path
        if self._checkpoints is None:
            return {"checkpoint": path}
        return self._checkpoints.event(path)

    # -- function trainables --------------------------------------------------------------
    async def _start_function(self, spec: dict[str, Any], context: TuneContext,
                              checkpoint: Checkpoint | None) -> dict[str, Any]:
        assert self._clock is not None and self._checkpoints is not None
        session = _FunctionSession(context, checkpoint, self._clock, self._checkpoints,
                                   buffered=bool(spec.get("buffered")))
        config = spec["config"]
        if self._parameters is None and self.refs:  # a get from the store: off the loop
            await asyncio.get_running_loop().run_in_executor(None, lambda: self.parameters)
        parameters = self.parameters

        def run() -> None:
            set_session(session)
            try:
                self.trainable(config, **parameters)
            except StopTrial:
                return
            except BaseException as exc:  # noqa: BLE001 - the trial's error, reported
                session.put(error_event(exc))
                return
            session.put({"kind": "done"})

        self._session = session
        self._thread = threading.Thread(target=run, daemon=True,
                                        name=f"sluice-trial-{spec['trial_id']}")
        self._thread.start()
        return await session.first()

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
            saved: dict[str, Any] = {"checkpoint": None}
            every = self.checkpoint_frequency
            if (every and clock.iteration % every == 0) or (
                    result.get("done") and self.checkpoint_at_end):
                saved = self._save_now()
        except Exception as exc:  # noqa: BLE001 - the trial's error, reported
            return error_event(exc)
        return {"kind": "result", "metrics": result, "text": dumps(result), **saved}
