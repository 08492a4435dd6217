"""``python -m benchmarks``: the side-by-side suite (see benchmarks/runner.py)."""

import sys

from benchmarks.runner import main

sys.exit(main())
