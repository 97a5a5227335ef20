"""The plan catalogue and an organisation's plan over the admin API."""

from __future__ import annotations

import pytest

from apps.audit.models import AuditEvent
from apps.plans.models import Plan
from apps.plans.selectors import plan_cache
from testing.actors import Actor

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_plan_cache() -> None:
    plan_cache.clear()


def test_anyone_signed_in_lists_the_public_catalogue_in_increasing_order(member: Actor) -> None:
    Plan.objects.filter(slug="enterprise").update(is_public=False)

    response = member.client().get("/api/v1/plans/")

    assert response.status_code == 200
    plans = response.json()["results"]
    assert [p["slug"] for p in plans] == ["free", "team", "pro", "scale"]
    assert plans[0]["chat_rpm"] < plans[2]["chat_rpm"] < plans[3]["chat_rpm"]
    # The default sits above the trial tier: production limits, not a taster.
    assert plans[0]["concurrent_streams"] < plans[1]["concurrent_streams"]


def test_operators_also_see_private_plans(operator: Actor) -> None:
    Plan.objects.filter(slug="enterprise").update(is_public=False)

    response = operator.client().get("/api/v1/plans/")

    assert [p["slug"] for p in response.json()["results"]] == [
        "free",
        "team",
        "pro",
        "scale",
        "enterprise",
        "dedicated",
    ]


def test_the_catalogue_needs_authentication(api) -> None:  # type: ignore[no-untyped-def]
    assert api.get("/api/v1/plans/").status_code == 401


def test_an_operator_edits_a_plan_and_it_is_audited(operator: Actor) -> None:
    response = operator.client().patch("/api/v1/plans/free/", {"chat_rpm": 90, "name": "Free"}, format="json")

    assert response.status_code == 200
    assert response.json()["chat_rpm"] == 90
    event = AuditEvent.objects.get(event_type="plan.edited")
    assert event.data == {"changes": {"chat_rpm": [60, 90]}}
    assert event.actor == operator.user


@pytest.mark.parametrize("who", ["owner", "member", "support"])
def test_only_operators_edit_plans(who: str, request: pytest.FixtureRequest) -> None:
    actor: Actor = request.getfixturevalue(who)

    response = actor.client().patch("/api/v1/plans/free/", {"chat_rpm": 1}, format="json")

    assert response.status_code == 403
    assert response.json()["detail"] == "This action requires the operator role."
    assert Plan.objects.get(slug="free").chat_rpm == 60


@pytest.mark.parametrize(
    ("body", "field"),
    [({"chat_rpm": -1}, "chat_rpm"), ({"slug": "cheap"}, "slug"), ({"chat_rpm": "many"}, "chat_rpm")],
)
def test_a_bad_plan_edit_is_a_400_naming_the_field_and_changes_nothing(operator: Actor, body: dict, field: str) -> None:
    response = operator.client().patch("/api/v1/plans/free/", body, format="json")

    assert response.status_code == 400
    assert response.json()["detail"].startswith(f"{field}: ")
    assert Plan.objects.get(slug="free").chat_rpm == 60


def test_an_unknown_plan_is_a_404(operator: Actor) -> None:
    response = operator.client().patch("/api/v1/plans/gold/", {"chat_rpm": 1}, format="json")

    assert response.status_code == 404
    assert response.json()["detail"] == "Plan not found."


@pytest.mark.parametrize("who", ["owner", "admin", "member"])
def test_members_read_their_org_plan(who: str, request: pytest.FixtureRequest) -> None:
    actor: Actor = request.getfixturevalue(who)

    response = actor.client().get("/api/v1/orgs/acme/plan/")

    assert response.status_code == 200
    assert response.json()["plan"]["slug"] == "team"
    assert response.json()["plan"]["max_keys"] == 100


def test_the_owner_changes_the_plan_and_it_is_audited(owner: Actor) -> None:
    response = owner.client().put("/api/v1/orgs/acme/plan/", {"plan": "pro"}, format="json")

    assert response.status_code == 200
    assert response.json()["plan"]["slug"] == "pro"
    assert owner.client().get("/api/v1/orgs/acme/plan/").json()["plan"]["slug"] == "pro"
    event = AuditEvent.objects.get(event_type="plan.changed")
    assert event.data == {"from": "team", "to": "pro"}
    assert event.org == owner.org


@pytest.mark.parametrize("who", ["admin", "member"])
def test_only_the_owner_changes_the_plan_and_a_refusal_changes_nothing(
    who: str, request: pytest.FixtureRequest
) -> None:
    actor: Actor = request.getfixturevalue(who)

    response = actor.client().put("/api/v1/orgs/acme/plan/", {"plan": "pro"}, format="json")

    assert response.status_code == 403
    assert response.json()["detail"] == "This action requires the owner role."
    assert actor.client().get("/api/v1/orgs/acme/plan/").json()["plan"]["slug"] == "team"
    assert not AuditEvent.objects.filter(event_type="plan.changed").exists()


@pytest.mark.parametrize("method", ["get", "put"])
def test_an_outsider_gets_404_for_another_orgs_plan(outsider: Actor, method: str) -> None:
    response = getattr(outsider.client(), method)("/api/v1/orgs/acme/plan/", {"plan": "pro"}, format="json")

    assert response.status_code == 404


@pytest.mark.parametrize("body", [{"plan": "gold"}, {}, {"plan": "pro", "since": "now"}])
def test_a_bad_plan_change_is_a_400_and_changes_nothing(owner: Actor, body: dict) -> None:
    response = owner.client().put("/api/v1/orgs/acme/plan/", body, format="json")

    assert response.status_code == 400
    assert response.json()["detail"]
    assert owner.client().get("/api/v1/orgs/acme/plan/").json()["plan"]["slug"] == "team"


def test_an_owner_cannot_pick_a_private_plan(owner: Actor) -> None:
    Plan.objects.filter(slug="enterprise").update(is_public=False)

    response = owner.client().put("/api/v1/orgs/acme/plan/", {"plan": "enterprise"}, format="json")

    assert response.status_code == 400
    assert response.json()["detail"] == "plan: Unknown plan 'enterprise'; choose one of: free, team, pro, scale."
