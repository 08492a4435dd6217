"""``/metrics``: the runtime's and the users' metrics in Prometheus' text format (with
prometheus_client), for Prometheus to scrape.

The runtime's come from the state source when scraped (nothing is counted per task for
them beyond the ended-task totals); each Plan this driver ran adds its stages' figures
from its latest run (``sluice_plan_stage_*``, labelled by plan number and stage).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sluice.compiler import history
from sluice.dashboard.pages import Source


def plan_rows(source: Source) -> list[dict[str, Any]]:
    """Per-stage figures of every recorded Plan's latest run, as metric rows."""
    from sluice.dashboard.plans import stage_figures

    records = history.records()
    if not records:
        return []
    tasks, objects = source.rows("recent_tasks"), source.rows("objects")
    out: list[dict[str, Any]] = []
    for record in records:
        out.append({"name": "sluice_plan_runs_total", "kind": "counter",
                    "description": "Runs of each recorded Plan",
                    "labels": {"plan": str(record.number)}, "value": record.total_runs})
        if not record.runs:
            continue
        figures = stage_figures(record, record.runs[-1], tasks, objects)
        for number, stage in enumerate(record.plan.stages, start=1):
            f = figures.get(stage.id)
            if f is None:
                continue
            labels = {"plan": str(record.number), "stage": f"{number}:{stage.name}"}
            for name, key, what in (
                    ("sluice_plan_stage_tasks", "tasks", "Tasks of the stage in the latest run"),
                    ("sluice_plan_stage_failed_tasks", "failed", "Its failed tasks"),
                    ("sluice_plan_stage_task_seconds", "task_time_s", "Its tasks' run time"),
                    ("sluice_plan_stage_wall_seconds", "wall_s", "First start to last end"),
                    ("sluice_plan_stage_output_bytes", "bytes", "Bytes its tasks made")):
                out.append({"name": name, "kind": "gauge", "description": what,
                            "labels": labels, "value": f[key] or 0})
    return out


class _Collector:
    """prometheus_client collector over metric rows (see ``sluice.executor.state``)."""

    def __init__(self, rows: list[dict[str, Any]]):
        self.rows = rows

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        makers = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily,
                  "histogram": HistogramMetricFamily}
        families: dict[str, Any] = {}
        keys: dict[str, list[str]] = {}
        for row in self.rows:
            name = row["name"]
            if name not in families:
                keys[name] = sorted(row["labels"])
                families[name] = makers[row["kind"]](name, row["description"] or name,
                                                     labels=keys[name])
            values = [str(row["labels"].get(k, "")) for k in keys[name]]
            if row["kind"] == "histogram":
                value = row["value"]
                buckets = [("+Inf" if bound == float("inf") else repr(float(bound)), count)
                           for bound, count in value["buckets"]]
                families[name].add_metric(values, buckets, value["sum"])
            else:
                families[name].add_metric(values, float(row["value"]))
        yield from families.values()


def render(source: Source) -> bytes:
    """The Prometheus text of ``source``'s metrics and this driver's Plans."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(source.rows("metrics") + plan_rows(source)))
    return generate_latest(registry)
