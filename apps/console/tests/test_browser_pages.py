"""The console's pages in a real browser (Chromium), against the live server, gateway and simulators.

An owner creates a key and sees its secret once, calls the gateway with it through the
OpenAI SDK, rotates it (the old secret stops after the chosen grace, here none) and
revokes it. Every page is also opened by every role, loading nothing from another origin.
Each page is photographed at 1440 px and 375 px for the README.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import openai
import pytest
from django.conf import settings
from django.test import Client

from apps.keys.models import ApiKey
from testing.actors import Actor
from testing.browser import assert_same_origin, screenshot, sign_in

pytestmark = pytest.mark.django_db(transaction=True)

PAGES = ["/orgs/acme/", "/orgs/acme/keys/", "/orgs/acme/members/", "/orgs/acme/plan/", "/orgs/acme/audit/"]
EXAMPLE_SECRET = "pnd_xxxxxxxxxxxx_shown-once-and-never-again"


def _session_for(page: Any, user: Any) -> None:
    """Signed in by cookie: what the sign-in form gives, without typing it for every role."""
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    page.context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": page.base_url}])


def _sdk(live: Any, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live.url}/v1", api_key=key, max_retries=0)


def _chat(live: Any, key: str) -> str:
    completion = _sdk(live, key).chat.completions.create(
        model="sim-chat", messages=[{"role": "user", "content": "Say hello"}], max_tokens=4
    )
    return completion.choices[0].message.content or ""


def _refused(live: Any, key: str, *, within: float = 3.0) -> bool:
    """The gateway refuses the key (401) within ``within`` seconds (its key cache lives about a second)."""
    deadline = time.monotonic() + within
    while True:
        try:
            _chat(live, key)
        except openai.AuthenticationError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def _mask_secret(page: Any) -> None:
    # The screenshot goes into the repository; the real (throwaway) secret does not.
    page.locator("#new-secret").evaluate(f"node => node.textContent = {EXAMPLE_SECRET!r}")


@pytest.fixture
def fleet(live: Any, simulator: Callable[..., Any], register_sim: Callable[[Any], Any]) -> Any:
    for name in ("sim-a", "sim-b"):
        register_sim(simulator(name))
    return live


def test_an_owner_creates_uses_rotates_and_revokes_a_key(fleet: Any, page: Any, owner: Actor) -> None:
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, owner.email, owner.password)

    page.goto("/orgs/acme/keys/")
    page.get_by_label("Name").fill("production backend")
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("#new-secret").inner_text()
    assert page.get_by_text("You will not see it again").is_visible()
    assert re.fullmatch(r"pnd_\w+_\w+", secret)
    _mask_secret(page)
    screenshot(page, "key-created")

    page.reload()
    assert page.locator("#new-secret").count() == 0
    assert secret not in page.content()
    assert page.get_by_role("link", name="production backend").is_visible()
    assert _chat(fleet, secret)
    page.reload()
    screenshot(page, "keys")

    page.get_by_role("link", name="production backend").click()
    screenshot(page, "key-detail")
    page.get_by_label("Keep the old secret working for").select_option("0")
    page.get_by_role("button", name="Rotate key").click()
    successor = page.locator("#new-secret").inner_text()
    assert successor != secret
    assert _refused(fleet, secret)
    assert _chat(fleet, successor)

    page.goto("/orgs/acme/keys/")
    successor_key = ApiKey.objects.get(name="production backend", rotated_from__isnull=False)
    page.locator(f"#key-{successor_key.pk}").get_by_role("button", name="Revoke").click()
    page.locator(f"#key-{successor_key.pk}").get_by_text("revoked").wait_for()
    assert _refused(fleet, successor)
    assert_same_origin(page)


@pytest.mark.parametrize("role", ["owner", "admin", "member", "support", "operator", "signed out"])
def test_every_page_opens_for_each_role_from_its_own_origin_only(
    page: Any, role: str, request: pytest.FixtureRequest, owner: Actor, admin: Actor, member: Actor
) -> None:
    actor = None if role == "signed out" else request.getfixturevalue(role)
    if actor is not None:
        _session_for(page, actor.user)
    paths = [*PAGES, f"/orgs/acme/keys/{member.api_key.pk}/"]  # the member's own key
    expected = {
        "owner": dict.fromkeys(paths, 200),
        "admin": dict.fromkeys(paths, 200),
        "member": {**dict.fromkeys(paths, 200), "/orgs/acme/audit/": 403},
        "support": dict.fromkeys(paths, 404),
        "operator": dict.fromkeys(paths, 404),
        "signed out": dict.fromkeys(paths, 200),  # the sign-in page, after the redirect
    }[role]
    seen = {}
    for path in paths:
        response = page.goto(path)
        seen[path] = response.status
        assert ("/accounts/login/" in page.url) == (role == "signed out")
        assert_same_origin(page)
        if role == "owner" and path in PAGES:
            screenshot(page, {"/orgs/acme/": "org-overview"}.get(path, path.strip("/").split("/")[-1]))
    assert seen == expected
