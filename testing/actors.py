"""Named actors for tests (owner, admin, member, outsider, support, operator), each with a key.

Everything is created through the services, as production would. Passwords share one
hash computed once per session: PBKDF2 is deliberately slow and tests create many users.
The fixtures only need ``db``, so they work under ``db`` and ``transactional_db`` alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pytest
from django.contrib.auth.hashers import make_password
from django.middleware.csrf import _get_new_csrf_string
from rest_framework.test import APIClient

from apps.accounts.services import email_address_mark_verified
from apps.keys.models import ApiKey
from apps.keys.services import api_key_create
from apps.orgs.models import Organisation, Role
from apps.orgs.services import membership_add, org_create, platform_role_grant, user_create

PASSWORD = "correct-horse-battery-staple-42"  # noqa: S105 (a test password)


@cache
def _password_hash() -> str:
    return make_password(PASSWORD)


@dataclass
class Actor:
    user: Any
    email: str
    password: str
    api_key: ApiKey
    key: str
    org: Organisation | None
    role: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def client(self) -> APIClient:
        """An API client sending this actor's key as ``Authorization: Bearer``."""
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {self.key}")
        return client

    def session_client(self, *, csrf: bool = True) -> APIClient:
        """Signed in with a session and CSRF enforced; ``csrf=False`` omits the token (to test the 403)."""
        client = APIClient(enforce_csrf_checks=True)
        client.force_login(self.user)
        if csrf:
            token = _get_new_csrf_string()
            client.cookies["csrftoken"] = token
            client.credentials(HTTP_X_CSRFTOKEN=token)
        return client


def make_user(email: str) -> Any:
    user = user_create(email=email)
    user.password = _password_hash()
    user.save(update_fields=["password"])
    email_address_mark_verified(user=user)
    return user


def make_actor(*, email: str, org: Organisation | None, role: str = "", user: Any = None) -> Actor:
    user = user or make_user(email)
    api_key, key = api_key_create(org=org, user=user, actor=user, name=f"{role or 'test'} key")
    return Actor(user=user, email=email, password=PASSWORD, api_key=api_key, key=key, org=org, role=role)


def _org_owner(email: str, name: str, slug: str) -> Actor:
    user = make_user(email)
    org = org_create(name=name, slug=slug, owner=user)
    return make_actor(email=email, org=org, role=Role.OWNER, user=user)


@pytest.fixture
def owner(db: None) -> Actor:
    return _org_owner("owner@acme.test", "Acme", "acme")


@pytest.fixture
def org(owner: Actor) -> Organisation:
    assert owner.org is not None
    return owner.org


def _member_of(org: Organisation, by: Actor, email: str, role: str) -> Actor:
    user = make_user(email)
    membership_add(org=org, user=user, role=role, actor=by.user)
    return make_actor(email=email, org=org, role=role, user=user)


@pytest.fixture
def admin(org: Organisation, owner: Actor) -> Actor:
    return _member_of(org, owner, "admin@acme.test", Role.ADMIN)


@pytest.fixture
def member(org: Organisation, owner: Actor) -> Actor:
    return _member_of(org, owner, "member@acme.test", Role.MEMBER)


@pytest.fixture
def outsider(db: None) -> Actor:
    """The owner of another organisation: signed in, with a key, and nothing to do with acme."""
    return _org_owner("owner@globex.test", "Globex", "globex")


@pytest.fixture
def other_org(outsider: Actor) -> Organisation:
    assert outsider.org is not None
    return outsider.org


def _staff(email: str, role: str) -> Actor:
    user = make_user(email)
    platform_role_grant(user=user, role=role)
    return make_actor(email=email, org=None, role=role, user=user)


@pytest.fixture
def support(db: None) -> Actor:
    return _staff("support@pendra.test", "support")


@pytest.fixture
def operator(db: None) -> Actor:
    return _staff("operator@pendra.test", "operator")
