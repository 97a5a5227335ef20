"""``pendra_workers{state}`` for /metrics: the fleet as the database has it, read at scrape time."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from apps.workers.selectors import worker_state_counts


class WorkerStateCollector(Collector):
    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily("pendra_workers", "GPU workers by state", labels=["state"])
        for state, count in sorted(worker_state_counts().items()):
            family.add_metric([state], count)
        yield family


worker_states = WorkerStateCollector()
