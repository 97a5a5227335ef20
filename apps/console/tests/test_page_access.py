"""Every console URL for every role: 200, a redirect to sign-in, 403 or 404, never a 500.

The URLs are read from the console's URL configuration, so a page added later is walked
too; each GET and each POST (with an empty form) is tried by each actor.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.urls import URLPattern, reverse
from django.utils import timezone

from apps.console import org_urls
from apps.console.tests.conftest import signed_in
from apps.orgs.models import Invitation, Membership
from apps.requestlog.services import write_records
from apps.webhooks.services import emit_event, endpoint_create
from testing.actors import Actor

pytestmark = pytest.mark.django_db

ROLES = ["owner", "admin", "member", "outsider", "support", "operator", "signed out"]
PAGES = (
    "org-overview",
    "keys",
    "key-detail",
    "members",
    "plan",
    "audit",
    "requests",
    "org-request",
    "dashboard",
    "usage",
)
OWNER_FORMS = ("org-rename", "org-transfer", "org-delete", "member-invite", "member-role", "member-remove")
OWNER_FORMS += ("invitation-withdraw", "plan-change", "org-security")
# Budget cards post here (org overview, key page): owners and admins only.
BUDGET_FORMS = ("org-budget", "key-budget")
# GET of each page by each org role; the key page is the member's own key.
WEBHOOK_PAGES = ("webhooks", "webhook-deliveries")
GET = {
    "owner": {**dict.fromkeys(PAGES + WEBHOOK_PAGES, 200), "org-security": 200},
    "admin": {**dict.fromkeys(PAGES + WEBHOOK_PAGES, 200), "org-security": 403},
    "member": {**dict.fromkeys(PAGES, 200), **dict.fromkeys(WEBHOOK_PAGES, 403), "audit": 403, "org-security": 403},
}
# An empty form POSTed: 200 (the form with its errors), 302 (done, or refused with a message),
# 403 (the role or the key's owner forbids it), 405 (a page without a form).
POST = {
    "owner": {
        **dict.fromkeys(OWNER_FORMS, 200),
        **dict.fromkeys(("member-role", "member-remove", "invitation-withdraw", "plan-change", "org-security"), 302),
        "keys": 200,
        "key-detail": 200,
        "key-rotate": 200,
        "key-reveal": 403,
        "key-revoke": 302,
        "webhooks": 200,
        "webhook-resend": 302,
        "webhook-delete": 302,
        **dict.fromkeys(BUDGET_FORMS, 302),  # an empty budget form: refused with a message
    },
    "admin": {
        **dict.fromkeys(OWNER_FORMS, 403),
        "keys": 200,
        "key-detail": 200,
        "key-rotate": 200,
        "key-reveal": 403,
        "key-revoke": 302,
        "webhooks": 200,
        "webhook-resend": 302,
        "webhook-delete": 302,
        **dict.fromkeys(BUDGET_FORMS, 302),
    },
    "member": {
        **dict.fromkeys(OWNER_FORMS, 403),
        "keys": 200,
        "key-detail": 200,
        "key-rotate": 200,
        "key-reveal": 302,
        "key-revoke": 302,
        **dict.fromkeys(("webhooks", "webhook-resend", "webhook-delete"), 403),
        **dict.fromkeys(BUDGET_FORMS, 403),  # owners and admins set budgets
    },
}


def _members_request(member: Actor) -> str:
    """A request made with the member's key: every role of the org may open its explanation."""
    row = {"uid": "u" * 32, "request_id": "access-table-0000000000000001", "created_at": timezone.now()}
    row.update(org_id=member.org.pk if member.org else None, user_id=member.user.pk, api_key_id=member.api_key.pk)
    write_records([{**row, "route": "/v1/models", "method": "GET", "status": 200, "latency_ms": 1.0}], [])
    return row["request_id"]


def _webhook_delivery(member: Actor) -> dict[str, str]:
    """An endpoint of the org and one delivery to it (never sent: the test commits nothing)."""
    assert member.org is not None
    endpoint = endpoint_create(org=member.org, actor=None, url="http://127.0.0.1:9/hooks", events=["key.expired"])
    emit_event(org=member.org, event="key.expired", data={})
    return {"endpoint_id": str(endpoint.pk), "delivery_id": str(endpoint.deliveries.get().pk)}


def _urls(member: Actor, admin: Actor, invitation: tuple[Invitation, str]) -> list[tuple[str, str]]:
    """(url name, path) of every page under /orgs/<slug>/, with real ids of the org's rows."""
    ids = {
        "slug": "acme",
        "key_id": member.api_key.pk,  # the member's own key, which the owner and the admin manage too
        "member_id": Membership.objects.get(user=member.user).pk,
        "invitation_id": invitation[0].pk,
        "request_id": _members_request(member),
        **_webhook_delivery(member),
    }
    urls = []
    for pattern in org_urls.urlpatterns:
        assert isinstance(pattern, URLPattern)
        names = ["slug", *pattern.pattern.converters]
        urls.append((pattern.name, reverse(f"console:{pattern.name}", kwargs={n: ids[n] for n in names})))
    return urls


@pytest.mark.parametrize("role", ROLES)
def test_every_page_answers_each_role_as_the_role_table_says(
    role: str, everyone: dict[str, Any], member: Actor, admin: Actor, invitation: tuple[Invitation, str]
) -> None:
    urls = _urls(member, admin, invitation)
    assert len(urls) == len(org_urls.urlpatterns) >= 19
    seen = {}
    for name, path in urls:
        seen[name] = (
            signed_in(everyone[role]).get(path).status_code,
            signed_in(everyone[role]).post(path, {}).status_code,
        )
    if role == "signed out":
        expected = {name: (302, 302) for name, _ in urls}
    elif role in {"outsider", "support", "operator"}:
        expected = {name: (404, 404) for name, _ in urls}
    else:
        expected = {name: (GET[role].get(name, 405), POST[role].get(name, 405)) for name, _ in urls}
    assert seen == expected


def test_a_signed_out_visitor_is_sent_to_sign_in_and_back(db: None) -> None:
    response = signed_in(None).get("/orgs/acme/keys/?page=2")

    assert response.status_code == 302
    assert response["Location"] == f"{reverse(settings.LOGIN_URL)}?next=/orgs/acme/keys/%3Fpage%3D2"


def test_a_member_is_told_which_role_an_owner_only_form_needs(member: Actor) -> None:
    response = signed_in(member).post("/orgs/acme/plan/change/", {"plan": "pro"})

    assert response.status_code == 403
    assert b"This action requires the owner role." in response.content


def test_an_unknown_org_and_another_orgs_page_look_the_same(outsider: Actor, owner: Actor) -> None:
    mine_elsewhere = signed_in(outsider).get("/orgs/acme/")
    nowhere = signed_in(outsider).get("/orgs/no-such-org/")

    assert mine_elsewhere.status_code == nowhere.status_code == 404
