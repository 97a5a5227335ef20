"""Members and invitations: the owner invites by email, the link works signed out, roles and removal."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.urls import reverse

from apps.console.tests.conftest import signed_in
from apps.keys.models import ApiKey
from apps.orgs.models import Invitation, Membership, Role
from testing.actors import Actor, make_user

pytestmark = pytest.mark.django_db(transaction=True)  # the invitation email is sent on commit

MEMBERS = "/orgs/acme/members/"


def _link(message: mail.EmailMessage) -> str:
    match = re.search(r"https?://\S+", message.body)
    assert match, message.body
    return match.group(0)


def _invite(owner: Actor, email: str, role: str = "member") -> str:
    response = signed_in(owner).post(f"{MEMBERS}invite/", {"email": email, "role": role})
    assert response.status_code == 302
    [message] = [m for m in mail.outbox if email in m.to]
    return _link(message)


def test_an_invitation_email_carries_a_link_that_works_once(owner: Actor) -> None:
    link = _invite(owner, "new@example.test", "admin")
    newcomer = make_user("new@example.test")
    client = signed_in(None)
    client.force_login(newcomer)

    page = client.get(link)
    accepted = client.post(reverse("console:invitation-accept"), {"token": link.split("token=")[1]})
    again = client.get(link)

    assert b"Join Acme" in page.content
    assert accepted.status_code == 302
    assert accepted["Location"] == "/orgs/acme/"
    assert Membership.objects.get(user=newcomer, org__slug="acme").role == Role.ADMIN
    assert b"This invitation is accepted" in again.content


def test_signed_out_the_link_offers_sign_in_that_comes_back_to_it(owner: Actor) -> None:
    link = _invite(owner, "new@example.test")

    page = signed_in(None).get(link).content.decode()

    path = link.split("://", 1)[1].split("/", 1)[1]
    assert "Sign in" in page
    assert "next=%2F" + path.replace("/", "%2F").replace("?", "%3F").replace("=", "%3D") in page


def test_an_invitation_for_someone_else_is_not_accepted(owner: Actor, member: Actor) -> None:
    link = _invite(owner, "someone@example.test")

    page = signed_in(member).get(link)
    posted = signed_in(member).post(reverse("console:invitation-accept"), {"token": link.split("token=")[1]})

    assert b"Sign in as someone@example.test to accept" in page.content
    assert posted.status_code == 302
    assert Invitation.objects.get(email="someone@example.test").accepted_at is None


def test_an_unknown_token_is_a_404_page(db: None) -> None:
    response = signed_in(None).get(reverse("console:invitation-accept") + "?token=inv_nonsense")

    assert response.status_code == 404
    assert b"Invitation not found" in response.content


def test_an_invalid_email_is_an_error_next_to_the_field(owner: Actor) -> None:
    response = signed_in(owner).post(f"{MEMBERS}invite/", {"email": "not-an-email", "role": "member"})

    assert response.status_code == 200
    assert b'class="errorlist"' in response.content
    assert mail.outbox == []


def test_the_owner_changes_a_role_and_removes_a_member_whose_keys_stop(owner: Actor, member: Actor) -> None:
    membership = Membership.objects.get(user=member.user)
    client = signed_in(owner)

    client.post(f"{MEMBERS}{membership.pk}/role/", {"role": "admin"})
    role_after = Membership.objects.get(pk=membership.pk).role
    client.post(f"{MEMBERS}{membership.pk}/remove/")

    assert role_after == Role.ADMIN
    assert not Membership.objects.filter(pk=membership.pk).exists()
    assert ApiKey.objects.get(pk=member.api_key.pk).revoked_at is not None


def test_the_last_owner_cannot_demote_themselves(owner: Actor) -> None:
    membership = Membership.objects.get(user=owner.user)
    client = signed_in(owner)

    response = client.post(f"{MEMBERS}{membership.pk}/role/", {"role": "member"}, follow=True)

    assert Membership.objects.get(pk=membership.pk).role == Role.OWNER
    assert b"must keep at least one owner" in response.content


@pytest.mark.parametrize("viewer", ["admin", "member"])
def test_only_the_owner_sees_invite_role_and_remove_controls(
    request: pytest.FixtureRequest, owner: Actor, viewer: str
) -> None:
    others = signed_in(request.getfixturevalue(viewer)).get(MEMBERS).content
    owners = signed_in(owner).get(MEMBERS).content

    for control in (b"Send invitation", b'name="role"', b"Remove", b"Pending invitations"):
        assert control in owners
        assert control not in others


def test_a_member_posting_an_invitation_directly_gets_403(member: Actor) -> None:
    response = signed_in(member).post(f"{MEMBERS}invite/", {"email": "x@example.test", "role": "owner"})

    assert response.status_code == 403
    assert not Invitation.objects.exists()
    assert mail.outbox == []


def test_the_owner_withdraws_a_pending_invitation(owner: Actor) -> None:
    _invite(owner, "late@example.test")
    invitation = Invitation.objects.get(email="late@example.test")

    signed_in(owner).post(f"/orgs/acme/invitations/{invitation.pk}/withdraw/")

    assert Invitation.objects.get(pk=invitation.pk).status == "revoked"
    assert b"late@example.test" not in signed_in(owner).get(MEMBERS).content
