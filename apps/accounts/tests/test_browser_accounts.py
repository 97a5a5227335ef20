"""Accounts in a real browser: sign-up with email verification, password reset, two-factor sign-in."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pyotp
import pytest
from django.core import mail

from apps.orgs.models import Role
from apps.orgs.selectors import memberships_of
from testing.actors import Actor
from testing.browser import assert_same_origin, screenshot, sign_in, sign_out

pytestmark = pytest.mark.django_db(transaction=True)

NEW_PASSWORD = "a-brand-new-passphrase-77"


def _link_in_last_email(to: str, path_part: str) -> str:
    """The path of the link containing ``path_part`` in the last email sent to ``to``."""
    message = next(m for m in reversed(mail.outbox) if to in m.to)
    url = re.search(rf"https?://\S*{re.escape(path_part)}\S*", message.body)
    assert url is not None, message.body
    return urlsplit(url.group(0)).path


def _authenticator_app(page: Any) -> pyotp.TOTP:
    """An authenticator app, set up with the key shown on the set-up page."""
    return pyotp.TOTP(page.locator("#totp-secret").inner_text().strip())


def test_a_new_user_signs_up_verifies_their_email_and_lands_in_their_orgs_console(page: Any) -> None:
    page.goto("/accounts/signup/")
    screenshot(page, "sign-up")
    page.get_by_label("Email").fill("grace@hopper.test")
    page.get_by_label("Organisation name").fill("Hopper Labs")
    page.get_by_label("Password").fill("compilers-all-the-way-down")
    page.get_by_role("button", name="Create account").click()

    page.get_by_role("heading", name="Verify your email address").wait_for()
    screenshot(page, "verify-email")
    page.goto("/")
    assert "/accounts/login/" in page.url  # unverified: no console yet

    page.goto(_link_in_last_email("grace@hopper.test", "/accounts/confirm-email/"))
    with page.expect_navigation():
        page.get_by_role("button", name="Confirm").click()

    assert page.locator(".org-switcher summary").inner_text().count("Hopper Labs") == 1
    assert [(m.org.name, m.role) for m in memberships_of(user=_user("grace@hopper.test"))] == [
        ("Hopper Labs", Role.OWNER)
    ]
    assert_same_origin(page)


def _user(email: str) -> Any:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(email=email)


def test_a_user_who_forgot_their_password_resets_it_by_email_and_signs_in_with_the_new_one(
    page: Any, owner: Actor
) -> None:
    page.goto("/accounts/login/")
    page.get_by_role("link", name="Forgot password?").click()
    page.get_by_label("Email").fill(owner.email)
    page.get_by_role("button", name="Reset my password").click()
    page.get_by_role("heading", name="Password reset").wait_for()

    page.goto(_link_in_last_email(owner.email, "/accounts/password/reset/key/"))
    page.get_by_label("New Password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("New Password (again)").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    page.get_by_text("Your password is now changed").wait_for()

    sign_in(page, owner.email, owner.password)
    assert "/accounts/login/" in page.url  # the old password no longer works
    sign_in(page, owner.email, NEW_PASSWORD)
    assert page.locator(".user-menu").count() == 1
    assert_same_origin(page)


def test_an_owner_turns_on_two_factor_sign_in_requires_it_of_the_org_and_signs_in_with_a_totp_code(
    page: Any, owner: Actor
) -> None:
    sign_in(page, owner.email, owner.password)
    page.locator(".user-menu summary").click()
    page.get_by_role("link", name="Two-factor sign-in").click()
    page.get_by_role("link", name="Activate").click()
    page.get_by_label("Password").fill(owner.password)  # changing sign-in asks for the password again
    page.get_by_role("button", name="Confirm").click()
    screenshot(page, "two-factor-setup")
    app = _authenticator_app(page)
    page.get_by_label("Authenticator code").fill(app.now())
    page.get_by_role("button", name="Turn on two-factor sign-in").click()
    page.get_by_text("Recovery codes").first.wait_for()
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Security").click()
    page.get_by_label("Require two-factor sign-in for every member").check()
    page.get_by_role("button", name="Save").click()
    page.get_by_text("Two-factor sign-in is now required.").wait_for()
    screenshot(page, "org-security")

    sign_out(page)
    sign_in(page, owner.email, owner.password)
    assert "/accounts/2fa/authenticate/" in page.url  # the password alone is not enough now
    screenshot(page, "two-factor-sign-in")
    page.get_by_label("Code").fill(app.now())
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()

    assert page.locator(".user-menu").count() == 1
    assert_same_origin(page)
