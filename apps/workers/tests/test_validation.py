"""Worker URLs are checked against SSRF before anything is stored (through the operator API)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.workers.models import Worker

pytestmark = pytest.mark.django_db


def _register(api: APIClient, url: str):
    return api.post(
        "/api/v1/workers/",
        {"name": "w1", "base_url": url, "models": [{"name": "m", "kind": "chat"}]},
        format="json",
    )


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://169.254.169.254/", "cloud metadata address"),
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata address"),
        ("http://169.254.10.1:8000", "link-local"),
        ("http://[fe80::1]:8000", "link-local"),
        ("http://[fd00:ec2::254]/", "cloud metadata address"),
        ("http://metadata.google.internal/computeMetadata/v1/", "cloud metadata endpoint"),
        ("file:///etc/passwd", "must use http:// or https://, not file://"),
        ("gopher://example.com/", "not gopher://"),
        ("ftp://10.0.0.1/", "not ftp://"),
        ("http://user:pw@host/", "must not contain credentials"),
        ("http://user@127.0.0.1:8101/", "must not contain credentials"),
        ("http://0.0.0.0:8000", "unspecified address"),
        ("http://[::]:8000", "unspecified address"),
        ("http://224.0.0.1/", "multicast"),
        ("http://240.0.0.1/", "reserved"),
        ("http://[::ffff:169.254.169.254]/", "cloud metadata address"),
        ("http:///nohost", "must name a host"),
        ("http://127.0.0.1:99999/", "malformed"),
        ("http://127.0.0.1:8101/?q=1", "query string"),
        ("not a url", "must not contain spaces"),
        ("http://does-not-exist.invalid/", "does not resolve"),
    ],
)
def test_unsafe_worker_urls_are_refused_and_nothing_is_created(operator_api: APIClient, url: str, says: str) -> None:
    response = _register(operator_api, url)

    assert response.status_code == 400
    assert says in response.json()["detail"]
    assert response.json()["detail"].startswith("base_url: Worker URL")
    assert not Worker.objects.exists()
    assert not AuditEvent.objects.filter(event_type=AuditEvent.Type.WORKER_REGISTERED).exists()


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000", "http://localhost:8000", "http://10.1.2.3/", "http://[::1]:80"]
)
def test_loopback_and_private_urls_are_refused_when_the_setting_is_off(
    operator_api: APIClient, settings, url: str
) -> None:
    settings.PENDRA_ALLOW_PRIVATE_WORKER_URLS = False

    response = _register(operator_api, url)

    assert response.status_code == 400
    assert "private worker URLs are not allowed here" in response.json()["detail"]
    assert not Worker.objects.exists()


def test_loopback_urls_are_accepted_when_the_setting_is_on(operator_api: APIClient) -> None:
    response = _register(operator_api, "HTTP://LocalHost:8101/openai/")

    assert response.status_code == 201
    assert response.json()["base_url"] == "http://localhost:8101/openai"


def test_an_edit_to_an_unsafe_url_is_refused_and_changes_nothing(operator_api: APIClient) -> None:
    worker_id = _register(operator_api, "http://127.0.0.1:8101").json()["id"]

    response = operator_api.patch(
        f"/api/v1/workers/{worker_id}/", {"base_url": "http://169.254.169.254/"}, format="json"
    )

    assert response.status_code == 400
    assert Worker.objects.get(pk=worker_id).base_url == "http://127.0.0.1:8101"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        # 6to4 (2002::/16) carries an IPv4 address in bits 16-48: it is that address in disguise.
        ("http://[2002:a9fe:a9fe::]/", "169.254.169.254 is a cloud metadata address"),
        ("http://[2002:7f00:1::]:8000", "127.0.0.1 is a loopback address"),
        ("http://[2002:a00:1::]/", "10.0.0.1 is a private address"),
        # NAT64 (64:ff9b::/96) reaches the IPv4 address in its last 32 bits.
        ("http://[64:ff9b::a9fe:a9fe]/", "169.254.169.254 is a cloud metadata address"),
        ("http://[64:ff9b::7f00:1]:8000", "127.0.0.1 is a loopback address"),
        ("http://[64:ff9b:1::a00:1]/", "NAT64"),
        # IPv4-compatible (::a.b.c.d) and IPv4-mapped forms.
        ("http://[::a9fe:a9fe]/", "169.254.169.254 is a cloud metadata address"),
        ("http://[::ffff:7f00:1]:8000", "127.0.0.1 is a loopback address"),
        ("http://[::ffff:a00:1]/", "10.0.0.1 is a private address"),
        # Teredo (2001::/32) embeds its server and an obfuscated client address.
        ("http://[2001:0:a00:1:0:f227:80ff:fffe]/", "10.0.0.1 is a private address"),
        # Site-local IPv6 (fec0::/10) is deprecated but still routed privately by some networks.
        ("http://[fec0::1]/", "site-local"),
    ],
)
def test_addresses_embedding_a_refused_address_are_refused(
    operator_api: APIClient, settings, url: str, says: str
) -> None:
    settings.PENDRA_ALLOW_PRIVATE_WORKER_URLS = False

    response = _register(operator_api, url)

    assert response.status_code == 400
    assert says in response.json()["detail"]
    assert not Worker.objects.exists()


def test_a_6to4_address_embedding_a_public_address_is_accepted(operator_api: APIClient, settings) -> None:
    settings.PENDRA_ALLOW_PRIVATE_WORKER_URLS = False

    response = _register(operator_api, "http://[2002:808:808::1]:8000")

    assert response.status_code == 201
