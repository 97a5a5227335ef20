"""In a real browser (Chromium): an owner reads the dashboard and the usage page and downloads the
usage CSV, whose rows are the JSON's. Both pages are photographed at 1440 px and 375 px."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import openai
import pytest

from apps.gateway.tests.conftest import Gateway, record_for
from testing.actors import Actor
from testing.browser import assert_same_origin, screenshot, sign_in

pytestmark = pytest.mark.django_db(transaction=True)


def _traffic(gateway: Gateway, owner: Actor, member: Actor) -> None:
    """Billed chat and embeddings from two keys, and one failure, all through the OpenAI SDK."""
    ids = []
    for actor, max_tokens in ((owner, 5), (owner, 9), (member, 4)):
        client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=actor.key, max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="sim-chat", messages=[{"role": "user", "content": "hello browser"}], max_tokens=max_tokens
        )
        ids.append(raw.headers["x-request-id"])
    ids.append(
        gateway.openai().embeddings.with_raw_response.create(model="sim-embed", input="a b c").headers["x-request-id"]
    )
    with pytest.raises(openai.APIStatusError) as failure:
        gateway.openai().chat.completions.create(
            model="sim-chat", messages=[{"role": "user", "content": "fail"}], extra_headers={"x-sim-status": "503"}
        )
    ids.append(failure.value.response.headers["x-request-id"])
    for request_id in ids:
        record_for(request_id)


def test_an_owner_downloads_the_usage_csv_and_it_holds_the_jsons_rows(
    gateway: Gateway, page: Any, owner: Actor, member: Actor
) -> None:
    _traffic(gateway, owner, member)
    sign_in(page, owner.email, owner.password)

    page.goto("/orgs/acme/dashboard/")
    assert page.get_by_test_id("requests-24h").inner_text() == "5"
    assert page.get_by_test_id("errors-24h").inner_text() == "1"
    screenshot(page, "dashboard")

    page.goto("/orgs/acme/usage/")
    assert page.get_by_role("img", name="Tokens per day").is_visible()
    screenshot(page, "usage")
    page.get_by_label("Group by").select_option("model")
    page.get_by_role("button", name="Show").click()
    page.get_by_role("heading", name="By model").wait_for()
    screenshot(page, "usage-by-model")
    json_url = page.get_by_role("link", name="JSON").get_attribute("href")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    content = Path(download.value.path()).read_text()
    body = page.request.get(json_url).json()

    rows = list(csv.DictReader(io.StringIO(content)))
    assert [row["model"] for row in rows] == ["sim-chat", "sim-embed"]
    assert rows == [{name: str(row[name]) for name in rows[0]} for row in body["rows"]]
    assert sum(int(row["total_tokens"]) for row in rows) == body["totals"]["total_tokens"] > 0
    assert_same_origin(page)
