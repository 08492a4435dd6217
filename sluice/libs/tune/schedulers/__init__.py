"""Trial schedulers (``sluice.tune.schedulers``): Ray Tune's names."""

from sluice.libs.tune.schedulers.async_hyperband import ASHAScheduler, AsyncHyperBandScheduler
from sluice.libs.tune.schedulers.hyperband import HyperBandScheduler
from sluice.libs.tune.schedulers.median_stopping_rule import MedianStoppingRule
from sluice.libs.tune.schedulers.pbt import PopulationBasedTraining
from sluice.libs.tune.schedulers.trial_scheduler import FIFOScheduler, TrialScheduler

__all__ = ["ASHAScheduler", "AsyncHyperBandScheduler", "FIFOScheduler", "HyperBandScheduler",
           "MedianStoppingRule", "PopulationBasedTraining", "TrialScheduler"]
