"""The operators' plan page of one org: a dedicated plan with per-org overrides, audited, applied
to the org's limits; support staff and org users are refused."""

from __future__ import annotations

import pytest

from apps.audit.models import AuditEvent
from apps.console.tests.conftest import signed_in
from apps.plans.selectors import plan_for_org, subscription_for_org
from testing.actors import Actor

pytestmark = pytest.mark.django_db

PAGE = "/platform/orgs/acme/plan/"


def test_an_operator_sets_a_dedicated_plan_with_overrides(operator: Actor, owner: Actor) -> None:
    client = signed_in(operator)
    assert "On <strong>Team</strong>" in client.get(PAGE).content.decode()

    response = client.post(PAGE, {"plan": "dedicated", "chat_rpm": "50000", "max_keys": "unlimited"}, follow=True)

    assert "is on Dedicated with its overrides" in response.content.decode()
    subscription = subscription_for_org(owner.org.pk)  # type: ignore[union-attr]
    assert subscription.plan.slug == "dedicated"
    assert subscription.overrides == {"chat_rpm": 50000, "max_keys": None}
    assert plan_for_org(owner.org.pk).chat_rpm == 50000  # type: ignore[union-attr]
    assert [e.data for e in AuditEvent.objects.filter(event_type="plan.changed").order_by("id")] == [
        {"from": "team", "to": "dedicated"},
        {"overrides": [{}, {"chat_rpm": 50000, "max_keys": None}]},
    ]
    # The owner's own plan page shows the limits that apply, overrides included, and no switch.
    page = signed_in(owner).get("/orgs/acme/plan/").content.decode()
    assert "50,000" in page
    assert "Upgrade to" not in page and "Switch to" not in page


@pytest.mark.parametrize("value", ["-5", "lots", "unlimited"])
def test_a_bad_override_is_refused_next_to_its_field(operator: Actor, owner: Actor, value: str) -> None:
    response = signed_in(operator).post(PAGE, {"plan": "dedicated", "chat_rpm": value})

    assert response.status_code == 200
    assert "A whole number." in response.content.decode()
    assert subscription_for_org(owner.org.pk).plan.slug == "team"  # type: ignore[union-attr]


@pytest.mark.parametrize("who", ["support", "owner", "member"])
def test_only_operators_open_it(who: str, request: pytest.FixtureRequest) -> None:
    actor: Actor = request.getfixturevalue(who)

    assert signed_in(actor).get(PAGE).status_code == 403
    assert signed_in(actor).post(PAGE, {"plan": "dedicated"}).status_code == 403
