"""Search algorithms (``sluice.tune.search``): Ray Tune's names. ``OptunaSearch`` and
``HyperOptSearch`` live in ``sluice.tune.search.optuna`` and ``.hyperopt`` (extras)."""

from sluice.libs.tune.search.basic_variant import BasicVariantGenerator
from sluice.libs.tune.search.limiter import ConcurrencyLimiter, Repeater
from sluice.libs.tune.search.searcher import Searcher

SearchAlgorithm = Searcher  # Ray's other base; one interface here

__all__ = ["BasicVariantGenerator", "ConcurrencyLimiter", "Repeater", "SearchAlgorithm",
           "Searcher"]
