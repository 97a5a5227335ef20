"""Budget settings on the org page and a key's page: owners and admins set and remove them,
members see them; the console calls the same audited service as the admin API."""

from __future__ import annotations

from decimal import Decimal

import pytest

from apps.audit.models import AuditEvent
from apps.console.tests.conftest import signed_in
from apps.plans.models import Budget
from testing.actors import Actor

pytestmark = pytest.mark.django_db

ORG = "/orgs/acme/"


def test_an_admin_sets_the_orgs_budget_and_members_see_it(admin: Actor, member: Actor) -> None:
    response = signed_in(admin).post(f"{ORG}budget/", {"monthly_usd": "250.50"}, follow=True)

    assert "Budget saved" in response.content.decode()
    budget = Budget.objects.get(org=admin.org, api_key=None)
    assert (budget.monthly_usd, budget.hard) == (Decimal("250.50"), False)
    assert AuditEvent.objects.filter(event_type="budget.changed", actor=admin.user).count() == 1
    page = signed_in(member).get(ORG).content.decode()
    assert "Budget <strong>$250.50</strong> (soft: alerts only)" in page
    assert 'action="/orgs/acme/budget/"' not in page  # no form for a member
    assert signed_in(member).post(f"{ORG}budget/", {"monthly_usd": "1"}).status_code == 403
    assert Budget.objects.get(org=admin.org, api_key=None).monthly_usd == Decimal("250.50")


def test_an_owner_sets_and_removes_a_keys_hard_budget(owner: Actor, member: Actor) -> None:
    path = f"{ORG}keys/{member.api_key.pk}/"
    client = signed_in(owner)

    client.post(f"{path}budget/", {"monthly_usd": "5", "hard": "on"})

    assert Budget.objects.get(api_key=member.api_key).hard is True
    page = client.get(path).content.decode()
    assert "Budget <strong>$5.00</strong> (hard: requests are refused once it is spent)" in page
    assert "Spent this month: <strong>$0.00</strong>" in page
    client.post(f"{path}budget/", {"remove": "1"})
    assert not Budget.objects.filter(api_key=member.api_key).exists()
    assert "No budget for this key." in client.get(path).content.decode()


@pytest.mark.parametrize("amount", ["-1", "0", "lots", "0.00001", ""])
def test_a_bad_amount_changes_nothing_and_says_why(owner: Actor, amount: str) -> None:
    response = signed_in(owner).post(f"{ORG}budget/", {"monthly_usd": amount, "hard": "on"}, follow=True)

    assert response.status_code == 200
    assert "Monthly budget (USD):" in response.content.decode()
    assert not Budget.objects.exists()


def test_another_orgs_key_is_not_found(owner: Actor, outsider: Actor) -> None:
    response = signed_in(owner).post(f"{ORG}keys/{outsider.api_key.pk}/budget/", {"monthly_usd": "5"})

    assert response.status_code == 404
    assert not Budget.objects.exists()
