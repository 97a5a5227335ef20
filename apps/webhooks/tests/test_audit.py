"""Every change to a webhook endpoint through the admin API leaves one audit event, never its secret."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from apps.audit.models import AuditEvent
from apps.webhooks.models import Delivery, Endpoint
from apps.webhooks.services import emit_event
from testing.actors import Actor

pytestmark = pytest.mark.django_db

ROUTE = "/api/v1/orgs/acme/webhooks/"
GOOD = {"url": "https://hooks.example.com/pendra", "events": ["key.expired"]}


def _webhook_events() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(event_type__startswith="webhook.").order_by("id"))


def _created(actor: Actor) -> dict[str, Any]:
    response = actor.client().post(ROUTE, GOOD, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def _resend(actor: Actor, endpoint: dict[str, Any]) -> Any:
    emit_event(org=actor.org, event="key.expired", data={"key": {"id": 1}})  # type: ignore[arg-type]
    delivery = Delivery.objects.get()
    return actor.client().post(f"{ROUTE}{endpoint['id']}/deliveries/{delivery.pk}/resend/")


# (action, the request it makes on an existing endpoint, expected status, audit type, a summary item)
ACTIONS: list[tuple[str, Callable[[Actor, dict[str, Any]], Any], int, str, tuple[str, Any]]] = [
    (
        "url",
        lambda a, e: a.client().patch(f"{ROUTE}{e['id']}/", {"url": "https://hooks.example.com/v2"}, format="json"),
        200,
        "webhook.changed",
        ("changes", {"url": {"from": GOOD["url"], "to": "https://hooks.example.com/v2"}}),
    ),
    (
        "events",
        lambda a, e: a.client().patch(f"{ROUTE}{e['id']}/", {"events": ["key.rotated"]}, format="json"),
        200,
        "webhook.changed",
        ("changes", {"events": {"from": ["key.expired"], "to": ["key.rotated"]}}),
    ),
    (
        "pause",
        lambda a, e: a.client().patch(f"{ROUTE}{e['id']}/", {"active": False}, format="json"),
        200,
        "webhook.changed",
        ("changes", {"active": {"from": True, "to": False}}),
    ),
    ("delete", lambda a, e: a.client().delete(f"{ROUTE}{e['id']}/"), 204, "webhook.deleted", ("url", GOOD["url"])),
    (
        "reveal",
        lambda a, e: a.client().post(f"{ROUTE}{e['id']}/secret/"),
        200,
        "webhook.secret_revealed",
        ("url", GOOD["url"]),
    ),
    ("resend", _resend, 202, "webhook.resent", ("event", "key.expired")),
]


def test_creating_an_endpoint_is_audited_without_its_secret(owner: Actor, public_dns: None) -> None:
    endpoint = _created(owner)

    [event] = _webhook_events()
    assert (event.event_type, event.actor_id, event.org_id) == ("webhook.created", owner.user.pk, owner.org.pk)  # type: ignore[union-attr]
    assert (event.target_type, event.target_id) == ("webhook_endpoint", endpoint["id"])
    assert event.data == {"url": GOOD["url"], "events": GOOD["events"]}
    assert endpoint["secret"] not in json.dumps(event.data)


@pytest.mark.parametrize(("name", "act", "status", "event_type", "summary"), ACTIONS, ids=[a[0] for a in ACTIONS])
def test_each_change_leaves_one_audit_event_naming_actor_and_endpoint(
    owner: Actor, admin: Actor, public_dns: None, name: str, act: Any, status: int, event_type: str, summary: Any
) -> None:
    endpoint = _created(owner)

    response = act(admin, endpoint)

    assert response.status_code == status, response.content
    [created, event] = _webhook_events()
    assert (event.event_type, event.actor_id, event.org_id) == (event_type, admin.user.pk, admin.org.pk)  # type: ignore[union-attr]
    assert (event.target_type, event.target_id) == ("webhook_endpoint", endpoint["id"])
    key, value = summary
    assert event.data[key] == value
    assert endpoint["secret"] not in json.dumps([created.data, event.data])


def test_a_patch_that_changes_nothing_is_not_audited(owner: Actor, public_dns: None) -> None:
    endpoint = _created(owner)

    response = owner.client().patch(f"{ROUTE}{endpoint['id']}/", {"events": GOOD["events"]}, format="json")

    assert response.status_code == 200
    assert [e.event_type for e in _webhook_events()] == ["webhook.created"]


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("post", "", {"url": "http://169.254.169.254/x", "events": ["key.expired"]}),
        ("post", "", {"url": GOOD["url"], "events": ["key.exploded"]}),
        ("patch", "{id}/", {"url": "https://rebind.example.com/x"}),
        ("patch", "{id}/", {"events": []}),
        ("patch", "{id}/", {"active": "sometimes"}),
    ],
)
def test_a_refused_change_leaves_no_audit_event(
    owner: Actor, public_dns: None, settings: Any, method: str, suffix: str, body: dict[str, Any]
) -> None:
    settings.PENDRA_ALLOW_PRIVATE_WORKER_URLS = False
    endpoint = _created(owner)

    response = getattr(owner.client(), method)(ROUTE + suffix.format(id=endpoint["id"]), body, format="json")

    assert response.status_code == 400
    assert [e.event_type for e in _webhook_events()] == ["webhook.created"]
    assert Endpoint.objects.get().url == GOOD["url"]


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("post", ""),
        ("patch", "{id}/"),
        ("delete", "{id}/"),
        ("post", "{id}/secret/"),
        ("post", "{id}/deliveries/{delivery}/resend/"),
    ],
)
def test_a_member_refused_with_403_leaves_no_audit_event(
    owner: Actor, member: Actor, public_dns: None, method: str, suffix: str
) -> None:
    endpoint = _created(owner)
    emit_event(org=owner.org, event="key.expired", data={})  # type: ignore[arg-type]
    delivery = Delivery.objects.get()
    route = ROUTE + suffix.format(id=endpoint["id"], delivery=delivery.pk)

    response = getattr(member.client(), method)(route, {"active": False, **GOOD}, format="json")

    assert response.status_code == 403
    assert [e.event_type for e in _webhook_events()] == ["webhook.created"]
