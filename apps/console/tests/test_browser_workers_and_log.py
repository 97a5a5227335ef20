"""Operators and owners in a real browser: a drained worker loses its traffic; the request log filters and pages.

Screenshots of the workers page, the worker register and edit forms and the request log at
1440 px and 375 px go to docs/screenshots/ under make screenshots.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.utils import timezone

from apps.gateway.routing import SNAPSHOT_SECONDS
from apps.requestlog.services import write_records
from apps.workers.models import Worker, WorkerState
from testing.actors import Actor
from testing.browser import assert_same_origin, screenshot, sign_in

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = {"model": "sim-chat", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 3}


@pytest.fixture
def fleet(live: Any, simulator: Callable[..., Any], register_sim: Callable[[Any], Any]) -> Any:
    for name in ("sim-a", "sim-b"):
        register_sim(simulator(name))
    return live


def _served_by(fleet: Any, owner: Actor, calls: int) -> list[str]:
    names = []
    with httpx.Client(base_url=fleet.url, headers={"Authorization": f"Bearer {owner.key}"}, timeout=30) as client:
        for _ in range(calls):
            response = client.post("/v1/chat/completions", json=CHAT)
            assert response.status_code == 200, response.text
            names.append(response.headers["x-worker-name"])
    return names


def test_an_operator_drains_a_worker_and_traffic_leaves_it(
    fleet: Any, page: Any, owner: Actor, operator: Actor
) -> None:
    before = _served_by(fleet, owner, 30)
    assert set(before) == {"sim-a", "sim-b"}  # both take traffic while both are healthy

    sign_in(page, operator.email, operator.password)
    page.get_by_role("link", name="Workers").click()
    shown = set(page.locator("table tbody tr td:first-child a").all_inner_texts())
    assert shown == set(before)  # the fleet names workers exactly as X-Worker-Name does
    page.get_by_role("button", name="Drain sim-a").click()
    page.get_by_text("Draining sim-a").wait_for()
    assert Worker.objects.get(name="sim-a").state == WorkerState.DRAINING
    assert_same_origin(page)
    screenshot(page, "workers")

    time.sleep(SNAPSHOT_SECONDS + 0.5)  # every gateway process sees a fleet change within this second
    after = _served_by(fleet, owner, 30)

    assert set(after) == {"sim-b"}


def test_an_operator_registers_and_edits_a_worker(live: Any, page: Any, operator: Actor, owner: Actor) -> None:
    sign_in(page, operator.email, operator.password)
    page.goto("/platform/workers/")
    page.get_by_role("link", name="Register a worker").click()
    page.get_by_label("Name").fill("gpu a100 1")
    page.get_by_label("Base URL").fill("http://127.0.0.1:8199")
    page.get_by_label("Models").fill("llama-3-70b chat\nbge-large")
    page.get_by_role("button", name="Register").click()
    page.get_by_text("Use 1-100 letters").wait_for()  # the refusal sits under its field
    screenshot(page, "worker-register")

    page.get_by_label("Name").fill("gpu-a100-1")
    page.get_by_role("button", name="Register").click()
    page.get_by_text("Registered gpu-a100-1").wait_for()
    page.get_by_role("link", name="gpu-a100-1").click()
    page.get_by_label("Dedicated to organisation").fill("acme")
    page.get_by_role("button", name="Save").click()
    page.get_by_text("Saved gpu-a100-1.").wait_for()
    assert Worker.objects.get(name="gpu-a100-1").dedicated_org is not None
    page.get_by_role("link", name="gpu-a100-1").click()
    assert_same_origin(page)
    screenshot(page, "worker-edit")


def _log(owner: Actor, count: int, status: int, start: Any) -> None:
    rows = [
        {
            "uid": secrets.token_hex(16),
            "request_id": f"browser-log-{status}-{n:04d}-{secrets.token_hex(4)}",
            "created_at": start + timedelta(seconds=n),
            "org_id": owner.org.pk if owner.org else None,
            "api_key_id": owner.api_key.pk,
            "key_public_id": owner.api_key.public_id,
            "user_id": owner.user.pk,
            "route": "/v1/chat/completions",
            "method": "POST",
            "model": "sim-chat",
            "status": status,
            "latency_ms": 3.0 + n % 7,
            "worker_name": "sim-b" if status == 200 else "",
            "total_tokens": 12 if status == 200 else None,
            **({"limit_bucket": "requests", "limit_plan": "Free", "limit": "60/min"} if status == 429 else {}),
        }
        for n in range(count)
    ]
    write_records(rows, [])


def test_an_owner_filters_the_request_log_and_pages_to_older_requests(live: Any, page: Any, owner: Actor) -> None:
    start = timezone.now() - timedelta(hours=1)
    _log(owner, 55, 429, start)
    _log(owner, 8, 200, start + timedelta(minutes=5))

    sign_in(page, owner.email, owner.password)
    page.get_by_role("link", name="Request log").click()
    page.get_by_label("Status").select_option("429")
    page.get_by_role("button", name="Apply").click()

    rows = page.locator("table tbody tr")
    assert rows.count() == 50
    assert set(rows.locator("td:nth-child(2)").all_inner_texts()) == {"429"}
    screenshot(page, "request-log")

    page.get_by_role("link", name="Older").click()
    page.get_by_role("link", name="Newest").wait_for()
    assert "status=429" in page.url and "cursor=" in page.url
    assert rows.count() == 5
    assert set(rows.locator("td:nth-child(2)").all_inner_texts()) == {"429"}
    assert page.get_by_role("link", name="Older").count() == 0

    rows.first.get_by_role("link").click()
    page.get_by_text("requests").first.wait_for()
    assert "Free" in page.locator(".explanation").inner_text()
    assert_same_origin(page)
    screenshot(page, "request-explanation")
