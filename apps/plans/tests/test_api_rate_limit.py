"""The admin API's "api" bucket: per org, scaled to the plan, a 429 that names it."""

from __future__ import annotations

import pytest
from django.utils import timezone

from apps.plans.models import Subscription
from apps.plans.selectors import plan_cache
from apps.plans.tests.factories import plan_factory
from testing.actors import Actor

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_plan_cache() -> None:
    plan_cache.clear()


@pytest.fixture
def tiny(owner: Actor) -> None:
    """acme on a plan that allows two admin-API requests a minute."""
    Subscription.objects.update_or_create(
        org=owner.org, defaults={"plan": plan_factory(name="Tiny", api_rpm=2), "since": timezone.now()}
    )
    # Creating the owner's key cached the default plan; this write goes around the services that
    # would drop it, so drop it here (else the first requests may still count against the old plan).
    plan_cache.clear()


def test_the_request_over_the_plan_limit_gets_a_429_naming_bucket_limit_plan_and_reset(owner: Actor, tiny) -> None:  # type: ignore[no-untyped-def]
    client = owner.client()
    ok = [client.get("/api/v1/plans/") for _ in range(2)]

    refused = client.get("/api/v1/plans/")

    assert [r.status_code for r in ok] == [200, 200]
    assert refused.status_code == 429
    body = refused.json()
    retry_after = int(refused["Retry-After"])
    assert 1 <= retry_after <= 60
    assert body["detail"] == (
        f'Rate limit exceeded for bucket "api" (2 requests/minute on plan Tiny); retry in {retry_after} s'
    )
    assert body["request_id"] == refused["X-Request-Id"]
    assert refused["x-ratelimit-bucket"] == "api"
    assert refused["x-ratelimit-limit-requests"] == "2"
    assert refused["x-ratelimit-remaining-requests"] == "0"


def test_every_key_of_the_org_shares_the_bucket(owner: Actor, member: Actor, tiny) -> None:  # type: ignore[no-untyped-def]
    owner.client().get("/api/v1/plans/")
    member.client().get("/api/v1/plans/")

    assert member.client().get("/api/v1/orgs/acme/plan/").status_code == 429


def test_another_org_has_its_own_bucket(owner: Actor, outsider: Actor, tiny) -> None:  # type: ignore[no-untyped-def]
    for _ in range(3):
        owner.client().get("/api/v1/plans/")

    assert outsider.client().get("/api/v1/plans/").status_code == 200


def test_a_spoofed_forwarded_for_or_client_address_does_not_reset_the_count(owner: Actor, tiny) -> None:  # type: ignore[no-untyped-def]
    client = owner.client()
    for n in range(2):
        client.get("/api/v1/plans/", REMOTE_ADDR=f"10.0.0.{n}")

    spoofed = client.get("/api/v1/plans/", HTTP_X_FORWARDED_FOR="203.0.113.7", REMOTE_ADDR="10.0.0.99")

    assert spoofed.status_code == 429


def test_after_the_owner_upgrades_the_very_next_request_counts_against_the_new_limit(owner: Actor, tiny) -> None:  # type: ignore[no-untyped-def]
    client = owner.client()
    for _ in range(3):
        client.get("/api/v1/plans/")
    assert client.get("/api/v1/plans/").status_code == 429
    bigger = plan_factory(name="Bigger", api_rpm=5)

    # The owner upgrades from the console (a session: its own per-user bucket, not the org's used-up one).
    change = owner.session_client().put("/api/v1/orgs/acme/plan/", {"plan": bigger.slug}, format="json")
    after = [client.get("/api/v1/plans/").status_code for _ in range(6)]

    assert change.status_code == 200
    assert after == [200] * 5 + [429]
    assert "(5 requests/minute on plan Bigger)" in client.get("/api/v1/plans/").json()["detail"]


def test_a_members_attempt_to_upgrade_is_403_and_the_old_limit_still_holds(owner: Actor, member: Actor, tiny) -> None:  # type: ignore[no-untyped-def]
    bigger = plan_factory(name="Bigger", api_rpm=5)

    change = member.session_client().put("/api/v1/orgs/acme/plan/", {"plan": bigger.slug}, format="json")
    statuses = [owner.client().get("/api/v1/plans/").status_code for _ in range(3)]

    assert change.status_code == 403
    assert change.json()["detail"] == "This action requires the owner role."
    assert statuses == [200, 200, 429]
