"""Sign-up, verification and the org's two-factor requirement, over HTTP."""

from __future__ import annotations

import re
from typing import Any

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client
from django.urls import reverse

from apps.accounts.models import OrgSecurity
from apps.audit.models import AuditEvent
from apps.orgs.models import Membership, Organisation, Role
from testing.actors import Actor

pytestmark = pytest.mark.django_db

SIGNUP = {"email": "ada@lovelace.test", "organisation": "Analytical Engines", "password1": "difference-engine-1843"}


def _with_two_factor(actor: Actor) -> str:
    """The actor has set up an authenticator app; returns its secret."""
    secret = generate_totp_secret()
    TOTP.activate(actor.user, secret)
    return secret


def _signed_in(actor: Actor) -> Client:
    client = Client()
    client.force_login(actor.user)
    return client


def test_sign_up_creates_the_user_and_an_org_they_own_and_emails_a_verification_link(client: Client) -> None:
    response = client.post(reverse("account_signup"), SIGNUP)

    assert response.status_code == 302
    assert response["Location"] == reverse("account_email_verification_sent")
    membership = Membership.objects.select_related("org", "user").get(user__email="ada@lovelace.test")
    assert (membership.org.name, membership.role, membership.user.username) == (
        "Analytical Engines",
        Role.OWNER,
        "ada@lovelace.test",
    )
    assert len(mail.outbox) == 1
    assert re.search(r"/accounts/confirm-email/\S+", mail.outbox[0].body)


def test_an_unverified_user_cannot_open_the_console(client: Client) -> None:
    client.post(reverse("account_signup"), SIGNUP)

    signed_in = client.post(reverse("account_login"), {"login": SIGNUP["email"], "password": SIGNUP["password1"]})
    console = client.get(reverse("console:home"))

    assert signed_in["Location"] == reverse("account_email_verification_sent")
    assert console.status_code == 302
    assert console["Location"].startswith(reverse("account_login"))


@pytest.mark.parametrize("name", ["", "   "])
def test_sign_up_without_an_organisation_name_is_refused_and_creates_nothing(client: Client, name: str) -> None:
    response = client.post(reverse("account_signup"), {**SIGNUP, "organisation": name})

    assert response.status_code == 200
    assert "Give your organisation a name." in response.content.decode()
    assert not get_user_model().objects.filter(email=SIGNUP["email"]).exists()
    assert not Organisation.objects.exists()


def test_sign_up_on_the_way_to_an_invitation_creates_no_org(client: Client) -> None:
    next_url = reverse("console:invitation-accept") + "?token=inv_x"

    response = client.post(reverse("account_signup"), {**SIGNUP, "organisation": "", "next": next_url})

    assert response.status_code == 302
    assert get_user_model().objects.filter(email=SIGNUP["email"]).exists()
    assert not Organisation.objects.exists()


def test_sign_up_with_an_email_too_long_for_a_username_is_refused(client: Client) -> None:
    response = client.post(reverse("account_signup"), {**SIGNUP, "email": "a" * 150 + "@example.test"})

    assert response.status_code == 200
    assert not get_user_model().objects.exists()


def test_the_old_sign_in_address_leads_to_the_new_one_with_its_next(client: Client) -> None:
    response = client.get("/login/?next=/orgs/acme/")

    assert response.status_code == 302
    assert response["Location"] == reverse("account_login") + "?next=/orgs/acme/"


def test_an_owner_without_two_factor_cannot_require_it_of_others(owner: Actor) -> None:
    response = _signed_in(owner).post(
        reverse("console:org-security", args=[owner.org.slug]), {"require_two_factor": "on"}
    )

    assert response.status_code == 400
    assert "Set up two-factor sign-in for your own account first." in response.content.decode()
    assert not OrgSecurity.objects.filter(require_two_factor=True).exists()


def test_an_owner_requires_two_factor_and_a_member_without_it_is_sent_to_set_it_up(owner: Actor, member: Actor) -> None:
    _with_two_factor(owner)
    response = _signed_in(owner).post(
        reverse("console:org-security", args=[owner.org.slug]), {"require_two_factor": "on"}
    )

    page = _signed_in(member).get(reverse("console:keys", args=[owner.org.slug]))

    assert response.status_code == 302
    assert page.status_code == 302
    assert page["Location"] == reverse("mfa_activate_totp")
    event = AuditEvent.objects.filter(org=owner.org, event_type=AuditEvent.Type.ORG_CHANGED).latest("id")
    assert event.data == {"require_two_factor": {"from": False, "to": True}}


def test_a_member_who_has_two_factor_uses_the_console_as_before(owner: Actor, member: Actor) -> None:
    _with_two_factor(owner)
    _with_two_factor(member)
    _signed_in(owner).post(reverse("console:org-security", args=[owner.org.slug]), {"require_two_factor": "on"})

    page = _signed_in(member).get(reverse("console:keys", args=[owner.org.slug]))

    assert page.status_code == 200


def test_the_admin_api_is_not_redirected_by_the_two_factor_requirement(owner: Actor, member: Actor) -> None:
    _with_two_factor(owner)
    _signed_in(owner).post(reverse("console:org-security", args=[owner.org.slug]), {"require_two_factor": "on"})

    response = member.client().get(f"/api/v1/orgs/{owner.org.slug}/")

    assert response.status_code == 200


@pytest.mark.parametrize(("actor_name", "status"), [("admin", 403), ("member", 403), ("outsider", 404)])
def test_only_an_owner_sees_or_changes_the_security_page(
    request: Any, owner: Actor, actor_name: str, status: int
) -> None:
    actor: Actor = request.getfixturevalue(actor_name)
    url = reverse("console:org-security", args=[owner.org.slug])

    seen = _signed_in(actor).get(url)
    changed = _signed_in(actor).post(url, {"require_two_factor": "on"})

    assert (seen.status_code, changed.status_code) == (status, status)
    assert not OrgSecurity.objects.exists()
