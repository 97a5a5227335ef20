"""Service rules that hold whoever calls them: platform roles, audit request ids, cache eviction."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group

from apps.keys.authentication import key_cache, load_principal
from apps.keys.services import api_key_revoke, api_key_rotate
from apps.orgs.exceptions import ValidationError
from apps.orgs.models import AuditEvent, Role
from apps.orgs.platform import is_operator, is_support
from apps.orgs.services import audit_record, membership_change_role, platform_role_grant
from pendra_console.request_id import current_request_id
from testing.actors import Actor, make_user

pytestmark = pytest.mark.django_db


def test_granting_a_platform_role_creates_the_group_when_missing() -> None:
    Group.objects.all().delete()
    user = make_user("staff@pendra.test")
    platform_role_grant(user=user, role="operator")
    assert is_operator(user)
    assert not is_support(user)


def test_an_unknown_platform_role_is_refused() -> None:
    with pytest.raises(ValidationError):
        platform_role_grant(user=make_user("x@pendra.test"), role="superuser")


def test_audit_records_carry_the_current_request_id(member: Actor) -> None:
    token = current_request_id.set("req_0123456789abcdef01234567")
    try:
        event = audit_record(event_type=AuditEvent.Type.KEY_CHANGED, org=member.org, actor=member.user)
    finally:
        current_request_id.reset(token)
    assert event.request_id == "req_0123456789abcdef01234567"


def _cached(public_id: str) -> bool:
    return key_cache.cached(public_id)[0]


def test_revoking_evicts_the_gateway_cache(member: Actor) -> None:
    key_cache.store(member.api_key.public_id, load_principal(member.api_key.public_id))
    api_key_revoke(key=member.api_key, actor=member.user)
    assert not _cached(member.api_key.public_id)


def test_rotating_evicts_the_gateway_cache(member: Actor) -> None:
    key_cache.store(member.api_key.public_id, load_principal(member.api_key.public_id))
    api_key_rotate(key=member.api_key, actor=member.user, grace=timedelta(0))
    assert not _cached(member.api_key.public_id)


def test_a_role_change_evicts_all_the_users_keys(owner: Actor, admin: Actor) -> None:
    key_cache.store(admin.api_key.public_id, load_principal(admin.api_key.public_id))
    membership_change_role(membership=admin.user.memberships.get(), role=Role.MEMBER, actor=owner.user)
    assert not _cached(admin.api_key.public_id)
