"""The support page (support and operators) and the platform audit log (operators).

The requests looked up are real calls through the live gateway and simulated workers; the
page shows the same explanation as the API, every lookup is audited and listed among the
user's recent lookups, and a page's queries stay bounded.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.console.tests.conftest import signed_in
from apps.gateway.tests.conftest import Gateway, call_with_id, usage_for
from apps.keys import tokens
from apps.plans.models import Subscription
from apps.plans.tests.factories import plan_factory
from apps.workers.services import worker_drain, worker_register
from testing.actors import Actor


def _401(gateway: Gateway, settings: Any) -> tuple[int, list[str]]:
    forged = tokens.format_key(gateway.actor.api_key.public_id, "A" * tokens.SECRET_LENGTH)
    status = call_with_id(gateway, "page-ticket-000000000000001", key=forged).status_code
    return status, ["Refused (401): the API key was not accepted.", "secret presented did not match", "Acme"]


def _429(gateway: Gateway, settings: Any) -> tuple[int, list[str]]:
    plan = plan_factory(name="Tiny", chat_rpm=1)
    Subscription.objects.update_or_create(org=gateway.actor.org, defaults={"plan": plan, "since": timezone.now()})
    call_with_id(gateway, "page-first-0000000000000001")
    status = call_with_id(gateway, "page-ticket-000000000000001").status_code
    return status, ['the "chat" limit of plan Tiny was used up', "1 requests/minute on plan Tiny; it reset"]


def _502(gateway: Gateway, settings: Any) -> tuple[int, list[str]]:
    status = call_with_id(gateway, "page-ticket-000000000000001", headers={"x-sim-status": "500"}).status_code
    return status, ["Failed (502)", "sim-a", "sim-b", "HTTP 500"]


def _504(gateway: Gateway, settings: Any) -> tuple[int, list[str]]:
    settings.PENDRA_EMBEDDINGS_TIMEOUT = 0.5
    body = {"model": "sim-embed", "input": "hi"}
    status = call_with_id(
        gateway, "page-ticket-000000000000001", path="/v1/embeddings", body=body, headers={"x-sim-hang": "1"}
    ).status_code
    return status, ["Timed out (504): the embeddings total timeout (0.5 s) hit.", "longer than its 0.5 s limit"]


def _200(gateway: Gateway, settings: Any) -> tuple[int, list[str]]:
    status = call_with_id(gateway, "page-ticket-000000000000001").status_code
    (usage,) = usage_for("page-ticket-000000000000001")
    return status, [f"billed {usage.total_tokens} tokens", f"Billed {usage.total_tokens} tokens"]


@pytest.mark.django_db(transaction=True)
# Named by status: a function's default id holds its address, which differs between xdist workers.
@pytest.mark.parametrize(
    ("make", "status"),
    [(_401, 401), (_429, 429), (_502, 502), (_504, 504), (_200, 200)],
    ids=["401", "429", "502", "504", "200"],
)
def test_support_finds_each_kind_of_request_on_the_page(
    gateway: Gateway, support: Actor, settings: Any, make: Any, status: int
) -> None:
    seen, phrases = make(gateway, settings)
    assert seen == status

    page = signed_in(support).get("/support/", {"request_id": "page-ticket-000000000000001"})

    assert page.status_code == 200
    text = page.content.decode()
    for phrase in phrases:
        assert phrase.replace('"', "&quot;") in text, phrase
    assert AuditEvent.objects.filter(event_type=AuditEvent.Type.REQUEST_LOOKED_UP, actor=support.user).count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("actor_name", "support_status", "audit_status"),
    [
        ("owner", 403, 403),
        ("admin", 403, 403),
        ("member", 403, 403),
        ("outsider", 403, 403),
        ("support", 200, 403),
        ("operator", 200, 200),
    ],
)
def test_who_opens_the_staff_pages(
    everyone: dict[str, Any], actor_name: str, support_status: int, audit_status: int
) -> None:
    client = signed_in(everyone[actor_name])
    assert client.get("/support/").status_code == support_status
    assert client.get("/support/audit/").status_code == audit_status


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/support/", "/support/audit/"])
def test_a_signed_out_visitor_is_sent_to_sign_in(path: str) -> None:
    response = signed_in(None).get(path)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("request_id", "error"),
    [
        ("short", "Not a request id"),
        ("bad id with spaces 000000000", "Not a request id"),
        ("bad\x00id-0000000000000000000", "Null characters are not allowed"),
    ],
)
def test_a_malformed_id_is_an_error_next_to_the_field_and_no_lookup(
    support: Actor, request_id: str, error: str
) -> None:
    page = signed_in(support).get("/support/", {"request_id": request_id})

    assert page.status_code == 200
    assert f'<ul class="errorlist" id="id_request_id_error"><li>{error}' in page.content.decode()
    assert not AuditEvent.objects.filter(event_type=AuditEvent.Type.REQUEST_LOOKED_UP).exists()


@pytest.mark.django_db
def test_recent_lookups_are_listed_and_an_htmx_lookup_gets_the_region_only(support: Actor) -> None:
    client = signed_in(support)
    client.get("/support/", {"request_id": "nothing-here-0000000000000001"})

    region = client.get("/support/", {"request_id": "nothing-here-0000000000000002"}, HTTP_HX_REQUEST="true")

    text = region.content.decode()
    assert "<html" not in text
    assert "No request carries this id." in text
    assert text.index("nothing-here-0000000000000002") < text.index("nothing-here-0000000000000001")


@pytest.mark.django_db
def test_the_support_page_makes_a_bounded_number_of_queries(support: Actor, django_assert_max_num_queries: Any) -> None:
    client = signed_in(support)
    for n in range(15):
        client.get("/support/", {"request_id": f"nothing-here-00000000000000{n:02}"})
    with django_assert_max_num_queries(14):
        client.get("/support/", {"request_id": "nothing-here-0000000000000099"})


@pytest.mark.django_db
def test_operators_see_platform_events_and_filter_them(operator: Actor, support: Actor) -> None:
    worker = worker_register(
        name="gpu-audit", base_url="http://127.0.0.1:9", models={"sim-chat": "chat"}, actor=operator.user
    )
    worker_drain(worker=worker, actor=operator.user)
    signed_in(support).get("/support/", {"request_id": "nothing-here-0000000000000001"})
    client = signed_in(operator)

    everything = client.get("/support/audit/").content.decode()
    lookups = client.get("/support/audit/", {"action": AuditEvent.Type.REQUEST_LOOKED_UP}).content.decode()

    def badge(event_type: str) -> str:
        return f'<span class="badge">{event_type}</span>'

    assert badge("worker.state_changed") in everything and badge("request.looked_up") in everything
    assert badge("worker.registered") in everything
    assert badge("worker.state_changed") not in lookups and "support@pendra.test" in lookups
