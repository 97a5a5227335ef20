"""Deliveries end to end: the API registers an endpoint, a key rotation emits ``key.rotated``, a real
Celery worker process (testing/celery.py) signs and posts it to a receiver on 127.0.0.1.

Loopback http is a valid webhook URL here only because the test settings allow private URLs
(PENDRA_ALLOW_PRIVATE_WORKER_URLS=1, as for the worker simulators); production requires https.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.webhooks.models import Attempt, Delivery, Event
from apps.webhooks.signing import verify
from testing.actors import Actor

pytestmark = pytest.mark.django_db(transaction=True)

FAST_RETRIES = {"PENDRA_WEBHOOK_RETRY_BASE_SECONDS": "0.2", "PENDRA_WEBHOOK_RETRY_MAX_SECONDS": "0.5"}


def _endpoint(client: APIClient, url: str, events: list[str] | None = None) -> dict[str, Any]:
    response = client.post(
        "/api/v1/orgs/acme/webhooks/", {"url": url, "events": events or ["key.rotated"]}, format="json"
    )
    assert response.status_code == 201, response.content
    return response.json()


def _rotate(actor: Actor) -> None:
    response = actor.client().post(f"/api/v1/orgs/acme/keys/{actor.api_key.pk}/rotate/", {}, format="json")
    assert response.status_code == 201, response.content


def _deliveries(client: APIClient, endpoint_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/orgs/acme/webhooks/{endpoint_id}/deliveries/")
    assert response.status_code == 200
    return response.json()["results"]


def _wait_for_state(client: APIClient, endpoint_id: str, state: str, *, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        deliveries = _deliveries(client, endpoint_id)
        if deliveries and deliveries[0]["state"] == state:
            return deliveries[0]
        if time.monotonic() > deadline:
            raise TimeoutError(f"delivery not {state} within {timeout} s: {deliveries}")
        time.sleep(0.1)


def _signature(received: Any) -> str:
    return next(value for name, value in received.headers.items() if name.lower() == "pendra-signature")


def test_a_rotation_is_delivered_to_the_receiver_with_a_valid_signature(owner, celery_stack, webhook_receiver) -> None:
    receiver = webhook_receiver()
    client = owner.client()
    endpoint = _endpoint(client, receiver.url)
    celery_stack().take_tasks_sent_here().worker()

    _rotate(owner)

    [received] = receiver.wait_for(1)
    assert verify(header=_signature(received), body=received.body, secret=endpoint["secret"])
    assert not verify(header=_signature(received), body=received.body, secret=endpoint["secret"] + "x")
    document = json.loads(received.body)
    assert document["type"] == "key.rotated"
    assert document["org"] == "acme"
    assert document["data"]["key"]["prefix"] == owner.api_key.prefix
    delivery = _wait_for_state(client, endpoint["id"], "succeeded")
    assert [a["status_code"] for a in delivery["attempt_log"]] == [200]
    assert delivery["attempt_log"][0]["response_snippet"] == "answer 200 from the test receiver"


def test_a_failing_receiver_is_retried_with_each_attempt_recorded(owner, celery_stack, webhook_receiver) -> None:
    receiver = webhook_receiver(statuses=[500, 503, 200])
    client = owner.client()
    endpoint = _endpoint(client, receiver.url)
    celery_stack(**FAST_RETRIES, PENDRA_WEBHOOK_MAX_ATTEMPTS="5").take_tasks_sent_here().worker()

    _rotate(owner)

    delivery = _wait_for_state(client, endpoint["id"], "succeeded")
    assert [a["status_code"] for a in delivery["attempt_log"]] == [200, 503, 500]
    assert delivery["attempts"] == 3
    bodies = {r.body for r in receiver.wait_for(3)}
    assert len(bodies) == 1  # the same event, byte for byte, on every attempt
    assert all(verify(header=_signature(r), body=r.body, secret=endpoint["secret"]) for r in receiver.received)


def test_a_delivery_stops_after_the_maximum_attempts(owner, celery_stack, webhook_receiver) -> None:
    receiver = webhook_receiver(statuses=[500])
    client = owner.client()
    endpoint = _endpoint(client, receiver.url)
    celery_stack(**FAST_RETRIES, PENDRA_WEBHOOK_MAX_ATTEMPTS="3").take_tasks_sent_here().worker()

    _rotate(owner)

    delivery = _wait_for_state(client, endpoint["id"], "failed")
    assert [a["status_code"] for a in delivery["attempt_log"]] == [500, 500, 500]
    time.sleep(1.0)  # longer than any retry delay: nothing more is sent
    assert len(receiver.received) == 3


def test_a_delivery_can_be_sent_again(owner, celery_stack, webhook_receiver) -> None:
    receiver = webhook_receiver()
    client = owner.client()
    endpoint = _endpoint(client, receiver.url)
    celery_stack().take_tasks_sent_here().worker()
    _rotate(owner)
    delivery = _wait_for_state(client, endpoint["id"], "succeeded")

    response = client.post(f"/api/v1/orgs/acme/webhooks/{endpoint['id']}/deliveries/{delivery['id']}/resend/")

    assert response.status_code == 202
    first, second = receiver.wait_for(2)
    assert second.body == first.body
    assert verify(header=_signature(second), body=second.body, secret=endpoint["secret"])
    deadline = time.monotonic() + 30
    while len(_deliveries(client, endpoint["id"])[0]["attempt_log"]) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_a_redirect_is_not_followed(owner, celery_stack, webhook_receiver) -> None:
    elsewhere = webhook_receiver()
    receiver = webhook_receiver(statuses=[302], redirect_to=elsewhere.url)
    client = owner.client()
    endpoint = _endpoint(client, receiver.url)
    celery_stack(**FAST_RETRIES, PENDRA_WEBHOOK_MAX_ATTEMPTS="1").take_tasks_sent_here().worker()

    _rotate(owner)

    delivery = _wait_for_state(client, endpoint["id"], "failed")
    assert [a["status_code"] for a in delivery["attempt_log"]] == [302]
    assert elsewhere.received == []


def test_the_secret_is_in_no_log_record_or_later_response(owner, celery_stack, webhook_receiver) -> None:
    receiver = webhook_receiver(statuses=[500, 200])
    client = owner.client()
    endpoint = _endpoint(client, receiver.url)
    secret = endpoint["secret"]
    stack = celery_stack(**FAST_RETRIES).take_tasks_sent_here()
    worker = stack.worker()
    _rotate(owner)
    _wait_for_state(client, endpoint["id"], "succeeded")

    responses = [
        client.get("/api/v1/orgs/acme/webhooks/"),
        client.get(f"/api/v1/orgs/acme/webhooks/{endpoint['id']}/"),
        client.get(f"/api/v1/orgs/acme/webhooks/{endpoint['id']}/deliveries/"),
        client.patch(f"/api/v1/orgs/acme/webhooks/{endpoint['id']}/", {"url": "ftp://x"}, format="json"),
        client.patch(f"/api/v1/orgs/acme/webhooks/{endpoint['id']}/", {"secret": secret}, format="json"),
    ]

    assert [r.status_code for r in responses] == [200, 200, 200, 400, 400]
    assert all(secret not in r.content.decode() for r in responses)
    assert secret not in worker.log()
    stored = [*Event.objects.values_list("data", flat=True), *AuditEvent.objects.values_list("data", flat=True)]
    stored += list(Attempt.objects.values_list("response_snippet", "error"))
    assert secret not in json.dumps(stored, default=str)
    assert all(secret not in r.body.decode() for r in receiver.received)


def test_a_delivery_whose_message_was_lost_is_sent_by_the_sweep(owner, celery_stack, webhook_receiver) -> None:
    receiver = webhook_receiver()
    client = owner.client()
    endpoint = _endpoint(client, receiver.url)
    stack = celery_stack()  # this process's tasks go to another queue, where nobody listens: lost
    worker = stack.worker()
    _rotate(owner)
    Delivery.objects.update(next_attempt_at=timezone.now() - timedelta(minutes=2))

    worker.wait_for_task(stack.send("webhooks.send_stale"))

    [received] = receiver.wait_for(1)
    assert verify(header=_signature(received), body=received.body, secret=endpoint["secret"])
    assert _wait_for_state(client, endpoint["id"], "succeeded")["attempts"] == 1
