"""The base layout in a real browser: sign in, the top bar, the user menu, sign out, error pages."""

from __future__ import annotations

from typing import Any

import pytest

from testing.actors import Actor
from testing.browser import assert_same_origin, screenshot, sign_in, sign_out

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_sign_in_page_loads_only_from_its_own_origin(page: Any) -> None:
    page.goto("/login/")  # the old address still leads there

    assert page.get_by_role("heading", name="Sign in to Pendra").is_visible()
    assert_same_origin(page)
    screenshot(page, "sign-in")


def test_a_signed_in_owner_sees_their_org_in_the_top_bar_and_signs_out_with_the_user_menu(
    page: Any, owner: Actor
) -> None:
    sign_in(page, owner.email, owner.password)

    switcher = page.locator("details.org-switcher summary")
    assert switcher.inner_text().startswith("A")  # the avatar letter, then the name
    assert "Acme" in switcher.inner_text()
    screenshot(page, "console-home")
    sign_out(page)

    assert page.url.endswith("/accounts/login/")
    assert page.locator(".user-menu").count() == 0
    assert_same_origin(page)


def test_the_user_menu_opens_from_the_keyboard(page: Any, owner: Actor) -> None:
    sign_in(page, owner.email, owner.password)

    page.locator(".user-menu summary").focus()
    page.keyboard.press("Enter")
    assert page.get_by_role("button", name="Sign out").is_visible()
    page.keyboard.press("Escape")

    assert not page.get_by_role("button", name="Sign out").is_visible()


def test_an_error_page_shows_the_request_id_of_its_response(page: Any, owner: Actor) -> None:
    sign_in(page, owner.email, owner.password)

    response = page.goto("/no-such-page/")

    assert response is not None and response.status == 404
    shown = page.locator(".request-id code").inner_text()
    assert shown == response.headers["x-request-id"]
    assert_same_origin(page)
