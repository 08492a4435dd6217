"""DataContext: the settings of sluice.data in this process (``DataContext.get_current()``)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import ClassVar


@dataclass
class DataContext:
    """Knobs for how Datasets execute; change them on ``DataContext.get_current()``.

    ``progress_bars``: one bar per stage (rows and blocks done) while a dataset runs,
    shown only when stderr is a terminal. ``target_max_block_size``: how big a block
    a read aims for. ``max_tasks_in_flight_per_stage``: tasks of one stage running or
    queued at once (None: twice the CPUs). ``memory_fraction``: share of the object
    store that blocks in flight may take (the rest is left to barriers and users).
    ``shuffle_partitions``: partitions of a shuffle (None: the number of CPUs).
    """

    progress_bars: bool = True
    target_max_block_size: int = 128 * 1024 * 1024
    max_tasks_in_flight_per_stage: int | None = None
    memory_fraction: float = 0.25
    shuffle_partitions: int | None = None

    _current: ClassVar[DataContext | None] = None

    @classmethod
    def get_current(cls) -> DataContext:
        """This process's context (made on first use)."""
        if cls._current is None:
            cls._current = cls()
        return cls._current

    def show_progress(self) -> bool:
        """Whether bars are drawn now: asked for, and stderr is a terminal."""
        return self.progress_bars and sys.stderr.isatty()
