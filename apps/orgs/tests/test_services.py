"""Service rules that hold whoever calls them: platform roles, audit request ids, cache eviction."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group

from apps.audit.models import AuditEvent
from apps.audit.services import audit
from apps.keys.authentication import key_cache, load_principal
from apps.keys.services import api_key_revoke, api_key_rotate
from apps.orgs.platform import is_operator, is_support
from apps.orgs.services import membership_remove, org_delete, platform_role_grant
from pendra_console.api.exceptions import ValidationError
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
        event = audit(member.user, AuditEvent.Type.KEY_CHANGED, member.api_key)
    finally:
        current_request_id.reset(token)
    assert event.request_id == "req_0123456789abcdef01234567"


def _cached(public_id: str) -> bool:
    return key_cache.peek(public_id) is not None


def test_revoking_evicts_the_gateway_cache(member: Actor) -> None:
    key_cache.store(member.api_key.public_id, load_principal(member.api_key.public_id))
    api_key_revoke(key=member.api_key, actor=member.user)
    assert not _cached(member.api_key.public_id)


def test_rotating_evicts_the_gateway_cache(member: Actor) -> None:
    key_cache.store(member.api_key.public_id, load_principal(member.api_key.public_id))
    api_key_rotate(key=member.api_key, actor=member.user, grace=timedelta(0))
    assert not _cached(member.api_key.public_id)


def test_removing_a_member_evicts_their_keys(owner: Actor, member: Actor) -> None:
    key_cache.store(member.api_key.public_id, load_principal(member.api_key.public_id))
    membership_remove(membership=member.user.memberships.get(), actor=owner.user)
    assert not _cached(member.api_key.public_id)


def test_deleting_an_org_evicts_its_keys(owner: Actor, member: Actor) -> None:
    key_cache.store(member.api_key.public_id, load_principal(member.api_key.public_id))
    org_delete(org=member.org, actor=owner.user)
    assert not _cached(member.api_key.public_id)
