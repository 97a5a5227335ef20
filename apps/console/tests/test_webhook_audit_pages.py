"""Webhook changes made in the console are on the org's audit page, once each, without the signing secret."""

from __future__ import annotations

from typing import Any

import pytest

from apps.audit.models import AuditEvent
from apps.console.tests.conftest import signed_in
from apps.webhooks.models import Delivery, Endpoint
from apps.webhooks.services import emit_event
from testing.actors import Actor

pytestmark = pytest.mark.django_db

WEBHOOKS = "/orgs/acme/webhooks/"
AUDIT = "/orgs/acme/audit/"
URL = "http://127.0.0.1:9/hooks"


def _webhook_events() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(event_type__startswith="webhook.").order_by("id"))


def _add(client: Any) -> Endpoint:
    response = client.post(WEBHOOKS, {"url": URL, "events": ["key.expired"]})
    assert response.status_code == 200
    return Endpoint.objects.get()


def test_adding_an_endpoint_is_on_the_audit_page_without_its_secret(admin: Actor) -> None:
    client = signed_in(admin)

    endpoint = _add(client)
    page = client.get(AUDIT)

    [event] = _webhook_events()
    assert (event.event_type, event.actor_id, event.target_id) == ("webhook.created", admin.user.pk, str(endpoint.pk))
    assert b"webhook.created" in page.content
    assert str(endpoint.pk).encode() in page.content
    assert URL.encode() in page.content
    assert endpoint.secret.encode() not in page.content
    assert not AuditEvent.objects.filter(data__icontains=endpoint.secret).exists()


def test_resending_a_delivery_is_on_the_audit_page(owner: Actor) -> None:
    client = signed_in(owner)
    endpoint = _add(client)
    emit_event(org=owner.org, event="key.expired", data={"key": {"id": 1}})  # type: ignore[arg-type]
    delivery = Delivery.objects.get()

    resent = client.post(f"{WEBHOOKS}{endpoint.pk}/deliveries/{delivery.pk}/resend/")
    page = client.get(AUDIT, {"action": "webhook.resent"})

    assert resent.status_code == 302
    assert [e.event_type for e in _webhook_events()] == ["webhook.created", "webhook.resent"]
    assert b"1 found" in page.content
    assert str(delivery.pk).encode() in page.content
    assert endpoint.secret.encode() not in page.content


def test_removing_an_endpoint_is_on_the_audit_page(owner: Actor) -> None:
    client = signed_in(owner)
    endpoint = _add(client)

    removed = client.post(f"{WEBHOOKS}{endpoint.pk}/delete/")
    page = client.get(AUDIT, {"action": "webhook.deleted"})

    assert removed.status_code == 302
    [_, event] = _webhook_events()
    assert (event.event_type, event.actor_id, event.target_id) == ("webhook.deleted", owner.user.pk, str(endpoint.pk))
    assert b"1 found" in page.content
    assert URL.encode() in page.content


def test_a_refused_url_leaves_no_audit_event(owner: Actor) -> None:
    response = signed_in(owner).post(WEBHOOKS, {"url": "http://169.254.169.254/x", "events": ["key.rotated"]})

    assert response.status_code == 200
    assert _webhook_events() == []


def test_a_member_refused_in_the_console_leaves_no_audit_event(owner: Actor, member: Actor) -> None:
    endpoint = _add(signed_in(owner))
    client = signed_in(member)

    added = client.post(WEBHOOKS, {"url": URL, "events": ["key.expired"]})
    removed = client.post(f"{WEBHOOKS}{endpoint.pk}/delete/")

    assert (added.status_code, removed.status_code) == (403, 403)
    assert [e.event_type for e in _webhook_events()] == ["webhook.created"]
    assert Endpoint.objects.count() == 1
