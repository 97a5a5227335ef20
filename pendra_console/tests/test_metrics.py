"""/metrics: a node of two uvicorn processes and a Celery worker count together, and the counts are right.

The node is started as production starts it (``python -m pendra_console.serving --workers 2``)
with its ``PROMETHEUS_MULTIPROC_DIR`` shared with a Celery worker, as on one machine. A mixed
load (successes, a failover, 401s, 429s, embeddings, admin API calls) is sent to it, and one
scrape must report exactly what the clients received.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from apps.gateway.metrics import FLUSH_SECONDS
from apps.plans import limit_decision
from apps.plans.models import Subscription
from apps.plans.tests.factories import plan_factory
from apps.requestlog.models import RequestRecord
from apps.workers.models import Worker
from apps.workers.selectors import worker_state_counts
from testing.actors import Actor
from testing.live import ServerProcesses, session_database_url

CHAT = {"model": "sim-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
EMBED = {"model": "sim-embed", "input": "hello"}


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def _sum(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    return sum(value for n, got, value in samples if n == name and all(got.get(k) == v for k, v in labels.items()))


@pytest.fixture
def node(
    transactional_db: None, redis_required: None, tmp_path: Path, simulator: Any, register_sim: Any
) -> Iterator[tuple[str, Path, list[Any]]]:
    sims = [simulator("sim-a"), simulator("sim-b")]
    for sim in sims:
        register_sim(sim)
    metrics_dir = tmp_path / "metrics"
    env = {
        **os.environ,
        "DATABASE_URL": session_database_url(),
        "PENDRA_LOG_LEVEL": "WARNING",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    with ServerProcesses(env, count=1, workers=2) as (url,):
        yield url, metrics_dir, sims


async def _send(url: str, requests: list[tuple[str, str, dict[str, Any] | None, str]]) -> list[httpx.Response]:
    """(method, path, json, key) each; 16 connections at a time, so both processes take some."""
    semaphore = asyncio.Semaphore(16)
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:

        async def one(method: str, path: str, body: dict[str, Any] | None, key: str) -> httpx.Response:
            async with semaphore:
                return await client.request(method, path, json=body, headers={"Authorization": f"Bearer {key}"})

        return list(await asyncio.gather(*(one(*request) for request in requests)))


def _family(path: str) -> str:
    return {"/v1/chat/completions": "chat", "/v1/embeddings": "embeddings", "/v1/models": "models"}.get(
        path, "admin_api"
    )


def test_one_scrape_counts_what_both_processes_and_the_celery_worker_did(
    node: tuple[str, Path, list[Any]], owner: Actor, celery_stack: Any
) -> None:
    url, metrics_dir, (_, sim_b) = node
    plan = plan_factory(name="Ten", chat_rpm=10)
    Subscription.objects.update_or_create(org=owner.org, defaults={"plan": plan, "since": timezone.now()})
    left = limit_decision.window_end(f"org:{owner.org.pk}") - time.time()
    if left < 20:
        time.sleep(left + 1)
    # sim-b fails every request, so a request that tries it first fails over to sim-a.
    sim_b.set_faults(status=500)
    bad_key = owner.key[:-8] + "AAAAAAAA"
    mixed = (
        [("POST", "/v1/chat/completions", CHAT, owner.key)] * 30  # 10 answered, 20 refused (chat: 10/minute)
        + [("POST", "/v1/embeddings", EMBED, owner.key)] * 12
        + [("GET", "/v1/models", None, bad_key)] * 5  # 401
        + [("GET", "/api/v1/plans/", None, owner.key)] * 4
    )
    responses = asyncio.run(_send(url, mixed))
    stack = celery_stack(PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    worker = stack.worker()
    worker.wait_for_task(stack.send("workers.health_sweep"))

    sent = Counter(
        (_family(request[1]), str(response.status_code)) for request, response in zip(mixed, responses, strict=True)
    )
    assert sent[("chat", "200")] == 10 and sent[("chat", "429")] == 20
    answered = [r.headers["X-Request-Id"] for r in responses if r.request.url.path.startswith("/v1/")]
    records = {r.request_id: r for r in RequestRecord.objects.filter(request_id__in=answered)}
    time.sleep(2 * FLUSH_SECONDS)  # each process writes its batched counts within FLUSH_SECONDS
    scrape = httpx.get(f"{url}/metrics", timeout=10)
    assert scrape.status_code == 200
    samples = _samples(scrape.text)

    for (family, status), count in sent.items():
        assert _sum(samples, "pendra_requests_total", route=family, status=status) == count, (family, status)
    assert _sum(samples, "pendra_requests_total", route="chat", status="200", plan=plan.slug, worker="sim-a") == 10
    assert _sum(samples, "pendra_rate_limit_refusals_total", bucket="chat", plan=plan.slug) == 20
    assert _sum(samples, "pendra_rate_limit_refusals_total") == sent[("chat", "429")]
    for family in ("chat", "embeddings", "models"):
        served = sum(count for (f, _), count in sent.items() if f == family)
        assert _sum(samples, "pendra_request_duration_seconds_count", route=family) == served
    proxied = [record for record in records.values() if record.attempts]
    assert _sum(samples, "pendra_upstream_attempts_total") == sum(record.attempts for record in proxied)
    failovers = sum(record.attempts - 1 for record in proxied)
    assert failovers > 0
    assert _sum(samples, "pendra_upstream_failovers_total") == failovers
    assert (
        _sum(samples, "pendra_time_to_first_byte_seconds_count") == sent[("chat", "200")] + sent[("embeddings", "200")]
    )
    for state, count in worker_state_counts().items():
        assert _sum(samples, "pendra_workers", state=state) == count
    assert Worker.objects.count() == 2
    assert any(name == "pendra_request_record_backlog" for name, _, _ in samples)
    assert _sum(samples, "pendra_celery_tasks_total", task="workers.health_sweep", outcome="success") == 1
    assert _sum(samples, "pendra_celery_task_duration_seconds_count", task="workers.health_sweep") == 1
    # Both uvicorn processes counted requests (one file of counters per process).
    assert len({path.name for path in metrics_dir.glob("counter_*.db")}) >= 2


# --- who may scrape -----------------------------------------------------------------


@pytest.mark.django_db
def test_metrics_are_refused_to_an_address_outside_the_allow_list() -> None:
    response = Client(REMOTE_ADDR="203.0.113.7").get("/metrics")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


@pytest.mark.django_db
def test_metrics_are_served_to_loopback_by_default() -> None:
    response = Client(REMOTE_ADDR="127.0.0.1").get("/metrics")
    assert response.status_code == 200
    assert b"pendra_workers" in response.content


@pytest.mark.django_db
def test_the_bearer_token_opens_metrics_from_anywhere(settings: Any) -> None:
    settings.PENDRA_METRICS_TOKEN = "scrape-" + "t" * 40
    client = Client(REMOTE_ADDR="203.0.113.7")
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 404
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {settings.PENDRA_METRICS_TOKEN}")
    assert response.status_code == 200
