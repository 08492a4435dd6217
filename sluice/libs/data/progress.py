"""Per-stage statistics of one Dataset execution, and the progress bars that show them live."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sluice.compiler.views import format_bytes


@dataclass
class StageStats:
    """What one stage did: blocks and rows out, bytes out, time in tasks and on the clock."""

    name: str
    blocks: int = 0
    rows: int = 0
    bytes: int = 0
    task_s: float = 0.0           # summed wall time of the stage's tasks, in workers
    started: float | None = None  # driver clock: first task submitted
    finished: float | None = None  # driver clock: last block seen done
    columns: tuple | None = None   # (name, type) of the first non-empty block: the others must match

    @property
    def wall_s(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or time.perf_counter()) - self.started

    def line(self) -> str:
        return (f"{self.name}: {self.blocks} blocks, {self.rows:,} rows, {format_bytes(self.bytes)}; "
                f"wall {self.wall_s * 1e3:.1f} ms, in tasks {self.task_s * 1e3:.1f} ms")


@dataclass
class ExecutionStats:
    """Every stage of one run, in plan order, plus the run's own wall time."""

    stages: dict[str, StageStats] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    finished: float | None = None
    metadata_only: str = ""       # set when the answer came from metadata, with no task run

    def summary(self) -> str:
        total = ((self.finished or time.perf_counter()) - self.started) * 1e3
        lines = [f"Dataset execution: {total:.1f} ms"]
        if self.metadata_only:
            lines.append(f"  answered from metadata ({self.metadata_only}); no block was read")
        for i, stage in enumerate(self.stages.values(), start=1):
            lines.append(f"  Stage {i} {stage.line()}")
        return "\n".join(lines)


class ProgressBars:
    """One tqdm bar per stage (rows and blocks done); nothing when disabled."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._bars: dict[str, Any] = {}

    def update(self, key: str, stats: StageStats) -> None:
        if not self.enabled:
            return
        bar = self._bars.get(key)
        if bar is None:
            from tqdm.auto import tqdm

            bar = self._bars[key] = tqdm(desc=stats.name[:40], unit=" rows", position=len(self._bars),
                                         leave=True, dynamic_ncols=True)
        bar.n = stats.rows
        bar.set_postfix_str(f"{stats.blocks} blocks", refresh=True)

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()
