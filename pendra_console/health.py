"""Liveness and readiness probes for the load balancer and the orchestrator."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable

from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from pendra_console.celery import app as celery_app

logger = logging.getLogger("pendra.health")

# Figures apps add to /readyz's body (e.g. requestlog's unwritten-record backlog), registered
# from their AppConfig.ready() so this bottom layer imports no app.
readiness_details: dict[str, Callable[[], object]] = {}


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up and answering. Deliberately touches nothing else."""
    return JsonResponse({"status": "ok"})


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_cache() -> None:
    probe = "readyz:" + secrets.token_hex(4)
    cache.set(probe, "1", timeout=5)
    if cache.get(probe) != "1":
        raise RuntimeError("cache did not return what was written")
    cache.delete(probe)


def _check_broker() -> None:
    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=1)


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Database, cache and broker reachable; 503 naming each component that is not."""
    checks = {"database": _check_database, "cache": _check_cache, "broker": _check_broker}
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            check()
        except Exception as exc:
            logger.warning("readiness check %s failed: %s", name, exc.__class__.__name__)
            results[name] = "down"
        else:
            results[name] = "ok"
    down = [name for name, state in results.items() if state != "ok"]
    details = {name: figure() for name, figure in readiness_details.items()}
    if down:
        return JsonResponse(
            {
                "status": "unavailable",
                "detail": f"Not ready: {', '.join(down)} unreachable",
                "checks": results,
                **details,
            },
            status=503,
            headers={"Retry-After": "5"},
        )
    return JsonResponse({"status": "ok", "checks": results, **details})
