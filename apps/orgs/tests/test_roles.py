"""Every cell of DESIGN.md's role table that exists so far, through HTTP, with keys and with sessions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.orgs.models import Role
from testing.actors import Actor, make_user

pytestmark = pytest.mark.django_db

ORG = "/api/v1/orgs/acme"


@dataclass
class Scene:
    actor: Actor
    bystander: Actor  # another member of acme, whose key and membership are the targets
    extra: dict[str, Any] = field(default_factory=dict)


@pytest.fixture
def bystander(org: Any, owner: Actor) -> Actor:
    from testing.actors import _member_of

    return _member_of(org, owner, "bystander@acme.test", Role.MEMBER)


def _membership_id(actor: Actor) -> int:
    return actor.user.memberships.get(org__slug="acme").pk


Action = Callable[[APIClient, Scene], Any]

ACTIONS: dict[str, tuple[Action, int]] = {
    # see org, own keys
    "see the org": (lambda c, s: c.get(f"{ORG}/"), 200),
    "list members": (lambda c, s: c.get(f"{ORG}/members/"), 200),
    "list own keys": (lambda c, s: c.get(f"{ORG}/keys/"), 200),
    # create / rotate / revoke own keys
    "create own key": (lambda c, s: c.post(f"{ORG}/keys/", {"name": "mine"}, format="json"), 201),
    "rotate own key": (
        lambda c, s: c.post(f"{ORG}/keys/{s.actor.api_key.pk}/rotate/", {"grace_seconds": 60}, format="json"),
        201,
    ),
    "revoke own key": (lambda c, s: c.delete(f"{ORG}/keys/{s.actor.api_key.pk}/"), 200),
    # rotate / revoke anyone's key
    "see anyone's key": (lambda c, s: c.get(f"{ORG}/keys/{s.bystander.api_key.pk}/"), 200),
    "rotate anyone's key": (
        lambda c, s: c.post(f"{ORG}/keys/{s.bystander.api_key.pk}/rotate/", {"grace_seconds": 0}, format="json"),
        201,
    ),
    "revoke anyone's key": (lambda c, s: c.delete(f"{ORG}/keys/{s.bystander.api_key.pk}/"), 200),
    "read the audit log": (lambda c, s: c.get(f"{ORG}/audit-events/"), 200),
    # invite / remove members, change roles
    "invite a member": (
        lambda c, s: c.post(f"{ORG}/invitations/", {"email": "new@acme.test", "role": "member"}, format="json"),
        201,
    ),
    "list invitations": (lambda c, s: c.get(f"{ORG}/invitations/"), 200),
    "add a member": (
        lambda c, s: c.post(
            f"{ORG}/members/", {"email": make_user("joiner@x.test").email, "role": "member"}, format="json"
        ),
        201,
    ),
    "remove a member": (lambda c, s: c.delete(f"{ORG}/members/{_membership_id(s.bystander)}/"), 204),
    "change a role": (
        lambda c, s: c.patch(f"{ORG}/members/{_membership_id(s.bystander)}/", {"role": "admin"}, format="json"),
        200,
    ),
    # rename or delete org, transfer ownership
    "rename the org": (lambda c, s: c.patch(f"{ORG}/", {"name": "Acme Two"}, format="json"), 200),
    "delete the org": (lambda c, s: c.delete(f"{ORG}/"), 204),
    "transfer ownership": (
        lambda c, s: c.post(f"{ORG}/transfer-ownership/", {"member_id": _membership_id(s.bystander)}, format="json"),
        200,
    ),
    # see plan and usage; change plan
    "see the plan": (lambda c, s: c.get(f"{ORG}/plan/"), 200),
    "see usage": (lambda c, s: c.get(f"{ORG}/usage/"), 200),
    "change the plan": (lambda c, s: c.put(f"{ORG}/plan/", {"plan": "pro"}, format="json"), 200),
    # list the org's request records (a member sees only their own keys' records)
    "list request records": (lambda c, s: c.get(f"{ORG}/requests/"), 200),
}

OWNER_ONLY = {
    "change the plan",
    "invite a member",
    "list invitations",
    "add a member",
    "remove a member",
    "change a role",
    "rename the org",
    "delete the org",
    "transfer ownership",
}
ADMIN_UP = {"see anyone's key", "rotate anyone's key", "revoke anyone's key", "read the audit log"}


def _expected(action: str, actor: str) -> tuple[int, str | None]:
    """(status, what the 403 detail must say) from the role table."""
    success = ACTIONS[action][1]
    if actor in {"support", "operator"}:
        return 404, None  # not members: acme's existence is not revealed to them
    if action in OWNER_ONLY and actor != "owner":
        return 403, "requires the owner role."
    if action in ADMIN_UP and actor == "member":
        return 403, "requires the owner or admin role."
    return success, None


CELLS = [
    pytest.param(action, actor, id=f"{actor}-{action.replace(' ', '_')}")
    for action in ACTIONS
    for actor in ("owner", "admin", "member", "support", "operator")
]


@pytest.mark.parametrize("auth", ["key", "session"])
@pytest.mark.parametrize(("action", "actor_name"), CELLS)
def test_role_table(request: pytest.FixtureRequest, bystander: Actor, action: str, actor_name: str, auth: str) -> None:
    actor: Actor = request.getfixturevalue(actor_name)
    client = actor.client() if auth == "key" else actor.session_client()
    status, role_word = _expected(action, actor_name)

    response = ACTIONS[action][0](client, Scene(actor=actor, bystander=bystander))

    assert response.status_code == status, response.content
    if role_word is not None:
        assert role_word in response.json()["detail"]


# --- The platform rows: support staff and operators, across organisations -----------

PLATFORM_ACTIONS: dict[str, tuple[Action, int, set[str], str]] = {
    # action: (call, success status, who may, what the 403 names)
    "look up any request": (
        lambda c, s: c.get("/api/v1/requests/req-ticket-quoted-000000000001/"),
        200,
        {"support", "operator"},
        "requires the support or operator role.",
    ),
    "register a worker": (
        lambda c, s: c.post(
            "/api/v1/workers/",
            {"name": "gpu-new", "base_url": "http://127.0.0.1:8199", "models": [{"name": "m", "kind": "chat"}]},
            format="json",
        ),
        201,
        {"operator"},
        "requires the operator role.",
    ),
    "drain a worker": (
        lambda c, s: c.post(f"/api/v1/workers/{s.extra['worker_id']}/drain/"),
        200,
        {"operator"},
        "requires the operator role.",
    ),
    "remove a worker": (
        lambda c, s: c.delete(f"/api/v1/workers/{s.extra['worker_id']}/"),
        204,
        {"operator"},
        "requires the operator role.",
    ),
    "edit a plan": (
        lambda c, s: c.patch("/api/v1/plans/free/", {"chat_rpm": 61}, format="json"),
        200,
        {"operator"},
        "requires the operator role.",
    ),
}

PLATFORM_CELLS = [
    pytest.param(action, actor, id=f"{actor}-{action.replace(' ', '_')}")
    for action in PLATFORM_ACTIONS
    for actor in ("owner", "admin", "member", "support", "operator")
]


@pytest.fixture
def platform_scene(bystander: Actor) -> dict[str, Any]:
    import secrets

    from django.utils import timezone

    from apps.requestlog.services import write_records
    from apps.workers.services import worker_register

    write_records(
        [
            {
                "uid": secrets.token_hex(16),
                "request_id": "req-ticket-quoted-000000000001",
                "created_at": timezone.now(),
                "org_id": bystander.org.pk,
                "route": "/v1/chat/completions",
                "method": "POST",
                "status": 200,
                "latency_ms": 1.0,
            }
        ]
    )
    worker = worker_register(name="gpu-1", base_url="http://127.0.0.1:8198", models={"m": "chat"}, actor=None)
    return {"worker_id": str(worker.pk)}


@pytest.mark.parametrize("auth", ["key", "session"])
@pytest.mark.parametrize(("action", "actor_name"), PLATFORM_CELLS)
def test_platform_role_table(
    request: pytest.FixtureRequest,
    bystander: Actor,
    platform_scene: dict[str, Any],
    action: str,
    actor_name: str,
    auth: str,
) -> None:
    actor: Actor = request.getfixturevalue(actor_name)
    client = actor.client() if auth == "key" else actor.session_client()
    call, success, allowed, role_words = PLATFORM_ACTIONS[action]

    response = call(client, Scene(actor=actor, bystander=bystander, extra=platform_scene))

    if actor_name in allowed:
        assert response.status_code == success, response.content
    else:
        assert response.status_code == 403, response.content
        assert role_words in response.json()["detail"]
