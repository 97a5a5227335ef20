"""API key pages: a secret is shown once, in the response that made it; rotate, reveal, revoke, policy."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.sessions.models import Session
from django.utils import timezone
from rest_framework.test import APIClient

from apps.console.tests.conftest import signed_in
from apps.keys.models import ApiKey
from apps.keys.services import api_key_rotate, api_key_update
from testing.actors import Actor

pytestmark = pytest.mark.django_db

KEYS = "/orgs/acme/keys/"
HTMX = {"HTTP_HX_REQUEST": "true"}
SECRET = re.compile(r"pnd_[a-z0-9]+_[A-Za-z0-9]+")


def _secret_in(content: bytes) -> str:
    match = re.search(rb'id="new-secret"[^>]*>(pnd_[^<]+)<', content)
    assert match, "no secret on the page"
    return match.group(1).decode()


def _selected(page: str, field: str) -> str:
    select = page[page.index(f'name="{field}"') :].split("</select>")[0]
    return re.search(r'<option value="(\d*)" selected>', select).group(1)  # type: ignore[union-attr]


def _works(secret: str) -> bool:
    return APIClient().get("/api/v1/me", HTTP_X_API_KEY=secret).status_code == 200


def test_a_new_key_is_shown_once_and_a_reload_shows_it_no_more(member: Actor) -> None:
    client = signed_in(member)

    created = client.post(KEYS, {"name": "ci"}, **HTMX)
    secret = _secret_in(created.content)
    reloaded = client.get(KEYS)

    assert created.status_code == 200
    assert "no-store" in created["Cache-Control"]
    assert b"You will not see it again" in created.content
    assert _works(secret)
    assert reloaded.status_code == 200
    assert b"ci" in reloaded.content
    assert secret.encode() not in reloaded.content
    assert secret[-4:].encode() in reloaded.content  # the list names it by prefix and last four


def test_without_htmx_the_secret_is_a_page_of_its_own_and_never_stored(member: Actor) -> None:
    client = signed_in(member)

    created = client.post(KEYS, {"name": "cron"})
    secret = _secret_in(created.content)

    assert created.status_code == 200
    assert b"<html" in created.content
    assert not any(secret in str(session.get_decoded()) for session in Session.objects.all())


def test_a_blank_name_is_an_error_next_to_the_field_and_creates_nothing(member: Actor) -> None:
    response = signed_in(member).post(KEYS, {"name": " "}, **HTMX)

    assert response.status_code == 200
    assert b'class="errorlist"' in response.content
    assert not SECRET.search(response.content.decode())
    assert ApiKey.objects.filter(user=member.user).count() == 1


def test_an_expiry_in_the_past_is_refused_next_to_the_field(member: Actor) -> None:
    yesterday = (timezone.localdate() - timedelta(days=1)).isoformat()

    response = signed_in(member).post(KEYS, {"name": "old", "expires_on": yesterday})

    assert b"Choose today or a later day." in response.content
    assert not ApiKey.objects.filter(name="old").exists()


def test_a_member_sees_only_their_own_keys(member: Actor, owner: Actor) -> None:
    page = signed_in(member).get(KEYS).content

    assert member.api_key.prefix.encode() in page
    assert owner.api_key.prefix.encode() not in page


def test_an_admin_sees_every_key_but_no_control_on_the_owners(admin: Actor, owner: Actor, member: Actor) -> None:
    page = signed_in(admin).get(KEYS).content.decode()

    assert owner.api_key.prefix in page
    owner_row = page[page.index(f'id="key-{owner.api_key.pk}"') :].split("</tr>")[0]
    member_row = page[page.index(f'id="key-{member.api_key.pk}"') :].split("</tr>")[0]
    assert "Revoke" not in owner_row
    assert "Revoke" in member_row


def test_rotating_your_key_shows_the_successor_once_and_stops_the_old_one_at_once(member: Actor) -> None:
    response = signed_in(member).post(f"{KEYS}{member.api_key.pk}/rotate/", {"grace_seconds": 0}, **HTMX)
    successor = _secret_in(response.content)

    assert "no-store" in response["Cache-Control"]
    assert _works(successor)
    assert not _works(member.key)


def test_an_admin_rotating_a_members_key_never_sees_it_and_the_member_reveals_it_once(
    admin: Actor, member: Actor
) -> None:
    rotated = signed_in(admin).post(f"{KEYS}{member.api_key.pk}/rotate/", {"grace_seconds": 3600})
    successor = ApiKey.objects.get(rotated_from=member.api_key)
    member_page = signed_in(member).get(KEYS).content.decode()
    revealed = signed_in(member).post(f"{KEYS}{successor.pk}/reveal/")
    again = signed_in(member).post(f"{KEYS}{successor.pk}/reveal/")

    assert rotated.status_code == 302
    assert "awaiting reveal" in member_page
    assert _works(_secret_in(revealed.content))
    assert again.status_code == 302
    assert not SECRET.search(again.content.decode())


def test_an_owner_cannot_reveal_a_members_scheduled_successor(owner: Actor, member: Actor) -> None:
    successor, _ = api_key_rotate(key=member.api_key, actor=None, grace=timedelta(hours=1), reveal_later=True)

    response = signed_in(owner).post(f"{KEYS}{successor.pk}/reveal/")

    assert response.status_code == 403
    assert ApiKey.objects.get(pk=successor.pk).awaiting_reveal


def test_revoking_from_the_list_swaps_the_row_for_its_revoked_version(member: Actor) -> None:
    response = signed_in(member).post(
        f"{KEYS}{member.api_key.pk}/revoke/", HTTP_HX_TARGET=f"key-{member.api_key.pk}", **HTMX
    )

    assert response.status_code == 200
    assert response.content.decode().lstrip().startswith(f'<tr id="key-{member.api_key.pk}"')
    assert b"revoked" in response.content
    assert not _works(member.key)


def test_revoking_from_the_key_page_goes_back_to_the_list(member: Actor) -> None:
    response = signed_in(member).post(f"{KEYS}{member.api_key.pk}/revoke/", **HTMX)

    assert response["HX-Redirect"] == KEYS
    assert ApiKey.objects.get(pk=member.api_key.pk).revoked_at is not None


def test_an_admin_cannot_revoke_the_owners_key_by_posting_directly(admin: Actor, owner: Actor) -> None:
    response = signed_in(admin).post(f"{KEYS}{owner.api_key.pk}/revoke/")

    assert response.status_code == 403
    assert _works(owner.key)


def test_expiry_and_rotation_schedule_are_saved(member: Actor) -> None:
    day = (timezone.localdate() + timedelta(days=30)).isoformat()
    form = {"name": "renamed", "expires_on": day, "rotate_every_days": "90", "rotation_grace_seconds": "3600"}

    client = signed_in(member)

    response = client.post(f"{KEYS}{member.api_key.pk}/", form)

    key = ApiKey.objects.get(pk=member.api_key.pk)
    assert response.status_code == 302
    assert (key.name, key.expires_at.date().isoformat(), key.rotate_every_days, key.rotation_grace_seconds) == (
        "renamed",
        day,
        90,
        3600,
    )
    assert b"Saved the settings of renamed." in client.get(response["Location"]).content


def test_a_grace_outside_the_choices_is_an_error_and_rotates_nothing(member: Actor) -> None:
    response = signed_in(member).post(f"{KEYS}{member.api_key.pk}/rotate/", {"grace_seconds": "99999999"})

    assert response.status_code == 200
    assert b'class="errorlist"' in response.content
    assert not ApiKey.objects.filter(rotated_from=member.api_key).exists()


def test_saving_a_name_keeps_a_schedule_and_grace_set_through_the_api(member: Actor) -> None:
    api_key_update(key=member.api_key, actor=member.user, rotate_every_days=45, rotation_grace_seconds=120)
    client = signed_in(member)
    page = client.get(f"{KEYS}{member.api_key.pk}/").content.decode()
    form = {
        "name": "renamed",
        **{field: _selected(page, field) for field in ("rotate_every_days", "rotation_grace_seconds")},
    }

    client.post(f"{KEYS}{member.api_key.pk}/", form)

    key = ApiKey.objects.get(pk=member.api_key.pk)
    assert (key.name, key.rotate_every_days, key.rotation_grace_seconds) == ("renamed", 45, 120)
