"""Prometheus metrics: definitions, the multiprocess directory, and the protected ``/metrics`` view.

Every uvicorn process (and every Celery pool process) counts into memory-mapped files in
``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode), so one scrape of any
process reports the whole node. ``python -m pendra_console.serving`` prepares that
directory before the processes start (``serving.prepare_multiprocess_dir``); without it (a
single in-process server, the tests' live server) the process's own registry is reported.

``/metrics`` answers a caller whose address is in ``PENDRA_METRICS_ALLOWED_IPS`` (loopback
by default) or who presents ``Authorization: Bearer <PENDRA_METRICS_TOKEN>``; anyone else
gets a 404, so its existence is not advertised.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import time
from collections.abc import Callable, Iterable
from functools import cache

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Seconds. Latency spans a cached /v1/models (sub-millisecond) to a long image generation.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

REQUESTS = Counter(
    "pendra_requests",
    "Requests answered, by route family (chat, embeddings, images, audio, models, admin_api, console, ...), "
    "status, the org's plan and the GPU worker that served it",
    ["route", "status", "plan", "worker"],
)
REQUEST_SECONDS = Histogram(
    "pendra_request_duration_seconds", "Time from request to the last byte sent", ["route"], buckets=_LATENCY_BUCKETS
)
TTFB_SECONDS = Histogram(
    "pendra_time_to_first_byte_seconds",
    "/v1: time from request to the worker's first byte reaching the client",
    ["route"],
    buckets=_LATENCY_BUCKETS,
)
UPSTREAM_ATTEMPTS = Counter(
    "pendra_upstream_attempts", "/v1: requests sent to GPU workers, retries included", ["route"]
)
FAILOVERS = Counter("pendra_upstream_failovers", "/v1: attempts that moved on to another worker", ["route"])
RATE_LIMITED = Counter(
    "pendra_rate_limit_refusals", "429 answers, by rate-limit bucket and the org's plan", ["bucket", "plan"]
)
RECORD_BACKLOG = Gauge(
    "pendra_request_record_backlog",
    "Request and usage records waiting to be written, summed over live processes",
    multiprocess_mode="livesum",
)
CELERY_TASKS = Counter("pendra_celery_tasks", "Celery tasks finished, by task name and outcome", ["task", "outcome"])
CELERY_TASK_SECONDS = Histogram(
    "pendra_celery_task_duration_seconds",
    "Celery task run time",
    ["task"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)


# --- what the scraping process reads for everyone ----------------------------------------

# Collectors that read shared state at scrape time (e.g. the fleet's states from the
# database); the domain apps register theirs in AppConfig.ready().
_scrape_collectors: list[Collector] = []


def register_scrape_collector(collector: Collector) -> None:
    if collector not in _scrape_collectors:
        _scrape_collectors.append(collector)


def scrape_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        # prometheus-client leaves this constructor unannotated.
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_ThisProcess())
    for collector in _scrape_collectors:
        registry.register(collector)
    return registry


class _ThisProcess(Collector):
    """This process's own metrics (no multiprocess directory)."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


# --- who may scrape --------------------------------------------------------------------


@cache
def _allowed_networks() -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in settings.PENDRA_METRICS_ALLOWED_IPS)


def scrape_allowed(request: HttpRequest) -> bool:
    token = settings.PENDRA_METRICS_TOKEN
    if token:
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode()):
            return True
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in network for network in _allowed_networks())


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not scrape_allowed(request):
        return JsonResponse({"detail": "Not found."}, status=404)
    return HttpResponse(generate_latest(scrape_registry()), content_type=CONTENT_TYPE_LATEST)


# --- the Django side: admin API, console, probes ------------------------------------------


def route_family(path: str) -> str:
    if path.startswith("/api/"):
        return "admin_api"
    if path in {"/healthz", "/readyz", "/metrics"}:
        return "probes"
    if path.startswith("/static/"):
        return "static"
    return "console"


class MetricsMiddleware:
    """Counts and times every request Django serves (``/v1`` is counted by the gateway)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        if not settings.PENDRA_METRICS:
            return response
        family = route_family(request.path)
        REQUESTS.labels(family, str(response.status_code), "", "").inc()
        REQUEST_SECONDS.labels(family).observe(time.perf_counter() - started)
        return response
