"""Ray's ``ray.util`` surface: ``sluice.util.scheduling_strategies``, ..."""
