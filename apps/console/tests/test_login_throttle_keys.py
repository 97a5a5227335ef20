"""What the sign-in throttle counts by: the username as Django normalises it, and the
client's address as the trusted proxies in front of us saw it (never as a client claims it)."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from apps.accounts.services import email_address_mark_verified
from apps.orgs.services import user_create

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"


@pytest.fixture
def user():  # type: ignore[no-untyped-def]
    user = user_create(email="alice@example.com", password=PASSWORD)
    email_address_mark_verified(user=user)
    return user


def _attempt(client: Client, username: str, password: str, ip: str = "10.0.0.1", forwarded: str | None = None):  # type: ignore[no-untyped-def]
    extra = {"REMOTE_ADDR": ip}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return client.post(reverse("account_login"), {"login": username, "password": password}, **extra)


@pytest.mark.parametrize(
    "spelling",
    ["\uff41\uff4c\uff49\uff43\uff45@example.com", "\uff21LICE@example\uff0ecom"],
)
def test_the_username_limit_holds_across_unicode_compatibility_forms(client: Client, user, spelling: str) -> None:  # type: ignore[no-untyped-def]
    for n in range(5):
        _attempt(client, spelling, "wrong", ip=f"10.0.1.{n}")

    response = _attempt(client, "alice@example.com", PASSWORD, ip="10.0.2.1")

    assert response.status_code == 429


def test_behind_a_trusted_proxy_the_ip_limit_counts_each_client_apart(client: Client, user, settings) -> None:  # type: ignore[no-untyped-def]
    settings.PENDRA_TRUSTED_PROXIES = ["10.0.0.0/8"]
    for n in range(20):
        _attempt(client, f"user{n}@example.com", "wrong", ip="10.0.0.1", forwarded="203.0.113.5")

    same_client = _attempt(Client(), "alice@example.com", PASSWORD, ip="10.0.0.1", forwarded="203.0.113.5")
    other_client = _attempt(Client(), "alice@example.com", PASSWORD, ip="10.0.0.1", forwarded="203.0.113.6")

    assert same_client.status_code == 429
    assert other_client.status_code == 302


def test_a_client_cannot_escape_the_ip_limit_by_forging_forwarded_for(client: Client, user, settings) -> None:  # type: ignore[no-untyped-def]
    settings.PENDRA_TRUSTED_PROXIES = ["10.0.0.0/8"]
    # The client writes its own X-Forwarded-For; the trusted proxy appends the address it saw.
    for n in range(20):
        _attempt(client, f"user{n}@example.com", "wrong", ip="10.0.0.1", forwarded=f"198.18.0.{n}, 203.0.113.5")

    response = _attempt(Client(), "alice@example.com", PASSWORD, ip="10.0.0.1", forwarded="198.18.1.1, 203.0.113.5")

    assert response.status_code == 429


def test_forwarded_for_from_an_untrusted_peer_is_ignored(client: Client, user, settings) -> None:  # type: ignore[no-untyped-def]
    settings.PENDRA_TRUSTED_PROXIES = []
    for n in range(20):
        _attempt(client, f"user{n}@example.com", "wrong", ip="192.0.2.1", forwarded=f"198.18.0.{n}")

    response = _attempt(Client(), "alice@example.com", PASSWORD, ip="192.0.2.1", forwarded="198.18.9.9")

    assert response.status_code == 429
