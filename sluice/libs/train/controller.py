"""The driver's side of a training run: the gang, its reports, its failures.

Each attempt reserves a placement group of one bundle per rank (``ScalingConfig``'s
strategy), makes the rank actors in it (from the template's factories), takes rank 0's
address as the rendezvous, and starts every rank. Then it takes the ranks' events: a
*round* is one report from every rank (``train.report`` is a barrier: no rank goes on
until all reported and the round is recorded), rank 0's metrics kept, the ranks'
checkpoint files merged into ``storage_path/name/checkpoint_NNNNNN`` (through the object
store from a rank on another node) and old ones dropped by ``CheckpointConfig``.

A rank that raises, or whose actor dies (its pending ``next()`` fails at once, so a peer
stuck in a collective with it is not waited for), ends the attempt: every rank's actor is
killed and the placement group removed; the run restarts from the latest checkpoint
while ``FailureConfig(max_failures)`` allows (-1: always), else ``fit()`` raises
:class:`~sluice.libs.train.errors.WorkerGroupError` with each failed rank's exception.
Ranks that report a different number of times fail at once, naming them.
"""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import tempfile
from typing import Any, Callable

from sluice.libs.train.config import ScalingConfig, bundles
from sluice.libs.train.errors import WorkerGroupError
from sluice.libs.tune.checkpoint import Checkpoint, pack, retention_victims, unpack
from sluice.libs.tune.config import CheckpointConfig, FailureConfig

logger = logging.getLogger(__name__)

WAIT_S = 1.0
"""How long one wait for the ranks' events lasts (the loop then checks again)."""


class _Failed(Exception):  # noqa: N818 - internal: the attempt ended with failed ranks
    def __init__(self, failures: dict[int, BaseException], texts: dict[int, str]):
        super().__init__(texts)
        self.failures = failures
        self.texts = texts


class _Gang:
    """One attempt's placement group and rank actors."""

    def __init__(self, group: Any, actors: list[Any]):
        self.group = group
        self.actors = actors
        self.helpers: list[Any] = []  # other actors of the attempt (dataset splits)
        self.nodes: list[str] = []

    def stop(self) -> None:
        """Kill every rank (a rank blocked in a collective cannot leave by itself) and free
        the reservation."""
        import sluice
        from sluice.util.placement_group import remove_placement_group

        for actor in self.actors + self.helpers:
            try:
                sluice.kill(actor)
            except Exception:  # noqa: BLE001 - already gone
                pass
        try:
            remove_placement_group(self.group)
        except Exception:  # noqa: BLE001 - already removed
            pass


class TrainController:
    """Runs the gang until the loop ends on every rank (see the module's docstring)."""

    def __init__(self, *, factories: list[Callable[..., Any]], scaling: ScalingConfig,
                 run_path: str, experiment_name: str, config: dict[str, Any] | None,
                 checkpoint_config: CheckpointConfig | None,
                 failure_config: FailureConfig | None,
                 make_shards: Callable[[], tuple[list[dict[str, Any]], list[Any]]] | None = None,
                 resume_from: Checkpoint | None = None, trial: dict[str, Any] | None = None,
                 on_report: Callable[[dict[str, Any], Checkpoint | None], None] | None = None):
        self.factories = factories
        self.scaling = scaling
        self.run_path = run_path
        self.experiment_name = experiment_name
        self.config = config
        self.checkpoint_config = checkpoint_config or CheckpointConfig()
        self.failure_config = failure_config or FailureConfig()
        self.make_shards = make_shards  # each attempt's dataset shards per rank
        self.trial = trial or {}
        self.on_report = on_report
        self.history: list[dict[str, Any]] = []  # rank 0's metrics, every round
        self.kept: list[tuple[str, dict]] = []  # persisted checkpoints, oldest first
        self.latest: Checkpoint | None = resume_from
        self.next_index = 0
        self.failures = 0
        self.attempts = 0
        self.driver_node: str | None = None

    # -- the run --------------------------------------------------------------------------
    def run(self) -> None:
        import sluice

        self.driver_node = sluice.get_runtime_context().get_node_id()
        os.makedirs(self.run_path, exist_ok=True)
        while True:
            try:
                gang = self._start()
            except _Failed as failed:  # a rank died (or could not be made) as it started
                self._failed(failed)
                continue
            try:
                self._drive(gang)
                return
            except _Failed as failed:
                self._failed(failed)
            finally:
                gang.stop()

    def _failed(self, failed: _Failed) -> None:
        """Count a failed attempt: raise once ``max_failures`` is spent, else say that the
        gang restarts."""
        self.failures += 1
        limit = self.failure_config.max_failures
        if limit != -1 and self.failures > limit:
            message = "\n".join(f"[rank {r}] {t}" for r, t in sorted(failed.texts.items()))
            first = failed.failures[min(failed.failures)]
            raise WorkerGroupError(message, failed.failures) from first
        detail = "; ".join(f"rank {r}: {(t.strip().splitlines() or ['?'])[-1]}"
                           for r, t in sorted(failed.texts.items()))
        logger.warning("training failed (%s); restarting the gang from %s (failure %d of %s)",
                       detail, self.latest.path if self.latest else "the start",
                       self.failures, "unlimited" if limit == -1 else limit)

    def _start(self) -> _Gang:
        import sluice
        from sluice.util.placement_group import placement_group
        from sluice.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        self.attempts += 1
        scaling = self.scaling
        shards: list[dict[str, Any]] = [{} for _ in range(scaling.num_workers)]
        helpers: list[Any] = []
        if self.make_shards is not None:  # (before the gang holds its CPUs: see _shards)
            shards, helpers = self.make_shards()
        group = placement_group(bundles(scaling), strategy=scaling.placement_strategy)
        actors: list[Any] = []
        gang = _Gang(group, actors)
        gang.helpers = helpers
        try:
            sluice.get(group.ready())
            resources = scaling.worker_resources()
            for rank, make in enumerate(self.factories):
                strategy = PlacementGroupSchedulingStrategy(group, rank)
                actors.append(make(resources, strategy))
            places = _per_rank([a.address.remote() for a in actors])
            gang.nodes = [node for _, _, node in places]
            master_addr, master_port, _ = places[0]
            node_order = list(dict.fromkeys(gang.nodes))  # node ranks by their first rank
            per_node = {node: [r for r, n in enumerate(gang.nodes) if n == node]
                        for node in node_order}
            specs = []
            for rank, node in enumerate(gang.nodes):
                remote = node != self.driver_node
                latest = self.latest.path if self.latest is not None else None
                specs.append({"world_rank": rank, "world_size": len(actors),
                              "local_rank": per_node[node].index(rank),
                              "local_world_size": len(per_node[node]),
                              "node_rank": node_order.index(node),
                              "master_addr": master_addr, "master_port": master_port,
                              "experiment_name": self.experiment_name,
                              "trial_name": self.trial.get("trial_name"),
                              "trial_id": self.trial.get("trial_id"),
                              "config": self.config,
                              "remote": remote, "checkpoint": latest,
                              "use_gpu": self.scaling.use_gpu,
                              "checkpoint_data": pack(latest) if remote and latest else None})
            _per_rank([a.start.remote(spec, shards[rank])
                       for rank, (a, spec) in enumerate(zip(actors, specs))])
        except BaseException:
            gang.stop()
            raise
        return gang

    def _drive(self, gang: _Gang) -> None:
        """Take the ranks' events round by round until every rank's loop returned."""
        import sluice

        n = len(gang.actors)
        pending = {a.next.remote(): rank for rank, a in enumerate(gang.actors)}
        events: dict[int, dict[str, Any]] = {}
        rounds = 0  # this attempt's
        while True:
            ready, _ = sluice.wait(list(pending), num_returns=1, timeout=WAIT_S)
            if ready:  # and whatever else is ready now
                ready, _ = sluice.wait(list(pending), num_returns=len(pending), timeout=0)
            failures: dict[int, BaseException] = {}
            texts: dict[int, str] = {}
            for ref in ready:
                rank = pending.pop(ref)
                try:
                    event = sluice.get(ref)
                except Exception as exc:  # noqa: BLE001 - the rank's actor died
                    failures[rank], texts[rank] = exc, f"its process died: {exc}"
                    continue
                if event["kind"] == "error":
                    failures[rank] = _exception(event)
                    texts[rank] = event["error"]
                else:
                    events[rank] = event
            if failures:
                raise _Failed(failures, texts)
            if len(events) < n:
                self._check_counts(events, rounds)
                continue
            kinds = {e["kind"] for e in events.values()}
            if kinds == {"done"}:
                return
            self._check_counts(events, rounds)
            self._record(events)
            rounds += 1
            events = {}
            pending = {a.next.remote(): rank for rank, a in enumerate(gang.actors)}

    def _check_counts(self, events: dict[int, dict[str, Any]], reported: int) -> None:
        """Ranks whose loops returned while others wait in a report: they reported a
        different number of times, and the ones waiting would wait for ever."""
        done = sorted(r for r, e in events.items() if e["kind"] == "done")
        waiting = sorted(r for r, e in events.items() if e["kind"] == "report")
        if not done or not waiting:
            return
        message = (f"ranks {waiting} called train.report() a {_nth(reported + 1)} time, but "
                   f"ranks {done} returned after {reported} report(s): every rank must "
                   f"report the same number of times (train.report is a barrier across "
                   f"ranks)")
        error = RuntimeError(message)
        raise WorkerGroupError(message, {r: error for r in done + waiting})

    # -- rounds and checkpoints -----------------------------------------------------------
    def _record(self, events: dict[int, dict[str, Any]]) -> None:
        metrics = dict(events[0]["metrics"])
        self.history.append(metrics)
        with_files = [(rank, e) for rank, e in sorted(events.items()) if e.get("checkpoint")]
        checkpoint = None
        if with_files:
            target = os.path.join(self.run_path, f"checkpoint_{self.next_index:06d}")
            self.next_index += 1
            for _, event in with_files:
                self._merge(event, target)
            checkpoint = Checkpoint(target)
            self.latest = checkpoint
            self.kept.append((target, metrics))
            config = self.checkpoint_config
            for victim in retention_victims(self.kept, target, config.num_to_keep,
                                            config.checkpoint_score_attribute,
                                            config.checkpoint_score_order):
                self.kept.remove(victim)
                shutil.rmtree(victim[0], ignore_errors=True)
        if self.on_report is not None:
            self.on_report(metrics, checkpoint)

    def _merge(self, event: dict[str, Any], target: str) -> None:
        """Copy one rank's checkpoint files into ``target`` (the rank waits meanwhile)."""
        data = event.get("checkpoint_data")
        if data is None:
            shutil.copytree(event["checkpoint"], target, dirs_exist_ok=True)
            return
        landed = unpack(data, tempfile.mkdtemp(prefix="sluice-train-"))
        try:
            shutil.copytree(landed, target, dirs_exist_ok=True)
        finally:
            shutil.rmtree(landed, ignore_errors=True)


def _per_rank(refs: list[Any]) -> list[Any]:
    """The values of one call per rank; a rank whose actor died (or could not be made)
    fails the attempt (:class:`_Failed`), as it would later on."""
    import sluice
    from sluice.exceptions import ActorError

    values: list[Any] = []
    failures: dict[int, BaseException] = {}
    texts: dict[int, str] = {}
    for rank, ref in enumerate(refs):
        try:
            values.append(sluice.get(ref))
        except ActorError as exc:
            failures[rank], texts[rank] = exc, f"it could not start: {exc}"
    if failures:
        raise _Failed(failures, texts)
    return values


def _exception(event: dict[str, Any]) -> BaseException:
    blob = event.get("exception")
    if blob is not None:
        try:
            exc = pickle.loads(blob)
            if isinstance(exc, BaseException):
                return exc
        except Exception:  # noqa: BLE001 - the text still says what happened
            pass
    return RuntimeError(event.get("error", "the rank failed"))


def _nth(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
