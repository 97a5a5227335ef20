"""Schemathesis against the admin API's own OpenAPI schema, as every kind of caller.

Each operation is called with generated data (valid and deliberately invalid) by the
keys of two organisations and every role (owner, admin, member of acme; the owner of
globex; support; operator; nobody). Checks: never a server error, every documented
response matches its schema, and invalid data is refused. Path parameters name real
objects of both organisations most of the time, so calls get past the 404 and reach
the permission checks and validation. Each example runs in a transaction rolled back
afterwards, so a deleted org or a revoked key does not starve the examples after it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core import signals
from django.core.cache import cache
from django.db import close_old_connections, transaction
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import negative_data_rejection, response_schema_conformance

from apps.keys.authentication import key_cache, unknown_keys
from apps.plans.selectors import plan_cache
from pendra_console.wsgi import application
from testing.actors import Actor
from testing.fuzz import TimeBudget, fuzz_settings

pytestmark = [pytest.mark.fuzz, pytest.mark.django_db]

ACTORS = ["owner", "admin", "member", "outsider", "support", "operator", "nobody"]
CHECKS = [not_a_server_error, response_schema_conformance, negative_data_rejection]


def _schema() -> Any:
    raw = json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))
    loaded = schemathesis.openapi.from_dict(raw)
    loaded.app = application  # calls go through Django's WSGI handler, in this thread and transaction
    return loaded


schema = _schema()
_budget = TimeBudget()


@pytest.fixture
def _connections_kept() -> Iterator[None]:
    """As Django's test client does: a request's end must not close the test's connection."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def world(
    _connections_kept: None, owner: Actor, admin: Actor, member: Actor, outsider: Actor, support: Actor, operator: Actor
) -> dict[str, Any]:
    from apps.orgs.invitations import invitation_create
    from apps.workers.services import worker_register

    worker = worker_register(name="gpu-fuzz", base_url="http://127.0.0.1:8199", models={"m": "chat"}, actor=None)
    invitation, _ = invitation_create(org=owner.org, email="new@acme.test", role="member", actor=owner.user)
    actors = {"owner": owner, "admin": admin, "member": member, "outsider": outsider}
    actors |= {"support": support, "operator": operator}
    memberships = [m.pk for a in (owner, admin, member, outsider) for m in a.user.memberships.all()]
    return {
        "actors": actors,
        "slug": ["acme", "globex", "free", "pro"],
        "key_id": [a.api_key.pk for a in actors.values()],
        "member_id": memberships,
        "invitation_id": [invitation.pk],
        "worker_id": [str(worker.pk)],
        "request_id": ["req_0123456789abcdef01234567"],
    }


@schema.parametrize()
@schema.given(data=st.data())
@fuzz_settings(brief=2)
def test_the_admin_api_holds_its_schema_for_every_caller(case: Any, data: Any, world: dict[str, Any]) -> None:
    if _budget.spent():
        return
    actor_name = data.draw(st.sampled_from(ACTORS), label="actor")
    headers = {}
    if actor_name != "nobody":
        key = world["actors"][actor_name].key
        style = data.draw(st.sampled_from(["bearer", "x-api-key"]), label="key header")
        headers = {"Authorization": f"Bearer {key}"} if style == "bearer" else {"X-Api-Key": key}
    if case.path_parameters and not case.meta.generation.mode.is_negative:
        for name in list(case.path_parameters):
            if name in world and data.draw(st.booleans(), label=f"real {name}"):
                case.path_parameters[name] = data.draw(st.sampled_from(world[name]), label=name)
    # Each example starts from the same state, counters included.
    cache.clear()
    key_cache.clear()
    plan_cache.clear()
    unknown_keys.clear()
    with transaction.atomic():
        case.call_and_validate(headers=headers, checks=CHECKS)
        transaction.set_rollback(True)
