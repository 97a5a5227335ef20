"""An invitation in a real browser: the owner invites by email, the invitee signs up through the
link and joins, and as a member sees no owner-only control and is refused an owner-only form."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.core import mail

from apps.orgs.models import Membership, Role
from testing.actors import Actor
from testing.browser import assert_same_origin, screenshot, sign_in

pytestmark = pytest.mark.django_db(transaction=True)

OWNER_ONLY = ("Rename", "Transfer ownership", "Delete Acme", "Send invitation", "Upgrade to Pro", "Change")


def _link_in_last_email(to: str, path_part: str) -> str:
    message = next(m for m in reversed(mail.outbox) if to in m.to)
    url = re.search(rf"https?://\S*{re.escape(path_part)}\S*", message.body)
    assert url is not None, message.body
    parts = urlsplit(url.group(0))
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def _csrf_post(page: Any, path: str, form: dict[str, str]) -> Any:
    """A form posted straight at the server with the page's session and CSRF token, as a curious member might."""
    token = next(c["value"] for c in page.context.cookies() if c["name"] == settings.CSRF_COOKIE_NAME)
    return page.request.post(path, form={**form, "csrfmiddlewaretoken": token}, headers={"Referer": page.url})


def test_an_invitee_signs_up_through_the_emailed_link_and_joins_as_a_member(
    page: Any, browser: Any, live: Any, owner: Actor
) -> None:
    sign_in(page, owner.email, owner.password)
    page.goto("/orgs/acme/members/")
    page.get_by_label("Email").fill("newcomer@example.test")
    page.get_by_label("Role", exact=True).select_option("member")
    page.get_by_role("button", name="Send invitation").click()
    page.get_by_text("Invitation sent to newcomer@example.test").wait_for()
    screenshot(page, "invitation-sent")
    link = _link_in_last_email("newcomer@example.test", "/invitations/accept/")

    invitee = browser.new_context(base_url=live.url, viewport={"width": 1440, "height": 900}).new_page()
    invitee.goto(link)
    invitee.get_by_role("heading", name="Join Acme").wait_for()
    screenshot(invitee, "invitation")
    invitee.get_by_role("link", name="Create an account").click()
    invitee.get_by_label("Email").fill("newcomer@example.test")
    invitee.get_by_label("Password").fill("a-long-enough-passphrase-77")
    invitee.get_by_role("button", name="Create account").click()
    invitee.get_by_role("heading", name="Verify your email address").wait_for()
    invitee.goto(_link_in_last_email("newcomer@example.test", "/accounts/confirm-email/"))
    with invitee.expect_navigation():
        invitee.get_by_role("button", name="Confirm").click()
    invitee.goto(link)  # the emailed link again, now signed in
    with invitee.expect_navigation():
        invitee.get_by_role("button", name="Accept and join Acme").click()

    assert urlsplit(invitee.url).path == "/orgs/acme/"
    assert Membership.objects.get(user__email="newcomer@example.test", org__slug="acme").role == Role.MEMBER
    for path in ("/orgs/acme/", "/orgs/acme/members/", "/orgs/acme/plan/"):
        invitee.goto(path)
        for control in OWNER_ONLY:
            assert invitee.get_by_role("button", name=control, exact=True).count() == 0, (path, control)
    refused = _csrf_post(invitee, "/orgs/acme/plan/change/", {"plan": "pro"})
    assert refused.status == 403
    assert "requires the owner role" in refused.text()
    assert invitee.get_by_role("button", name="Upgrade to Pro").count() == 0
    assert_same_origin(page)
    invitee.context.close()
