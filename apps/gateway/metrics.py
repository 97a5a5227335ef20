"""The gateway's Prometheus metrics, taken once per request when it is finished.

Definitions live in :mod:`pendra_console.metrics`. In multiprocess mode every write to a
metric is a locked write into a memory-mapped file (1.5 to 4 µs each; a request touches six),
so a request only adds to counts in this process's memory (about 1 µs), and the counts are
written to the metrics a quarter of a second later, one write per label set and bucket
whatever the number of requests. A scrape therefore sees a request within
``FLUSH_SECONDS``. The plan comes from the process's TTL plan cache (the request's admission
just loaded it), so metering reads no table. :func:`apps.gateway.metering.finish` calls
``meter.observe`` once the response is over.
"""

from __future__ import annotations

import asyncio
import bisect
from collections import defaultdict
from typing import TYPE_CHECKING, Protocol

from apps.plans.selectors import plan_cache
from pendra_console.metrics import FAILOVERS, RATE_LIMITED, REQUEST_SECONDS, REQUESTS, TTFB_SECONDS, UPSTREAM_ATTEMPTS

if TYPE_CHECKING:
    from prometheus_client import Histogram

    from apps.gateway.exchange import Exchange

FLUSH_SECONDS = 0.25
_BUCKET_HEADER = b"x-ratelimit-bucket"


class _Value(Protocol):
    """One stored number of a metric child (prometheus-client's ``ValueClass``, untyped there)."""

    def inc(self, amount: float) -> None: ...


class _HistogramCounts:
    """Observations of one histogram child, bucketed here and written in one go."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: list[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.total = 0.0

    def add(self, value: float) -> None:
        self.total += value
        self.counts[bisect.bisect_left(self.bounds, value)] += 1


class Meter:
    def __init__(self) -> None:
        self.requests: defaultdict[tuple[str, str, str, str], int] = defaultdict(int)
        self.attempts: defaultdict[str, int] = defaultdict(int)
        self.failovers: defaultdict[str, int] = defaultdict(int)
        self.refusals: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.latency: dict[str, _HistogramCounts] = {}
        self.ttfb: dict[str, _HistogramCounts] = {}
        self.flush_scheduled = False

    def observe(self, exchange: Exchange, status: int, finished: float) -> None:
        route = exchange.route
        family = route.kind if route is not None else ("models" if exchange.path.startswith("/v1/models") else "other")
        principal = exchange.principal
        org_id = principal.org_id if principal is not None else None
        # peek, not get: a label must never cost a table read, and a plan that expired since
        # admission (a long stream) is still the one the request was admitted under.
        limits = plan_cache.peek(org_id) if org_id else None
        plan = limits.slug if limits is not None else ""
        worker = exchange.worker
        self.requests[(family, str(status), plan, worker.name if worker is not None else "")] += 1
        _counts(self.latency, REQUEST_SECONDS, family).add(finished - exchange.started)
        if exchange.first_byte_at is not None:
            _counts(self.ttfb, TTFB_SECONDS, family).add(exchange.first_byte_at - exchange.started)
        if exchange.attempts:
            self.attempts[family] += exchange.attempts
            if exchange.attempts > 1:
                self.failovers[family] += exchange.attempts - 1
        if status == 429:
            bucket = next((value.decode() for name, value in exchange.extra_headers if name == _BUCKET_HEADER), "")
            self.refusals[(bucket, plan)] += 1
        if not self.flush_scheduled:
            self.flush_scheduled = True
            try:
                asyncio.get_running_loop().call_later(FLUSH_SECONDS, self.flush)
            except RuntimeError:  # no event loop (a synchronous caller): write now
                self.flush()

    def flush(self) -> None:
        self.flush_scheduled = False
        requests, self.requests = self.requests, defaultdict(int)
        attempts, self.attempts = self.attempts, defaultdict(int)
        failovers, self.failovers = self.failovers, defaultdict(int)
        refusals, self.refusals = self.refusals, defaultdict(int)
        latency, self.latency = self.latency, {}
        ttfb, self.ttfb = self.ttfb, {}
        for labels, count in requests.items():
            REQUESTS.labels(*labels).inc(count)
        for family, count in attempts.items():
            UPSTREAM_ATTEMPTS.labels(family).inc(count)
        for family, count in failovers.items():
            FAILOVERS.labels(family).inc(count)
        for (bucket, plan), count in refusals.items():
            RATE_LIMITED.labels(bucket, plan).inc(count)
        for histogram, batch in ((REQUEST_SECONDS, latency), (TTFB_SECONDS, ttfb)):
            for family, counts in batch.items():
                total, buckets = _histogram_values(histogram.labels(family))
                total.inc(counts.total)
                for index, count in enumerate(counts.counts):
                    if count:
                        buckets[index].inc(count)


def _histogram_values(child: Histogram) -> tuple[_Value, list[_Value]]:
    """A histogram child's stored sum and per-bucket counts.

    prometheus-client (pinned in requirements.txt) keeps a child as its sum and one value per
    bucket (the first bound not below the observation), and has no public way to add n
    observations at once; adding to each value directly is what n ``observe()`` calls would
    have done. test_metrics checks the resulting counts, so a change of that layout on an
    upgrade fails there.
    """
    total: _Value = child._sum
    buckets: list[_Value] = child._buckets
    return total, buckets


def _counts(batch: dict[str, _HistogramCounts], histogram: Histogram, family: str) -> _HistogramCounts:
    counts = batch.get(family)
    if counts is None:
        bounds: list[float] = histogram._upper_bounds  # sorted, ending in +Inf
        counts = batch[family] = _HistogramCounts(bounds)
    return counts


meter = Meter()
