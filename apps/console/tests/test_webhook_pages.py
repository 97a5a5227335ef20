"""Webhook pages and the key form's controls, for owners and admins (members are refused)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from apps.console.tests.conftest import signed_in
from apps.keys.models import ApiKey
from apps.webhooks.models import Attempt, Delivery, Endpoint
from apps.webhooks.services import emit_event
from testing.actors import Actor

pytestmark = pytest.mark.django_db

WEBHOOKS = "/orgs/acme/webhooks/"
KEYS = "/orgs/acme/keys/"


def _add(client: Any) -> Endpoint:
    response = client.post(WEBHOOKS, {"url": "http://127.0.0.1:9/hooks", "events": ["key.rotated", "key.expired"]})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    endpoint = Endpoint.objects.get()
    assert endpoint.secret.encode() in response.content
    return endpoint


def test_an_admin_adds_an_endpoint_and_sees_its_secret_only_once(admin: Actor) -> None:
    client = signed_in(admin)

    endpoint = _add(client)
    listed = client.get(WEBHOOKS)

    assert endpoint.url.encode() in listed.content
    assert endpoint.secret.encode() not in listed.content


def test_a_refused_url_is_explained_next_to_the_field(owner: Actor) -> None:
    response = signed_in(owner).post(WEBHOOKS, {"url": "http://169.254.169.254/x", "events": ["key.rotated"]})

    assert response.status_code == 200
    assert re.search(rb'id="id_url_error".*cloud metadata address', response.content, re.S)
    assert Endpoint.objects.count() == 0


def test_deliveries_show_each_attempt_and_can_be_sent_again(
    owner: Actor, django_capture_on_commit_callbacks: Any
) -> None:
    client = signed_in(owner)
    endpoint = _add(client)
    emit_event(org=owner.org, event="key.expired", data={"key": {"id": 1}})
    delivery = Delivery.objects.get()
    Attempt.objects.create(
        delivery=delivery, started_at=delivery.created_at, duration_ms=12.0, status_code=503, response_snippet="busy"
    )

    page = client.get(f"{WEBHOOKS}{endpoint.pk}/")
    with django_capture_on_commit_callbacks() as queued:
        resent = client.post(f"{WEBHOOKS}{endpoint.pk}/deliveries/{delivery.pk}/resend/")

    assert page.status_code == 200
    assert b"key.expired" in page.content
    assert b"503" in page.content and b"busy" in page.content
    assert resent.status_code == 302
    assert len(queued) == 1
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == ("pending", 0)


def test_a_member_may_not_see_webhooks(member: Actor) -> None:
    assert signed_in(member).get(WEBHOOKS).status_code == 403


def test_the_key_form_sets_controls_and_explains_a_bad_range(member: Actor) -> None:
    client = signed_in(member)

    bad = client.post(KEYS, {"name": "ci", "allowed_ips": "203.0.113.0/99"})
    good = client.post(KEYS, {"name": "ci", "allowed_ips": "203.0.113.0/24, 198.51.100.7", "rpm_limit": "5"})

    assert re.search(rb'id="id_allowed_ips_error".*is not an IP address or CIDR range', bad.content, re.S)
    assert good.status_code == 200
    key = ApiKey.objects.get(name="ci")
    assert (key.allowed_ips, key.rpm_limit) == (["203.0.113.0/24", "198.51.100.7/32"], 5)


def test_a_member_cannot_loosen_their_keys_limit_in_the_console(member: Actor, admin: Actor) -> None:
    key = member.api_key
    assert (
        signed_in(admin)
        .post(f"{KEYS}{key.pk}/", {"name": key.name, "rpm_limit": "5", "rotation_grace_seconds": 86400})
        .status_code
        == 302
    )

    refused = signed_in(member).post(
        f"{KEYS}{key.pk}/", {"name": key.name, "rpm_limit": "50", "rotation_grace_seconds": 86400}, follow=True
    )

    assert b"You may only lower this key&#x27;s limit" in refused.content
    key.refresh_from_db()
    assert key.rpm_limit == 5
