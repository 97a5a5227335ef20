"""Console page fixtures: signed-in Django test clients for the named actors, and one invitation."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from apps.gateway.tests.conftest import gateway  # noqa: F401 (a fixture, used by name: the live gateway)
from apps.orgs.invitations import invitation_create
from apps.orgs.models import Invitation
from testing.actors import Actor


def signed_in(actor: Actor | None) -> Client:
    client = Client()
    if actor is not None:
        client.force_login(actor.user)
    return client


@pytest.fixture
def invitation(owner: Actor) -> tuple[Invitation, str]:
    assert owner.org is not None
    return invitation_create(org=owner.org, email="newcomer@example.test", role="member", actor=owner.user)


@pytest.fixture
def everyone(
    owner: Actor, admin: Actor, member: Actor, outsider: Actor, support: Actor, operator: Actor
) -> dict[str, Any]:
    return {
        "owner": owner,
        "admin": admin,
        "member": member,
        "outsider": outsider,
        "support": support,
        "operator": operator,
        "signed out": None,
    }
