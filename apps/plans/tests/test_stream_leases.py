"""A stream's slot is a lease the stream renews, not a counter: it neither drifts nor frees others' slots.

The lease lasts ``PENDRA_STREAM_LEASE_SECONDS`` and is renewed while the stream runs, so a
long stream keeps its slot however long it lasts, and a slot whose process died comes
back within one lease. Both back ends (Redis, and the embedded one through Django's cache).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.utils import timezone

from apps.gateway.tests.conftest import Gateway, wait_for
from apps.plans.models import Subscription
from apps.plans.tests.conftest import reached_a_worker
from apps.plans.tests.factories import plan_factory
from testing.live import ServerProcesses, session_database_url

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = "/v1/chat/completions"
STREAM = {
    "model": "sim-chat",
    "messages": [{"role": "user", "content": "hello there"}],
    "max_tokens": 12,
    "stream": True,
}


def _one_stream_plan(gw: Gateway) -> None:
    plan = plan_factory(name="Tiny", concurrent_streams=1)
    Subscription.objects.update_or_create(org=gw.actor.org, defaults={"plan": plan, "since": timezone.now()})


def _stream_in_background(url: str, key: str, **headers: str) -> tuple[threading.Thread, list[Any]]:
    answers: list[Any] = []

    def run() -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
            try:
                with http.stream("POST", CHAT, json=STREAM, headers=headers) as response:
                    body = b"".join(response.iter_raw())
                    answers.append((response.status_code, body))
            except httpx.HTTPError as exc:
                answers.append((0, repr(exc).encode()))

    thread = threading.Thread(target=run)
    thread.start()
    return thread, answers


def test_a_long_stream_keeps_its_slot_past_its_lease(gateway: Gateway, backend: str, settings) -> None:
    settings.PENDRA_STREAM_LEASE_SECONDS = 1
    _one_stream_plan(gateway)
    long, answers = _stream_in_background(gateway.url, gateway.key, **{"x-sim-chunk-delay-ms": "300"})
    time.sleep(2.2)  # past two leases: only renewals keep the slot

    with gateway.http() as http:
        second = http.post(CHAT, json=STREAM)
    long.join()
    with gateway.http() as http:
        after = http.post(CHAT, json=STREAM)

    assert answers[0][0] == 200 and b"[DONE]" in answers[0][1]
    assert second.status_code == 429
    assert second.headers["x-ratelimit-bucket"] == "streams"
    assert after.status_code == 200


@pytest.fixture
def other_process(redis_required: None, transactional_db: None) -> Iterator[tuple[str, Any]]:
    env = {
        **os.environ,
        "DATABASE_URL": session_database_url(),
        "PENDRA_LOG_LEVEL": "WARNING",
        "PENDRA_STREAM_LEASE_SECONDS": "1",
    }
    servers = ServerProcesses(env, count=1)
    [url] = servers.__enter__()
    try:
        yield url, servers.started[0][0]
    finally:
        servers.__exit__(None, None, None)


def test_a_slot_held_by_a_killed_process_comes_back_within_a_lease(
    gateway: Gateway, other_process: tuple[str, Any], settings
) -> None:
    settings.PENDRA_STREAM_LEASE_SECONDS = 1
    _one_stream_plan(gateway)
    url, process = other_process
    stuck, _ = _stream_in_background(url, gateway.key, **{"x-sim-chunk-delay-ms": "500"})
    # The other process admitted the stream and holds its slot.
    assert wait_for(lambda: reached_a_worker(gateway)), "the other process never admitted its stream"
    with gateway.http() as http:
        assert http.post(CHAT, json=STREAM).status_code == 429

    os.killpg(process.pid, signal.SIGKILL)  # the whole node at once: it never releases the slot
    stuck.join()
    time.sleep(2)  # one lease, and a margin

    with gateway.http() as http:
        after = http.post(CHAT, json=STREAM)

    assert after.status_code == 200


def test_the_plan_page_counts_the_streams_open_now(gateway: Gateway, backend: str) -> None:
    from django.urls import reverse

    _one_stream_plan(gateway)
    running, _ = _stream_in_background(gateway.url, gateway.key, **{"x-sim-chunk-delay-ms": "300"})
    assert wait_for(lambda: reached_a_worker(gateway)), "the stream was never admitted"

    page = gateway.actor.session_client().get(reverse("console:plan", kwargs={"slug": "acme"}))
    running.join()

    assert page.status_code == 200
    assert 'aria-label="Streams open at once: 1 of 1"' in page.content.decode()
