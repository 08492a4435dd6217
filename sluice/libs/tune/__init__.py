"""sluice.tune: hyperparameter search with Ray Tune's API (``from sluice import tune``).

An experiment is a graph template (a trial actor of the trainable and its start call)
compiled like any graph; a controller loop in the driver asks the searcher for configs and
the scheduler for decisions, runs trials on (reusable) trial actors, and keeps the
experiment's state in SQLite under ``storage_path/name``.
"""

from sluice.libs.tune import dashboard_page  # noqa: F401  (registers the dashboard page)
from sluice.libs.tune import schedulers, search
from sluice.libs.tune.checkpoint import Checkpoint
from sluice.libs.tune.config import CheckpointConfig, FailureConfig, RunConfig, TuneConfig
from sluice.libs.tune.controller import TuneError
from sluice.libs.tune.result_grid import Result, ResultGrid
from sluice.libs.tune.search_space import (
    choice,
    grid_search,
    lograndint,
    loguniform,
    qlograndint,
    qloguniform,
    qrandint,
    qrandn,
    quniform,
    randint,
    randn,
    sample_from,
    uniform,
)
from sluice.libs.tune.session import TuneContext, get_checkpoint, get_context, report
from sluice.libs.tune.trainable import Trainable, with_parameters, with_resources
from sluice.libs.tune.tuner import Tuner

__all__ = ["Checkpoint", "CheckpointConfig", "FailureConfig", "Result", "ResultGrid",
           "RunConfig", "Trainable", "TuneConfig", "TuneContext", "TuneError", "Tuner",
           "choice", "get_checkpoint", "get_context", "grid_search", "lograndint", "loguniform",
           "qlograndint", "qloguniform", "qrandint", "qrandn", "quniform", "randint", "randn",
           "report", "sample_from", "schedulers", "search", "uniform", "with_parameters",
           "with_resources"]
