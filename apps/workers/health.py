"""Health probes: ``GET /health`` then ``GET /v1/models`` on every non-disabled worker, concurrently.

Probes never call an inference endpoint, so checks spend no GPU time or tokens. The HTTP
part is async (one aiohttp session, a short timeout, no redirects followed: a redirect
could point anywhere, including addresses the URL validation refused); the results are
written through :func:`apps.workers.services.record_probe_result`.

Overlapping sweeps (a slow sweep still running when beat sends the next, or a task
delivered twice) are harmless: a sweep first *claims* each worker with a conditional
update of ``last_checked_at``, and a worker claimed less than half an interval ago is
left to whoever claimed it. Each result is then applied under a row lock.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aiohttp
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from apps.workers import selectors, services
from apps.workers.egress import worker_connector, worker_tls_context
from apps.workers.models import Worker

logger = logging.getLogger("pendra.workers.health")

MAX_MODELS_BODY = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ProbeResult:
    worker_id: str
    ok: bool
    latency_ms: float | None
    error: str = ""
    models: list[dict[str, str]] | None = None


@dataclass(slots=True)
class SweepSummary:
    probed: int = 0
    healthy: int = 0
    failed: int = 0
    skipped: int = 0  # claimed by an overlapping sweep
    errors: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "probed": self.probed,
            "healthy": self.healthy,
            "failed": self.failed,
            "skipped": self.skipped,
            "errors": dict(self.errors),
        }


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect: {exc.os_error.strerror or exc.os_error}"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:200]


def _parse_models(payload: Any) -> list[dict[str, str]] | None:
    """OpenAI's ``{"data": [{"id": ...}]}``; a ``kind`` field (the simulator sends one) is kept."""
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        return None
    models: list[dict[str, str]] = []
    for entry in payload["data"]:
        if isinstance(entry, dict) and isinstance(entry.get("id"), str):
            model = {"name": entry["id"]}
            if isinstance(entry.get("kind"), str):
                model["kind"] = entry["kind"]
            models.append(model)
    return models


async def probe(session: aiohttp.ClientSession, worker_id: str, base_url: str, timeout: float) -> ProbeResult:
    """One worker: healthy if ``/health`` answers 2xx in time; the model list is refreshed when it parses."""
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    started = time.perf_counter()
    try:
        async with session.get(f"{base_url}/health", timeout=client_timeout, allow_redirects=False) as response:
            await response.read()
            status = response.status
    except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
        return ProbeResult(worker_id, ok=False, latency_ms=None, error=f"GET /health: {_describe(exc, timeout)}")
    latency_ms = (time.perf_counter() - started) * 1000
    if not 200 <= status < 300:
        return ProbeResult(worker_id, ok=False, latency_ms=latency_ms, error=f"GET /health returned {status}")

    models: list[dict[str, str]] | None = None
    try:
        async with session.get(f"{base_url}/v1/models", timeout=client_timeout, allow_redirects=False) as response:
            if 200 <= response.status < 300:
                body = await response.content.read(MAX_MODELS_BODY)
                models = _parse_models(json.loads(body))
    except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
        # /health passed, so the worker serves; a model list we cannot read keeps the known one.
        logger.info("worker %s: /v1/models unreadable (%s)", worker_id, _describe(exc, timeout))
    return ProbeResult(worker_id, ok=True, latency_ms=latency_ms, models=models)


async def probe_many(targets: list[tuple[str, str]], *, timeout: float) -> list[ProbeResult]:
    connector = worker_connector(limit=64, force_close=True, ssl=worker_tls_context())
    async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:
        return list(await asyncio.gather(*(probe(session, pk, url, timeout) for pk, url in targets)))


def _claim(worker_id: str, *, min_interval: float) -> bool:
    """True if this sweep may probe the worker now (nobody else claimed it within ``min_interval`` s)."""
    now = timezone.now()
    query = Worker.objects.filter(pk=worker_id)
    if min_interval > 0:
        query = query.filter(
            Q(last_checked_at__isnull=True) | Q(last_checked_at__lte=now - timedelta(seconds=min_interval))
        )
    return query.update(last_checked_at=now) == 1


def _apply(results: list[ProbeResult], summary: SweepSummary) -> None:
    for result in results:
        services.record_probe_result(
            worker_id=result.worker_id,
            ok=result.ok,
            latency_ms=result.latency_ms,
            error=result.error,
            models=result.models,
        )
        summary.probed += 1
        if result.ok:
            summary.healthy += 1
        else:
            summary.failed += 1
            summary.errors[result.worker_id] = result.error


def health_sweep(*, min_interval: float | None = None, timeout: float | None = None) -> SweepSummary:
    """Probe every non-disabled worker once and record the results (the Celery task calls this).

    ``min_interval`` (default: half of ``PENDRA_HEALTH_INTERVAL``) is how recently another
    sweep may have claimed a worker for this one to skip it; tests pass 0.
    """
    if min_interval is None:
        min_interval = settings.PENDRA_HEALTH_INTERVAL / 2
    timeout = timeout if timeout is not None else settings.PENDRA_HEALTH_TIMEOUT
    summary = SweepSummary()
    targets: list[tuple[str, str]] = []
    for worker_id, base_url in selectors.probe_targets():
        if _claim(worker_id, min_interval=min_interval):
            targets.append((worker_id, base_url))
        else:
            summary.skipped += 1
    if targets:
        _apply(asyncio.run(probe_many(targets, timeout=timeout)), summary)
    return summary


def probe_worker(worker_id: str, *, timeout: float | None = None, wait: float = 0.0) -> Worker | None:
    """Probe one worker now (after registration, or ``register_worker --probe``). None if it is gone.

    ``wait`` > 0 gives a worker that is still starting up that many seconds to pass before the
    one result is recorded, so ``make run`` does not race its own simulators.
    """
    worker = selectors.worker_get(worker_id)
    if worker is None:
        return None
    timeout = timeout if timeout is not None else settings.PENDRA_HEALTH_TIMEOUT
    target = [(str(worker.pk), worker.base_url)]
    deadline = time.monotonic() + wait
    [result] = asyncio.run(probe_many(target, timeout=timeout))
    while not result.ok and time.monotonic() < deadline:
        time.sleep(0.2)
        [result] = asyncio.run(probe_many(target, timeout=timeout))
    _claim(str(worker.pk), min_interval=0)
    return services.record_probe_result(
        worker_id=result.worker_id, ok=result.ok, latency_ms=result.latency_ms, error=result.error, models=result.models
    )
