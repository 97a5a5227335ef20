"""Health probes reach only the address a worker's URL is allowed to have, and follow no redirects."""

from __future__ import annotations

import pytest

from apps.workers import health, services
from apps.workers.models import WorkerState
from testing.scripted_workers import MODEL

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _short_probe_timeout(settings) -> None:
    settings.PENDRA_HEALTH_TIMEOUT = 1


def test_a_health_probe_does_not_follow_a_redirect(scripted_worker) -> None:
    target = scripted_worker()
    redirect = (302, {"Location": f"{target.url}/health", "Content-Length": "0"}, b"")
    worker = scripted_worker(lambda method, path, headers, body: redirect if path == "/health" else None)
    row = services.worker_register(name="redirecting", base_url=worker.url, models={MODEL: "chat"}, actor=None)

    row = health.probe_worker(str(row.pk))

    assert row is not None
    assert row.state == WorkerState.UNHEALTHY
    assert "302" in row.last_error
    assert target.hits == []


def test_a_health_probe_does_not_connect_to_a_host_that_now_resolves_to_a_refused_address(
    scripted_worker, settings
) -> None:
    worker = scripted_worker(host="localhost")
    row = services.worker_register(name="rebound", base_url=worker.url, models={MODEL: "chat"}, actor=None)
    settings.PENDRA_ALLOW_PRIVATE_WORKER_URLS = False

    row = health.probe_worker(str(row.pk))

    assert row is not None
    assert row.state == WorkerState.UNHEALTHY
    assert "loopback" in row.last_error
    assert worker.hits == []
