"""The plan page (limits, use now, the catalogue, the owner's change) and the audit log's filters."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.console.tests.conftest import signed_in
from apps.plans.limits import admit
from apps.plans.models import Plan, Subscription
from apps.plans.selectors import plan_cache, subscription_for_org
from testing.actors import Actor

pytestmark = pytest.mark.django_db

PLAN = "/orgs/acme/plan/"
AUDIT = "/orgs/acme/audit/"


def test_the_plan_page_shows_each_limit_with_this_minutes_use(owner: Actor) -> None:
    assert owner.org is not None
    subscription_for_org(owner.org.pk)  # the trial tier's small limits show use as a share
    Subscription.objects.filter(org=owner.org).update(plan=Plan.objects.get(slug="free"))
    plan_cache.clear()
    for _ in range(3):
        admit(org_id=owner.org.pk, kind="chat", streaming=False)

    page = signed_in(owner).get(PLAN).content.decode()

    chat_row = page[page.index('<th scope="row">Chat completions</th>') :].split("</tr>")[0]
    assert "60" in chat_row
    assert '<meter min="0" max="60" value="3"' in chat_row
    for offer in ("Free", "Pro", "Scale"):
        assert offer in page


def test_the_owner_upgrades_and_the_new_limits_show(owner: Actor) -> None:
    client = signed_in(owner)

    response = client.post(f"{PLAN}change/", {"plan": "pro"})

    assert response.status_code == 302
    assert subscription_for_org(owner.org.pk).plan.slug == "pro"  # type: ignore[union-attr]
    assert "is now on Pro" in client.get(PLAN).content.decode()


def test_a_private_plan_cannot_be_chosen(owner: Actor) -> None:
    Plan.objects.create(
        slug="deal",
        name="Deal",
        is_public=False,
        chat_rpm=1,
        embeddings_rpm=1,
        images_rpm=1,
        audio_rpm=1,
        api_rpm=1,
        chat_tpm=1,
        embeddings_tpm=1,
        concurrent_streams=1,
    )

    signed_in(owner).post(f"{PLAN}change/", {"plan": "deal"})

    assert subscription_for_org(owner.org.pk).plan.slug == "team"  # type: ignore[union-attr]


@pytest.mark.parametrize("viewer", ["admin", "member"])
def test_only_the_owner_sees_the_change_buttons(request: pytest.FixtureRequest, owner: Actor, viewer: str) -> None:
    assert b"Upgrade to Pro" in signed_in(owner).get(PLAN).content
    assert b"Upgrade to Pro" not in signed_in(request.getfixturevalue(viewer)).get(PLAN).content


def test_the_audit_log_filters_by_action_and_actor(owner: Actor, member: Actor) -> None:
    page = signed_in(owner).get(AUDIT, {"action": "key.created", "actor": member.user.pk}).content.decode()

    assert page.count('<span class="badge">key.created</span>') == 1
    assert "member.added" not in page.split("Events")[1]


def test_the_audit_log_filters_by_date(owner: Actor) -> None:
    tomorrow = (timezone.localdate() + timedelta(days=1)).isoformat()

    page = signed_in(owner).get(AUDIT, {"since": tomorrow}).content

    assert b"No events match these filters." in page


def test_the_audit_log_pages_through_many_events(owner: Actor) -> None:
    AuditEvent.objects.bulk_create(
        AuditEvent(org=owner.org, actor=owner.user, event_type="org.changed") for _ in range(120)
    )
    client = signed_in(owner)

    first = client.get(AUDIT).content.decode()
    third = client.get(AUDIT, {"page": 3}).content.decode()

    assert "Page 1 of 3" in first
    assert "Page 3 of 3" in third


@pytest.mark.parametrize(
    "query", [{"actor": "x"}, {"since": "yesterday"}, {"action": "nope"}, {"page": "-1"}, {"actor": "99999999999"}]
)
def test_a_bad_filter_is_shown_as_an_error_never_a_500(owner: Actor, query: dict[str, str]) -> None:
    response = signed_in(owner).get(AUDIT, query)

    assert response.status_code == 200
