"""Which events are recorded: key expiring and expired once per key, a dedicated worker's health.

The scheduled key task (``keys.expire_and_notify``) and the health sweep's result are run
in this process with the time moved; each event must queue exactly one delivery per
subscribed endpoint, and nothing for endpoints not subscribed or paused.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from apps.keys.lifecycle import expire_and_notify
from apps.keys.services import api_key_create
from apps.webhooks.models import Delivery, Event
from apps.workers.models import WorkerState
from apps.workers.services import record_probe_result, worker_register

ROUTE = "/api/v1/orgs/acme/webhooks/"


def _subscribe(owner, events: list[str], url: str = "http://127.0.0.1:9/hooks") -> str:
    response = owner.client().post(ROUTE, {"url": url, "events": events}, format="json")
    assert response.status_code == 201
    return response.json()["id"]


def test_a_key_expiring_and_then_expired_is_announced_once_each(owner, django_capture_on_commit_callbacks) -> None:
    _subscribe(owner, ["key.expiring", "key.expired"])
    now = timezone.now()
    key, _ = api_key_create(
        org=owner.org, user=owner.user, actor=owner.user, name="ci", expires_at=now + timedelta(days=5)
    )

    with django_capture_on_commit_callbacks() as queued:
        for moment in (
            now,
            now + timedelta(hours=1),
            now + timedelta(days=2, hours=1),
            now + timedelta(days=4, hours=1),
        ):
            expire_and_notify(now=moment)  # the 7-, 3- and 1-day notices: one key.expiring
        expire_and_notify(now=now + timedelta(days=6))
        expire_and_notify(now=now + timedelta(days=7))

    events = list(Event.objects.order_by("created_at").values_list("type", "data"))
    assert [(kind, data["key"]["id"]) for kind, data in events] == [("key.expiring", key.pk), ("key.expired", key.pk)]
    assert Delivery.objects.count() == 2
    assert len(queued) == 2


def test_nothing_is_recorded_without_a_subscribed_active_endpoint(owner) -> None:
    _subscribe(owner, ["key.rotated"])
    paused = _subscribe(owner, ["key.expired"])
    assert owner.client().patch(f"{ROUTE}{paused}/", {"active": False}, format="json").status_code == 200
    api_key_create(
        org=owner.org, user=owner.user, actor=owner.user, name="ci", expires_at=timezone.now() + timedelta(days=1)
    )

    expire_and_notify(now=timezone.now() + timedelta(days=2))

    assert Event.objects.count() == 0


def _fail_until_unhealthy(worker_id: str) -> None:
    for _ in range(settings.PENDRA_HEALTH_FAILURES):
        record_probe_result(worker_id=str(worker_id), ok=False, latency_ms=None, error="GET /health: refused")


@pytest.mark.parametrize(("dedicated", "announced"), [(True, 1), (False, 0)])
def test_a_worker_turning_unhealthy_is_announced_to_its_dedicated_org_only(owner, dedicated, announced) -> None:
    _subscribe(owner, ["worker.unhealthy"])
    worker = worker_register(
        name="gpu-a",
        base_url="http://127.0.0.1:9",
        models={"m": "chat"},
        dedicated_org=owner.org if dedicated else None,
        actor=None,
    )
    record_probe_result(worker_id=str(worker.pk), ok=True, latency_ms=5.0)

    _fail_until_unhealthy(worker.pk)
    _fail_until_unhealthy(worker.pk)  # still unhealthy: no second event

    worker.refresh_from_db()
    assert worker.state == WorkerState.UNHEALTHY
    events = Event.objects.filter(type="worker.unhealthy")
    assert events.count() == announced
    assert all(e.data["worker"]["name"] == "gpu-a" for e in events)
