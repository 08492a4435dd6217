"""sluice.util.metrics from the driver, tasks and actors, and the runtime's own metrics,
scraped in Prometheus' text format from the dashboard's /metrics."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

import sluice
import sluice.dashboard
from sluice.util.metrics import Counter, Gauge, Histogram
from tests.polling import until


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    sluice.init(num_cpus=2, include_dashboard=True, dashboard_port=0)
    dashboard = sluice.dashboard.current()
    assert dashboard is not None
    yield dashboard.url
    sluice.shutdown()


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """Every sample: (name, sorted labels) -> value."""
    with urllib.request.urlopen(url + "/metrics", timeout=30) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@sluice.remote
def read_rows(table: str, n: int) -> int:
    Counter("rows_read", "rows read", tag_keys=("table",)).inc(n, tags={"table": table})
    latency = Histogram("fetch_seconds", "fetch time", boundaries=[0.1, 1.0, 10.0])
    for value in (0.05, 0.5, 0.5, 50.0):
        latency.observe(value)
    return n


@sluice.remote
class Queue:
    def __init__(self):
        self.depth = Gauge("queue_depth", "items waiting", tag_keys=("queue",))
        self.depth.set_default_tags({"queue": "main"})

    def resize(self, n):
        self.depth.set(n)
        return n


def test_user_metrics_from_every_process_add_up(url: str) -> None:
    assert sum(sluice.get([read_rows.remote("orders", 10) for _ in range(6)])) == 60
    sluice.get(read_rows.remote("users", 5))
    Counter("rows_read", "rows read", tag_keys=("table",)).inc(1, tags={"table": "orders"})
    queue = Queue.remote()
    sluice.get([queue.resize.remote(n) for n in (3, 9, 4)])
    samples = until(lambda: (lambda s: s if s.get(("queue_depth", (("queue", "main"),)))
                             == 4 and s.get(("rows_read_total", (("table", "users"),))) == 5
                             else None)(scrape(url)))
    assert samples[("rows_read_total", (("table", "orders"),))] == 61
    assert samples[("fetch_seconds_bucket", (("le", "0.1"),))] == 7      # cumulative buckets
    assert samples[("fetch_seconds_bucket", (("le", "1.0"),))] == 21
    assert samples[("fetch_seconds_bucket", (("le", "10.0"),))] == 21
    assert samples[("fetch_seconds_bucket", (("le", "+Inf"),))] == 28
    assert samples[("fetch_seconds_count", ())] == 28
    assert samples[("fetch_seconds_sum", ())] == pytest.approx(7 * 51.05)
    sluice.kill(queue)


@sluice.remote
def noop(i):
    return i


def test_the_runtimes_own_metrics(url: str) -> None:
    before = scrape(url)[("sluice_tasks_finished_total", ())]
    sluice.get([noop.remote(i) for i in range(25)])
    after = until(lambda: (lambda s: s if s[("sluice_tasks_finished_total", ())] >= before + 25
                           else None)(scrape(url)))
    assert after[("sluice_tasks_finished_total", ())] == before + 25
    assert after[("sluice_workers", ())] >= 2
    assert after[("sluice_node_alive", (("node", "local"),))] == 1
    assert after[("sluice_scheduling_latency_seconds", (("quantile", "0.5"),))] >= 0
    used_before = after[("sluice_object_store_used_bytes", (("node", "local"),))]
    big = sluice.put(np.ones(2_000_000))
    used = scrape(url)[("sluice_object_store_used_bytes", (("node", "local"),))]
    assert used >= used_before + 16_000_000
    del big


def test_bad_metrics_are_named(url: str) -> None:
    with pytest.raises(ValueError, match="metric name '9lives'"):
        Counter("9lives")
    with pytest.raises(ValueError, match="a counter only goes up"):
        Counter("ok_total_x").inc(-1)
    with pytest.raises(ValueError, match=r"tags \['colour'\] given to metric 'tagged'"):
        Counter("tagged", tag_keys=("table",)).inc(tags={"colour": "red"})
    with pytest.raises(ValueError, match=r"needs a value for tag\(s\) \['table'\]"):
        Gauge("tagged_gauge", tag_keys=("table",)).set(1)
    with pytest.raises(ValueError, match="boundaries=\\[1, 0.5\\] must be given"):
        Histogram("h", boundaries=[1, 0.5])
    with pytest.raises(TypeError, match="is not a number"):
        Gauge("g").set("high")
