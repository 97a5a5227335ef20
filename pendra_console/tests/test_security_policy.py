"""The console's Content Security Policy and password hashing (SECURITY.md promises both)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.test import Client
from django.urls import reverse

from apps.accounts.services import email_address_mark_verified

pytestmark = pytest.mark.django_db

TEMPLATES = Path(settings.BASE_DIR) / "templates"


def _policy(client: Client, path: str) -> dict[str, list[str]]:
    header = client.get(path)["Content-Security-Policy"]
    directives = (part.strip().split() for part in header.split(";") if part.strip())
    return {parts[0]: parts[1:] for parts in directives}


def test_console_pages_allow_only_their_own_origin_and_no_inline_code(client: Client) -> None:
    policy = _policy(client, reverse("account_login"))

    assert policy["default-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert "script-src" not in policy and "style-src" not in policy  # both fall back to 'self' alone


def test_the_policy_is_on_error_pages_too(client: Client) -> None:
    assert _policy(client, "/no-such-page/")["default-src"] == ["'self'"]


def test_the_api_docs_page_allows_inline_styles_but_no_inline_scripts(client: Client) -> None:
    policy = _policy(client, "/api/v1/docs/")

    assert policy["style-src"] == ["'self'", "'unsafe-inline'"]
    assert "script-src" not in policy


@pytest.mark.parametrize("template", sorted(TEMPLATES.rglob("*.html")), ids=lambda p: str(p.relative_to(TEMPLATES)))
def test_no_template_carries_inline_script_or_style(template: Path) -> None:
    text = template.read_text()

    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), "inline <script>"
    assert "<style" not in text
    assert not re.search(r"\sstyle=", text)
    assert not re.search(r"\son[a-z]+=", text), "inline event handler"


def test_new_passwords_are_hashed_with_argon2() -> None:
    user = get_user_model().objects.create_user(username="argon@example.com", password="a long passphrase 42")

    assert user.password.startswith("argon2$")


def test_an_existing_pbkdf2_hash_still_signs_in_and_is_upgraded_to_argon2(client: Client) -> None:
    user = get_user_model().objects.create(
        username="legacy@example.com",
        email="legacy@example.com",
        password=make_password("a long passphrase 42", hasher="pbkdf2_sha256"),
    )
    email_address_mark_verified(user=user)

    response = client.post(
        reverse("account_login"), {"login": "legacy@example.com", "password": "a long passphrase 42"}
    )

    assert response.status_code == 302
    user.refresh_from_db()
    assert user.password.startswith("argon2$")
