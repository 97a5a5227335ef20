"""Support in a real browser: a customer's call fails, support pastes its id and reads why.

Screenshots of the support page (with an explanation) and of the platform audit log at
1440 px and 375 px go to docs/screenshots/ under make screenshots.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from apps.gateway.tests.conftest import record_for
from testing.actors import Actor
from testing.browser import assert_same_origin, screenshot, sign_in

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = {"model": "sim-chat", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 3}


@pytest.fixture
def fleet(live: Any, simulator: Callable[..., Any], register_sim: Callable[[Any], Any]) -> Any:
    for name in ("sim-a", "sim-b"):
        register_sim(simulator(name))
    return live


def test_support_pastes_the_id_of_a_failed_call_and_sees_why_it_failed(
    fleet: Any, page: Any, owner: Actor, support: Actor, operator: Actor
) -> None:
    failed = httpx.post(
        f"{fleet.url}/v1/chat/completions",
        json=CHAT,
        headers={"Authorization": f"Bearer {owner.key}", "x-sim-status": "500"},
        timeout=30,
    )
    assert failed.status_code == 502
    request_id = failed.headers["x-request-id"]  # what the customer quotes on the ticket
    record_for(request_id)

    sign_in(page, support.email, support.password)
    page.get_by_role("link", name="Support").click()
    page.get_by_label("Request id").fill(request_id)
    page.get_by_role("button", name="Look up").click()

    result = page.locator(".explanation")
    result.get_by_text("Failed (502): the worker(s) tried failed:").wait_for()
    assert "Acme" in result.inner_text()
    assert "sim-a" in result.inner_text() and "sim-b" in result.inner_text()
    assert page.get_by_role("link", name=request_id).is_visible()  # now among the recent lookups
    assert request_id in page.url  # the lookup's own address, to share or reload
    assert_same_origin(page)
    screenshot(page, "support-lookup")

    page.context.clear_cookies()
    sign_in(page, operator.email, operator.password)
    page.get_by_role("link", name="Platform audit").click()
    page.get_by_text("request.looked_up").first.wait_for()
    assert_same_origin(page)
    screenshot(page, "platform-audit")
