"""The webhooks admin API: who may use it, what URLs it accepts, what it shows."""

from __future__ import annotations

import pytest
from django.test import override_settings

from apps.webhooks.models import Endpoint

ROUTE = "/api/v1/orgs/acme/webhooks/"
GOOD = {"url": "https://hooks.example.com/pendra", "events": ["key.rotated", "budget.threshold"]}


def test_an_owner_registers_an_endpoint_and_sees_the_secret_once(owner, public_dns) -> None:
    client = owner.client()

    created = client.post(ROUTE, GOOD, format="json")

    assert created.status_code == 201
    body = created.json()
    assert body["secret"].startswith("whsec_")
    assert body["events"] == ["budget.threshold", "key.rotated"]
    listed = client.get(ROUTE).json()["results"]
    assert [e["id"] for e in listed] == [body["id"]]
    assert "secret" not in listed[0]
    assert "secret" not in client.get(f"{ROUTE}{body['id']}/").json()


def test_an_admin_may_reveal_the_secret(owner, admin, public_dns) -> None:
    created = owner.client().post(ROUTE, GOOD, format="json").json()

    revealed = admin.client().post(f"{ROUTE}{created['id']}/secret/")

    assert revealed.status_code == 200
    assert revealed.json()["secret"] == created["secret"]


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("get", ""),
        ("post", ""),
        ("get", "{id}/"),
        ("patch", "{id}/"),
        ("delete", "{id}/"),
        ("post", "{id}/secret/"),
        ("get", "{id}/deliveries/"),
    ],
)
def test_a_member_is_refused_and_an_outsider_sees_nothing(owner, member, outsider, public_dns, method, suffix) -> None:
    endpoint_id = owner.client().post(ROUTE, GOOD, format="json").json()["id"]
    route = ROUTE + suffix.format(id=endpoint_id)

    refused = getattr(member.client(), method)(route, GOOD, format="json")
    hidden = getattr(outsider.client(), method)(route, GOOD, format="json")

    assert refused.status_code == 403
    assert refused.json()["detail"] == "This action requires the owner or admin role."
    assert hidden.status_code == 404
    assert Endpoint.objects.count() == 1


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("https://metadata.google.internal/x", "cloud metadata"),
        ("https://[::ffff:169.254.169.254]/x", "metadata"),
        ("https://0.0.0.0/x", "unspecified"),
        ("file:///etc/passwd", "must use http:// or https://"),
        ("https://user:pw@hooks.example.com/x", "credentials"),
        ("https://hooks.example.com/x?next=http://10.0.0.1", "query string"),
    ],
)
def test_urls_the_worker_rules_refuse_are_refused(owner, public_dns, url, why) -> None:
    response = owner.client().post(ROUTE, {**GOOD, "url": url}, format="json")

    assert response.status_code == 400
    assert why in str(response.json())
    assert Endpoint.objects.count() == 0


@override_settings(PENDRA_ALLOW_PRIVATE_WORKER_URLS=False)
@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://127.0.0.1:8443/hooks", "loopback"),
        ("https://10.1.2.3/hooks", "private"),
        ("https://rebind.example.com/hooks", "private"),
        ("http://hooks.example.com/pendra", "must use https://"),
    ],
)
def test_private_addresses_and_plain_http_are_refused_in_production(owner, public_dns, url, why) -> None:
    response = owner.client().post(ROUTE, {**GOOD, "url": url}, format="json")

    assert response.status_code == 400
    assert why in str(response.json())
    assert Endpoint.objects.count() == 0


@override_settings(PENDRA_ALLOW_PRIVATE_WORKER_URLS=False)
def test_a_public_https_url_is_accepted_in_production(owner, public_dns) -> None:
    assert owner.client().post(ROUTE, GOOD, format="json").status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        {"url": GOOD["url"], "events": ["key.exploded"]},
        {"url": GOOD["url"], "events": []},
        {"url": GOOD["url"], "events": "key.rotated"},
        {"url": GOOD["url"]},
        {**GOOD, "secret": "whsec_mine"},
    ],
)
def test_bad_bodies_are_400_and_change_nothing(owner, public_dns, body) -> None:
    response = owner.client().post(ROUTE, body, format="json")

    assert response.status_code == 400
    assert Endpoint.objects.count() == 0


def test_an_endpoint_is_paused_and_removed(owner, public_dns) -> None:
    client = owner.client()
    endpoint_id = client.post(ROUTE, GOOD, format="json").json()["id"]

    paused = client.patch(f"{ROUTE}{endpoint_id}/", {"active": False, "events": ["key.expired"]}, format="json")
    removed = client.delete(f"{ROUTE}{endpoint_id}/")

    assert paused.status_code == 200
    assert (paused.json()["active"], paused.json()["events"]) == (False, ["key.expired"])
    assert removed.status_code == 204
    assert client.get(f"{ROUTE}{endpoint_id}/").status_code == 404


def test_the_schema_documents_the_webhook_routes(owner) -> None:
    paths = owner.client().get("/api/v1/schema/?format=json").json()["paths"]

    assert {
        "/api/v1/orgs/{slug}/webhooks/",
        "/api/v1/orgs/{slug}/webhooks/{endpoint_id}/",
        "/api/v1/orgs/{slug}/webhooks/{endpoint_id}/deliveries/",
        "/api/v1/orgs/{slug}/webhooks/{endpoint_id}/deliveries/{delivery_id}/resend/",
    } <= set(paths)
