"""No console page's query count grows with its rows: 500 keys, 500 members, 500 audit events."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.console.tests.conftest import signed_in
from apps.keys.models import ApiKey
from apps.orgs.invitations import invitation_create
from apps.orgs.models import Invitation, Membership, Role
from apps.requestlog.writer import write_records
from testing.actors import Actor

pytestmark = pytest.mark.django_db

MAX_QUERIES = 15
PAGES = ["/orgs/acme/", "/orgs/acme/keys/", "/orgs/acme/members/", "/orgs/acme/plan/", "/orgs/acme/audit/"]
PAGES += ["/orgs/acme/security/", "/orgs/acme/dashboard/", "/orgs/acme/usage/"]
PAGES += ["/orgs/acme/usage/?group_by=key", "/orgs/acme/usage/?group_by=member", "/orgs/acme/usage/?group_by=model"]


@pytest.fixture
def crowded(owner: Actor) -> Actor:
    """Acme with 500 more members, each with a key, 500 audit events and 30 pending invitations."""
    assert owner.org is not None
    users = get_user_model().objects.bulk_create(
        get_user_model()(username=f"user{n}@acme.test", email=f"user{n}@acme.test") for n in range(500)
    )
    Membership.objects.bulk_create(Membership(org=owner.org, user=user, role=Role.MEMBER) for user in users)
    ApiKey.objects.bulk_create(
        ApiKey(public_id=f"bulk{n:012d}", org=owner.org, user=user, name=f"key {n}", secret_hash="x" * 64)
        for n, user in enumerate(users)
    )
    AuditEvent.objects.bulk_create(
        AuditEvent(org=owner.org, actor=user, event_type="key.created", data={"n": 1}) for user in users
    )
    # A billed request and a failure per key, so the usage and dashboard pages have 500 of each row.
    now = timezone.now()
    records = [
        {
            "uid": f"u{n}-{status}",
            "request_id": f"crowded-{n:06d}-{status}-0000000",
            "created_at": now - timedelta(hours=n % 700),
            "org_id": owner.org.pk,
            "api_key_id": key.pk,
            "user_id": key.user_id,
            "route": "/v1/chat/completions",
            "method": "POST",
            "model": f"model-{n % 40}",
            "status": status,
            "latency_ms": 1.0,
        }
        for n, key in enumerate(ApiKey.objects.filter(public_id__startswith="bulk"))
        for status in (200, 502)
    ]
    usages = [
        {
            **{k: r[k] for k in ("request_id", "created_at", "org_id", "api_key_id", "route", "model")},
            "request_uid": r["uid"],
            "total_tokens": 9,
        }
        for r in records
        if r["status"] == 200
    ]
    write_records(records, usages)
    for n in range(30):
        invitation_create(org=owner.org, email=f"invitee{n}@example.test", role="member", actor=owner.user)
    assert Invitation.objects.count() == 30
    return owner


@pytest.mark.parametrize("path", [*PAGES, "key-detail"])
def test_a_page_full_of_rows_costs_a_fixed_number_of_queries(
    crowded: Actor, path: str, django_assert_max_num_queries: Any
) -> None:
    if path == "key-detail":
        path = f"/orgs/acme/keys/{ApiKey.objects.filter(name='key 7').get().pk}/"
    client = signed_in(crowded)
    client.get(path)  # warm: the session and the plan catalogue

    with django_assert_max_num_queries(MAX_QUERIES):
        response = client.get(path)

    assert response.status_code == 200
