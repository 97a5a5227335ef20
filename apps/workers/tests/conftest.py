"""Clients for the workers' permission tests: platform staff and an org member, signed in by session.

(The project-wide actors with API keys live in testing/actors.py; these stay local so the
fleet's tests depend on nothing but Django's users and the platform groups.)
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

from apps.orgs.models import Membership, Organisation, PlatformRole, Role


def _client_for(username: str, *, group: str | None = None, org_role: str | None = None) -> APIClient:
    user = get_user_model().objects.create_user(username=username, email=f"{username}@example.com", password="x")
    if group is not None:
        user.groups.add(Group.objects.get_or_create(name=group)[0])
    if org_role is not None:
        org = Organisation.objects.get_or_create(slug="acme", defaults={"name": "Acme"})[0]
        Membership.objects.create(org=org, user=user, role=org_role)
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def staff_client(db: None) -> Callable[[str], APIClient]:
    """``staff_client(kind)`` for kind in operator, support, owner, member, anonymous."""

    def make(kind: str) -> APIClient:
        if kind == "anonymous":
            return APIClient()
        if kind in {PlatformRole.OPERATOR, PlatformRole.SUPPORT}:
            return _client_for(f"{kind}-user", group=kind)
        return _client_for(f"{kind}-user", org_role=Role(kind))

    return make


@pytest.fixture
def operator_api(staff_client: Callable[[str], APIClient]) -> APIClient:
    return staff_client("operator")
