"""Per-stage statistics of one Dataset execution, and the progress bars that show them live."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sluice.compiler.views import format_bytes


@dataclass
class StageStats:
    """What one stage did: blocks and rows out, rows in, bytes out, time in tasks and on the clock.

    ``rows_in`` counts the rows the stage's tasks took in: for a stage that reads a
    source, the rows read (all the rows of the files it went through, also those a
    filter pushed into the read dropped); else the rows of its input blocks. A fused
    stage runs several ops per task: ``op_names`` are theirs and ``op_rows`` the rows
    each one passed on, so a filter inside a stage shows what it kept.
    """

    name: str
    blocks: int = 0
    rows: int = 0
    bytes: int = 0
    task_s: float = 0.0           # summed wall time of the stage's tasks, in workers
    started: float | None = None  # driver clock: first task submitted
    finished: float | None = None  # driver clock: last block seen done
    columns: tuple | None = None   # (name, type) of the first non-empty block: the others must match
    rows_in: int = 0
    reads: bool = False            # the stage reads a source: rows_in are the rows read
    op_names: tuple[str, ...] = ()
    op_rows: list[int] = field(default_factory=list)  # rows out of each op, summed over blocks
    total_in: int | None = None    # rows_in expected in all (from metadata), when known
    done: bool = False             # every block of the stage is in
    first_label: str | None = None  # what the block that set ``columns`` was read from

    @property
    def wall_s(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or time.perf_counter()) - self.started

    def add(self, rows_in: int, op_rows: tuple[int, ...]) -> None:
        """Count one block's input rows and the rows each op of the stage passed on."""
        self.rows_in += rows_in
        if len(self.op_rows) < len(op_rows):
            self.op_rows.extend([0] * (len(op_rows) - len(self.op_rows)))
        for i, n in enumerate(op_rows):
            self.op_rows[i] += n

    def line(self) -> str:
        taken = f"{self.rows_in:,} rows read" if self.reads else f"{self.rows_in:,} rows in"
        return (f"{self.name}: {self.blocks} blocks, {self.rows:,} rows, {format_bytes(self.bytes)}; "
                f"{taken}; wall {self.wall_s * 1e3:.1f} ms, in tasks {self.task_s * 1e3:.1f} ms")

    def flow(self) -> str:
        """The rows through each op of a fused stage (``""`` for a stage of one op)."""
        if len(self.op_names) < 2 or len(self.op_rows) != len(self.op_names):
            return ""
        start = f"{self.rows_in:,} {'read' if self.reads else 'in'}"
        return "rows: " + " -> ".join([start, *(f"{name} {n:,}" for name, n in zip(self.op_names, self.op_rows))])


@dataclass
class ExecutionStats:
    """Every stage of one run, in plan order, plus the run's own wall time."""

    stages: dict[str, StageStats] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    finished: float | None = None
    metadata_only: str = ""       # set when the answer came from metadata, with no task run

    @property
    def rows_read(self) -> int:
        """Rows read from every source of the run."""
        return sum(s.rows_in for s in self.stages.values() if s.reads)

    def summary(self) -> str:
        total = ((self.finished or time.perf_counter()) - self.started) * 1e3
        lines = [f"Dataset execution: {total:.1f} ms"]
        if self.metadata_only:
            lines.append(f"  answered from metadata ({self.metadata_only}); no block was read")
        elif any(s.reads for s in self.stages.values()):
            lines[0] += f"; {self.rows_read:,} rows read"
        for i, stage in enumerate(self.stages.values(), start=1):
            lines.append(f"  Stage {i} {stage.line()}")
            flow = stage.flow()
            if flow:
                lines.append(f"    {flow}")
        return "\n".join(lines)


class ProgressBars:
    """One tqdm bar per stage; nothing when disabled.

    A bar counts the rows the stage took in (read, for a read) against the total when
    it is known: from metadata for a read (Parquet footers), or once the stages
    before it finished, their rows out. tqdm shows the rate and, with a total, the
    time left. The rows and blocks out follow on the bar.
    """

    def __init__(self, enabled: bool, order: tuple[str, ...] = ()):
        self.enabled = enabled
        self._bars: dict[str, Any] = {}
        self._lines = {key: i for i, key in enumerate(order)}  # a stage's line: its place in the plan

    def update(self, key: str, stats: StageStats) -> None:
        """Show ``stats`` on stage ``key``'s bar (made on its first update)."""
        if not self.enabled:
            return
        bar = self._bars.get(key)
        if bar is None:
            from tqdm.auto import tqdm

            line = self._lines.get(key, len(self._lines) + len(self._bars))
            bar = self._bars[key] = tqdm(desc=stats.name[:40], unit=" rows", total=stats.total_in,
                                         position=line, leave=True, dynamic_ncols=True)
        if stats.total_in is not None and bar.total != stats.total_in:
            bar.total = stats.total_in
        bar.n = stats.rows_in
        bar.set_postfix_str(f"{stats.rows:,} rows out, {stats.blocks} blocks", refresh=True)

    def close(self) -> None:
        """Close every bar (each stays on screen with its last state)."""
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()
