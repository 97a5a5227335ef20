"""Console sign-in: throttled per username and per IP; fails closed when the cache is down."""

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


def _attempt(client: Client, username: str, password: str, ip: str = "10.0.0.1"):  # type: ignore[no-untyped-def]
    return client.post(reverse("account_login"), {"login": username, "password": password}, REMOTE_ADDR=ip)


def test_the_login_page_renders(client: Client) -> None:
    response = client.get(reverse("account_login"))

    assert response.status_code == 200
    assert b"Sign in" in response.content


def test_the_right_password_signs_in(client: Client, user) -> None:  # type: ignore[no-untyped-def]
    response = _attempt(client, "alice@example.com", PASSWORD)

    assert response.status_code == 302
    assert response["Location"] == reverse("console:home")


def test_the_sixth_wrong_password_is_refused_and_so_is_the_right_seventh(client: Client, user) -> None:  # type: ignore[no-untyped-def]
    wrong = [_attempt(client, "alice@example.com", "wrong") for _ in range(5)]
    sixth = _attempt(client, "alice@example.com", "wrong")
    seventh = _attempt(client, "alice@example.com", PASSWORD)

    assert [r.status_code for r in wrong] == [200] * 5
    assert sixth.status_code == 429
    assert b"Too many sign-in attempts" in sixth.content
    assert 1 <= int(sixth["Retry-After"]) <= 300
    assert seventh.status_code == 429
    assert "_auth_user_id" not in client.session


def test_the_username_limit_holds_across_ips_and_letter_case(client: Client, user) -> None:  # type: ignore[no-untyped-def]
    for n in range(5):
        _attempt(client, "alice@example.com", "wrong", ip=f"10.0.1.{n}")

    response = _attempt(client, "ALICE@example.com ", PASSWORD, ip="10.0.2.1")

    assert response.status_code == 429


def test_one_ip_guessing_many_usernames_is_refused(client: Client, user) -> None:  # type: ignore[no-untyped-def]
    for n in range(20):
        _attempt(client, f"user{n}@example.com", "wrong", ip="10.9.9.9")

    refused = _attempt(client, "alice@example.com", PASSWORD, ip="10.9.9.9")
    other_ip = _attempt(Client(), "alice@example.com", PASSWORD, ip="10.9.9.10")

    assert refused.status_code == 429
    assert other_ip.status_code == 302


def test_sign_in_fails_closed_while_the_cache_is_down(client: Client, user, stoppable_redis) -> None:  # type: ignore[no-untyped-def]
    stoppable_redis.terminate()
    stoppable_redis.wait(timeout=10)

    response = _attempt(client, "alice@example.com", PASSWORD)

    assert response.status_code == 503
    assert b"Sign-in is temporarily unavailable" in response.content
    assert "_auth_user_id" not in client.session
