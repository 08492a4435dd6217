"""sluice's benchmarks: ``core.py`` and ``graphs.py`` (sluice alone, best of 3) and the
side-by-side suite against Ray and Dask, ``python -m benchmarks``."""
