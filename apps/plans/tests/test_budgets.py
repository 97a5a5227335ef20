"""Budgets through the gateway: a hard key budget refuses the request after the one that spent
it (429, bucket ``budget``); a soft org budget only alerts; each threshold alert goes once, by
email to owners and admins and as the ``budget.threshold`` webhook event."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import httpx
import pytest
from django.core import mail

from apps.gateway.tests.conftest import Gateway, record_for, wait_for
from apps.plans.models import BudgetAlert, Price
from apps.plans.tests.test_cost import priced_plan
from apps.requestlog.models import UsageRecord
from apps.webhooks.models import Event
from apps.webhooks.signing import verify
from testing.actors import Actor

pytestmark = pytest.mark.django_db(transaction=True)


def _chat(gateway: Gateway, key: str, number: int) -> httpx.Response:
    """One chat request, waited for until its record is written (its spend is settled by then)."""
    request_id = f"budget-test-{number:04d}-{key[-6:]}"
    body = {"model": "sim-chat", "messages": [{"role": "user", "content": "how much is this"}], "max_tokens": 5}
    with httpx.Client(base_url=gateway.url, timeout=30, headers={"Authorization": f"Bearer {key}"}) as http:
        response = http.post("/v1/chat/completions", json=body, headers={"X-Request-Id": request_id})
    record_for(request_id)
    return response


def _set_budget(actor: Actor, path: str, monthly_usd: str, *, hard: bool) -> dict[str, Any]:
    response = actor.client().put(path, {"monthly_usd": monthly_usd, "hard": hard}, format="json")
    assert response.status_code == 200, response.content
    return dict(response.json())


def test_a_hard_key_budget_refuses_the_request_after_the_one_that_spent_it(
    gateway: Gateway, admin: Actor, backend: str
) -> None:
    """With either counter back end: Redis's scripts, or the embedded one `make run` uses."""
    owner = gateway.actor
    priced_plan(owner.org)
    budget = Decimal("0.0001")  # about two requests at sim-chat's price
    _set_budget(owner, f"/api/v1/orgs/acme/keys/{owner.api_key.pk}/budget/", str(budget), hard=True)

    answers = []
    for number in range(10):
        answers.append(_chat(gateway, owner.key, number))
        if answers[-1].status_code != 200:
            break
    refused = answers[-1]

    assert refused.status_code == 429
    assert len(answers) >= 3
    costs = [row.cost for row in UsageRecord.objects.filter(api_key=owner.api_key).order_by("created_at", "id")]
    assert len(costs) == len(answers) - 1  # the refusal is not billed
    # Every admitted request found the budget unspent; the last one spent it; the next was refused.
    assert sum(costs[:-1], Decimal(0)) < budget <= sum(costs, Decimal(0))
    detail = refused.json()["detail"]
    assert detail.startswith('Rate limit exceeded for bucket "budget" ($0.0001 monthly budget of this API key')
    assert refused.headers["x-ratelimit-bucket"] == "budget"
    assert int(refused.headers["retry-after"]) > 0
    # Another key of the org has no budget of its own: it goes on.
    assert _chat(gateway, admin.key, 100).status_code == 200
    # Raising the budget applies to the very next request.
    _set_budget(owner, f"/api/v1/orgs/acme/keys/{owner.api_key.pk}/budget/", "1", hard=True)
    assert _chat(gateway, owner.key, 101).status_code == 200
    spent = owner.client().get(f"/api/v1/orgs/acme/keys/{owner.api_key.pk}/budget/").json()
    assert Decimal(spent["spent_usd"]) == sum(
        (row.cost for row in UsageRecord.objects.filter(api_key=owner.api_key)), Decimal(0)
    )


def test_a_soft_org_budget_only_alerts_each_threshold_once_by_email_and_webhook(
    gateway: Gateway, admin: Actor, member: Actor
) -> None:
    owner = gateway.actor
    priced_plan(owner.org)
    subscribed = owner.client().post(
        "/api/v1/orgs/acme/webhooks/",
        {"url": "http://127.0.0.1:9/hooks", "events": ["budget.threshold"]},
        format="json",
    )
    assert subscribed.status_code == 201, subscribed.content
    budget = Decimal("0.0002")
    _set_budget(owner, "/api/v1/orgs/acme/budget/", str(budget), hard=False)
    mail.outbox.clear()

    statuses = []
    for number in range(12):  # well past 100 %: a soft budget refuses nothing
        statuses.append(_chat(gateway, member.key if number % 2 else owner.key, number).status_code)
    wait_for(lambda: BudgetAlert.objects.count() >= 3)

    assert statuses == [200] * 12
    spent = sum((row.cost for row in UsageRecord.objects.all()), Decimal(0))
    assert spent > budget
    alerts = sorted(BudgetAlert.objects.values_list("threshold", flat=True))
    assert alerts == [50, 80, 100]
    subjects = sorted(message.subject for message in mail.outbox)
    assert subjects == [
        f"[Pendra] Acme has used {t}% of its {BudgetAlert.objects.first().period} budget" for t in (100, 50, 80)
    ]
    for message in mail.outbox:
        assert sorted(message.to) == ["admin@acme.test", "owner@acme.test"]  # owners and admins, not members
        assert "soft budget: requests are not refused" in message.body
    events = sorted(
        data["threshold"] for data in Event.objects.filter(type="budget.threshold").values_list("data", flat=True)
    )
    assert events == [50, 80, 100]

    for number in range(12, 14):  # more spend in the same month sends nothing again
        assert _chat(gateway, owner.key, number).status_code == 200
    assert len(mail.outbox) == 3
    assert Event.objects.filter(type="budget.threshold").count() == 3


def test_a_threshold_alert_is_delivered_signed_to_the_orgs_receiver(
    gateway: Gateway, celery_stack: Any, webhook_receiver: Any
) -> None:
    owner = gateway.actor
    priced_plan(owner.org)
    receiver = webhook_receiver()
    endpoint = (
        owner.client()
        .post("/api/v1/orgs/acme/webhooks/", {"url": receiver.url, "events": ["budget.threshold"]}, format="json")
        .json()
    )
    celery_stack().take_tasks_sent_here().worker()
    Price.objects.filter(model_pattern="sim-chat").update(output_per_million=Decimal(1000))  # 5 tokens: $0.005
    _set_budget(owner, f"/api/v1/orgs/acme/keys/{owner.api_key.pk}/budget/", "0.001", hard=True)

    assert _chat(gateway, owner.key, 1).status_code == 200  # one request crosses all three thresholds

    received = receiver.wait_for(3)
    documents = [json.loads(item.body) for item in received]
    assert sorted(document["data"]["threshold"] for document in documents) == [50, 80, 100]
    for item, document in zip(received, documents, strict=True):
        header = next(value for name, value in item.headers.items() if name.lower() == "pendra-signature")
        assert verify(header=header, body=item.body, secret=endpoint["secret"])
        assert document["type"] == "budget.threshold"
        assert document["data"]["key_prefix"] == owner.api_key.prefix
        assert document["data"]["hard"] is True


def test_a_hard_key_budget_holds_across_two_gateway_processes(
    two_servers: list[str], owner: Actor, simulator: Any, register_sim: Any
) -> None:
    """Requests alternate between two processes sharing Redis: whichever process answers next, the
    request after the one that spent the key's budget is refused."""
    for name in ("sim-a", "sim-b"):
        register_sim(simulator(name))
    priced_plan(owner.org)
    budget = Decimal("0.0002")
    _set_budget(owner, f"/api/v1/orgs/acme/keys/{owner.api_key.pk}/budget/", str(budget), hard=True)
    body = {"model": "sim-chat", "messages": [{"role": "user", "content": "how much is this"}], "max_tokens": 5}

    statuses = []
    for number in range(12):
        with httpx.Client(base_url=two_servers[number % 2], timeout=30) as http:
            response = http.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {owner.key}"})
        statuses.append(response.status_code)
        if response.status_code != 200:
            break
        time.sleep(0.3)  # the answering process settles the spend just after the response

    assert statuses[-1] == 429 and statuses[:-1] == [200] * (len(statuses) - 1)
    assert len(statuses) >= 3  # the spend of both processes counted towards one budget
    assert 'bucket "budget"' in response.json()["detail"]
    wait_for(lambda: UsageRecord.objects.count() >= len(statuses) - 1, timeout=15)
    costs = [row.cost for row in UsageRecord.objects.order_by("created_at", "id")]
    assert len(costs) == len(statuses) - 1
    assert sum(costs[:-1], Decimal(0)) < budget <= sum(costs, Decimal(0))
