"""Rotating the key-hashing pepper (PENDRA_KEY_PEPPERS): new keys take the first pepper, every
listed pepper is accepted, and a key whose pepper is dropped from the list stops working.

Checked through the admin API (DRF's key authentication) and the /v1 gateway alike.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from rest_framework.test import APIClient

from apps.keys.services import api_key_create
from testing.actors import Actor

OLD, NEW = "old-pepper-" + "o" * 40, "new-pepper-" + "n" * 40


def _new_key(actor: Actor, name: str) -> str:
    _, key = api_key_create(org=actor.org, user=actor.user, actor=actor.user, name=name)
    return key


def _admin_api_status(key: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client.get("/api/v1/orgs/acme/").status_code


@pytest.mark.django_db
def test_a_key_made_with_the_previous_pepper_works_while_that_pepper_is_listed(owner: Actor, settings: Any) -> None:
    settings.PENDRA_KEY_PEPPERS = [OLD]
    key = _new_key(owner, "before rotation")

    settings.PENDRA_KEY_PEPPERS = [NEW, OLD]

    assert _admin_api_status(key) == 200


@pytest.mark.django_db
def test_a_key_made_after_the_rotation_uses_the_new_pepper(owner: Actor, settings: Any) -> None:
    settings.PENDRA_KEY_PEPPERS = [NEW, OLD]
    key = _new_key(owner, "after rotation")

    settings.PENDRA_KEY_PEPPERS = [NEW]

    assert _admin_api_status(key) == 200


@pytest.mark.django_db
def test_dropping_a_pepper_refuses_the_keys_made_with_it(owner: Actor, settings: Any) -> None:
    settings.PENDRA_KEY_PEPPERS = [OLD]
    key = _new_key(owner, "before rotation")

    settings.PENDRA_KEY_PEPPERS = [NEW]

    assert _admin_api_status(key) == 401


def test_the_gateway_accepts_every_listed_pepper_and_refuses_a_dropped_one(
    live: Any, owner: Actor, settings: Any
) -> None:
    settings.PENDRA_KEY_PEPPERS = [OLD]
    old_key = _new_key(owner, "before rotation")
    settings.PENDRA_KEY_PEPPERS = [NEW, OLD]
    new_key = _new_key(owner, "after rotation")

    def status(key: str) -> int:
        return httpx.get(f"{live.url}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=10).status_code

    assert (status(old_key), status(new_key)) == (200, 200)
    settings.PENDRA_KEY_PEPPERS = [NEW]
    assert (status(old_key), status(new_key)) == (401, 200)
