"""Cost: every billed request carries tokens x the plan's prices, exactly; failures cost nothing.

Through the OpenAI SDK and HTTP against the simulators: the prices come from the plan
snapshot the gateway holds, the cost is written once with the usage row.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import openai
import pytest
from django.db.models import Sum

from apps.gateway.tests.conftest import Gateway, wait_for
from apps.plans.models import Price, Subscription
from apps.plans.tests.factories import plan_factory
from apps.requestlog.models import RequestRecord, UsageRecord

pytestmark = pytest.mark.django_db(transaction=True)

MILLION = Decimal(1_000_000)
# Prices chosen so a float would show: 0.1 and 0.3 have no exact binary form.
CHAT = {"input_per_million": Decimal("0.1"), "output_per_million": Decimal("0.3")}
CHAT_EXACT = {"input_per_million": Decimal("2.5"), "output_per_million": Decimal("10")}
EMBED = {"input_per_million": Decimal("0.0213")}
IMAGE = {"per_unit": Decimal("0.0400")}


def priced_plan(org: Any) -> None:
    plan = plan_factory(chat_rpm=1000, embeddings_rpm=1000, images_rpm=1000, chat_tpm=10**7, embeddings_tpm=10**7)
    Price.objects.create(plan=plan, kind="chat", model_pattern="*", **CHAT)
    Price.objects.create(plan=plan, kind="chat", model_pattern="sim-chat", **CHAT_EXACT)
    Price.objects.create(plan=plan, kind="embeddings", model_pattern="sim-*", **EMBED)
    Price.objects.create(plan=plan, kind="", model_pattern="*", per_unit=Decimal("0.0400"))
    Subscription.objects.update_or_create(org=org, defaults={"plan": plan, "since": plan.updated_at})


def expected(row: UsageRecord, price: dict[str, Decimal]) -> Decimal:
    return (
        row.prompt_tokens * price.get("input_per_million", Decimal(0)) / MILLION
        + row.completion_tokens * price.get("output_per_million", Decimal(0)) / MILLION
        + row.units * price.get("per_unit", Decimal(0))
    )


def price_of(row: UsageRecord) -> dict[str, Decimal]:
    """The most specific price: sim-chat's own row beats chat's "*"."""
    return {"chat": CHAT_EXACT, "embeddings": EMBED, "images": IMAGE}[row.route.split("/")[2]]


def test_each_billed_request_costs_tokens_times_the_plans_price_and_failures_nothing(
    gateway: Gateway, member: Any
) -> None:
    priced_plan(gateway.actor.org)
    owner_sdk = gateway.openai()
    member_sdk = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=member.key, max_retries=0)
    for index in range(4):
        for sdk in (owner_sdk, member_sdk):
            sdk.chat.completions.create(
                model="sim-chat", messages=[{"role": "user", "content": "word " * (index + 3)}], max_tokens=5 + index
            )
    owner_sdk.embeddings.create(model="sim-embed", input=["one two three", "four five"])
    member_sdk.images.generate(model="sim-image", prompt="a red square", n=2, size="256x256")
    with gateway.http() as http:
        for _ in range(3):  # failures: the worker answers 500, the client gets 502
            failed = http.post(
                "/v1/chat/completions",
                json={"model": "sim-chat", "messages": [{"role": "user", "content": "x"}]},
                headers={"x-sim-status": "500"},
            )
            assert failed.status_code == 502

    wait_for(lambda: RequestRecord.objects.filter(route__startswith="/v1/").count() >= 13)
    rows = list(UsageRecord.objects.all())
    assert len(rows) == 10  # the 3 failures are not billed at all
    for row in rows:
        assert row.cost == expected(row, price_of(row)), row.route
        assert row.cost > 0
    # Exact sums, by key and by member: Decimal all the way, no float drift.
    by_key = dict(UsageRecord.objects.values_list("api_key_id").annotate(total=Sum("cost")))
    for key, actor in ((gateway.actor.api_key, gateway.actor), (member.api_key, member)):
        mine = [row for row in rows if row.api_key_id == key.pk]
        assert by_key[key.pk] == sum((row.cost for row in mine), Decimal(0))
        assert by_key[key.pk] == sum((expected(row, price_of(row)) for row in mine), Decimal(0)), actor.email
    failed_ids = RequestRecord.objects.filter(status=502).values_list("request_id", flat=True)
    assert not UsageRecord.objects.filter(request_id__in=list(failed_ids)).exists()

    # The usage report shows cost beside tokens, by key and by member, summed exactly.
    client = gateway.actor.client()
    by_key_report = client.get("/api/v1/orgs/acme/usage/", {"group_by": "key"}).json()["rows"]
    by_member_report = client.get("/api/v1/orgs/acme/usage/", {"group_by": "member"}).json()["rows"]
    for actor in (gateway.actor, member):
        mine = [row for row in rows if row.api_key_id == actor.api_key.pk]
        exact = sum((expected(row, price_of(row)) for row in mine), Decimal(0))
        [key_row] = [row for row in by_key_report if row["key_id"] == actor.api_key.pk]
        [member_row] = [row for row in by_member_report if row["member_id"] == actor.user.pk]
        assert Decimal(key_row["cost"]) == exact == Decimal(member_row["cost"])
        assert key_row["total_tokens"] == sum(row.total_tokens for row in mine)
