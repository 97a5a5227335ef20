"""The organisation overview and the owner's rename, transfer and typed-confirmation delete."""

from __future__ import annotations

import pytest
from django.utils import timezone

from apps.console.tests.conftest import signed_in
from apps.orgs.models import Membership, Organisation, Role
from apps.requestlog.writer import write_records
from testing.actors import Actor

pytestmark = pytest.mark.django_db

ORG = "/orgs/acme/"


def test_the_overview_shows_plan_members_keys_and_this_months_use(owner: Actor, member: Actor) -> None:
    # A billed success as the gateway's recorder writes it, roll-up included (the browser test bills one for real).
    write_records(
        [],
        [
            {
                "request_uid": "u1",
                "request_id": "req_1",
                "org_id": owner.org.pk,
                "api_key_id": owner.api_key.pk,
                "route": "/v1/chat/completions",
                "model": "sim-chat",
                "prompt_tokens": 3,
                "completion_tokens": 4,
                "total_tokens": 7,
                "created_at": timezone.now(),
            }
        ],
    )

    page = signed_in(owner).get(ORG).content.decode()

    assert "Team" in page
    assert '<p class="stat-value"><a href="/orgs/acme/members/">2</a></p>' in page
    assert '<p class="stat-value"><a href="/orgs/acme/keys/">2</a></p>' in page
    assert '<p class="stat-value">1</p>' in page
    assert '<p class="stat-value">7</p>' in page


def test_a_member_sees_no_owner_controls(member: Actor) -> None:
    page = signed_in(member).get(ORG).content

    for control in (b"Rename", b"Transfer ownership", b"Delete Acme"):
        assert control not in page


def test_the_owner_renames(owner: Actor) -> None:
    response = signed_in(owner).post(f"{ORG}rename/", {"name": "Acme Corp"})

    assert response.status_code == 302
    assert Organisation.objects.get(slug="acme").name == "Acme Corp"


def test_delete_needs_the_slug_typed_exactly(owner: Actor) -> None:
    refused = signed_in(owner).post(f"{ORG}delete/", {"confirm": "Acme"})

    assert refused.status_code == 200
    assert b"Type acme exactly" in refused.content
    assert Organisation.objects.filter(slug="acme").exists()


def test_the_owner_deletes_with_the_slug_typed(owner: Actor) -> None:
    response = signed_in(owner).post(f"{ORG}delete/", {"confirm": "acme"})

    assert response.status_code == 302
    assert not Organisation.objects.filter(slug="acme").exists()


def test_the_owner_transfers_ownership_and_becomes_an_admin(owner: Actor, member: Actor) -> None:
    target = Membership.objects.get(user=member.user)

    response = signed_in(owner).post(f"{ORG}transfer/", {"member": target.pk})

    assert response.status_code == 302
    assert Membership.objects.get(pk=target.pk).role == Role.OWNER
    assert Membership.objects.get(user=owner.user).role == Role.ADMIN


def test_a_transfer_to_someone_outside_the_org_is_refused(owner: Actor, outsider: Actor) -> None:
    foreign = Membership.objects.get(user=outsider.user)

    response = signed_in(owner).post(f"{ORG}transfer/", {"member": foreign.pk})

    assert response.status_code == 200
    assert Membership.objects.get(pk=foreign.pk).role == Role.OWNER
    assert Membership.objects.get(user=owner.user).role == Role.OWNER
