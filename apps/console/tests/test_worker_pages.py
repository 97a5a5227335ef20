"""The operators' worker pages: every action through the workers' services, audited; who may; bad input."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from apps.audit.models import AuditEvent
from apps.console.tests.conftest import signed_in
from apps.workers import services
from apps.workers.models import Worker, WorkerState
from testing.actors import Actor

pytestmark = pytest.mark.django_db

FLEET = "/platform/workers/"
REGISTER = f"{FLEET}register/"
FORM = {"name": "gpu-1", "base_url": "http://127.0.0.1:8199", "models": "sim-chat chat\nsim-embed", "dedicated_org": ""}


@pytest.fixture
def worker(operator: Actor) -> Worker:
    return services.worker_register(
        name="gpu-a", base_url="http://127.0.0.1:8198", models={"sim-chat": "chat"}, actor=operator.user
    )


def _audited(event_type: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(event_type=event_type))


def test_the_fleet_shows_each_worker_by_its_x_worker_name(operator: Actor, worker: Worker) -> None:
    response = signed_in(operator).get(FLEET)
    assert response.status_code == 200
    html = response.content.decode()
    assert ">gpu-a</a>" in html and "sim-chat" in html and "Unhealthy" in html


def test_registering_creates_the_worker_and_audits_it(operator: Actor) -> None:
    response = signed_in(operator).post(REGISTER, FORM)

    assert response.status_code == 302 and response["Location"] == FLEET
    worker = Worker.objects.get(name="gpu-1")
    assert worker.served_models == [{"name": "sim-chat", "kind": "chat"}, {"name": "sim-embed", "kind": "embeddings"}]
    [event] = _audited(AuditEvent.Type.WORKER_REGISTERED)
    assert (event.actor, event.data["name"]) == (operator.user, "gpu-1")


def test_a_worker_can_be_dedicated_to_an_org(operator: Actor, owner: Actor) -> None:
    signed_in(operator).post(REGISTER, {**FORM, "dedicated_org": "acme"})
    assert Worker.objects.get(name="gpu-1").dedicated_org == owner.org


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("name", "bad name!", "Use 1-100 letters"),
        ("name", "", "This field is required."),
        ("base_url", "ftp://example.com", ""),
        ("base_url", "http://169.254.169.254/", ""),
        ("models", "sim-chat sideways", "has kind"),
        ("models", "a b c", "write a model"),
        ("models", "sim-chat\nsim-chat", "listed twice"),
        ("dedicated_org", "no-such-org", "No organisation with slug no-such-org."),
    ],
)
def test_bad_input_comes_back_next_to_its_field_and_registers_nothing(
    operator: Actor, field: str, value: str, error: str
) -> None:
    response = signed_in(operator).post(REGISTER, {**FORM, field: value})

    assert response.status_code == 400
    assert f'id="id_{field}_error"' in response.content.decode()
    assert error in response.content.decode()
    assert not Worker.objects.exists()
    assert not _audited(AuditEvent.Type.WORKER_REGISTERED)


def test_a_taken_name_is_refused_on_the_name_field(operator: Actor, worker: Worker) -> None:
    response = signed_in(operator).post(REGISTER, {**FORM, "name": "gpu-a"})
    assert response.status_code == 400
    assert "already exists" in response.content.decode()
    assert Worker.objects.count() == 1


def test_editing_changes_the_worker_and_audits_the_change(operator: Actor, worker: Worker) -> None:
    edit = f"{FLEET}{worker.pk}/"
    assert 'value="gpu-a"' in signed_in(operator).get(edit).content.decode()

    response = signed_in(operator).post(edit, {**FORM, "name": "gpu-renamed", "base_url": worker.base_url})

    assert response.status_code == 302
    worker.refresh_from_db()
    assert worker.name == "gpu-renamed"
    [event] = _audited(AuditEvent.Type.WORKER_CHANGED)
    assert event.data["changed"]["name"] == "gpu-renamed"


def test_an_edit_with_bad_input_changes_nothing(operator: Actor, worker: Worker) -> None:
    response = signed_in(operator).post(f"{FLEET}{worker.pk}/", {**FORM, "base_url": "not a url"})
    assert response.status_code == 400
    worker.refresh_from_db()
    assert (worker.name, worker.base_url) == ("gpu-a", "http://127.0.0.1:8198")


@pytest.mark.parametrize(
    ("action", "start", "end"),
    [
        ("drain", WorkerState.HEALTHY, WorkerState.DRAINING),
        ("undrain", WorkerState.DRAINING, WorkerState.UNHEALTHY),
        ("disable", WorkerState.HEALTHY, WorkerState.DISABLED),
        ("enable", WorkerState.DISABLED, WorkerState.UNHEALTHY),
    ],
)
def test_each_state_action_moves_the_worker_and_is_audited(
    operator: Actor, worker: Worker, action: str, start: str, end: str
) -> None:
    Worker.objects.filter(pk=worker.pk).update(state=start)

    response = signed_in(operator).post(f"{FLEET}{worker.pk}/{action}/")

    assert response.status_code == 302
    worker.refresh_from_db()
    assert worker.state == end
    [event] = _audited(AuditEvent.Type.WORKER_STATE_CHANGED)
    assert (event.actor, event.data["from"], event.data["to"]) == (operator.user, start, end)


def test_removing_deletes_the_worker_and_audits_it(operator: Actor, worker: Worker) -> None:
    response = signed_in(operator).post(f"{FLEET}{worker.pk}/remove/")
    assert response.status_code == 302
    assert not Worker.objects.exists()
    assert _audited(AuditEvent.Type.WORKER_REMOVED)[0].data["name"] == "gpu-a"


@pytest.mark.parametrize("action", ["drain", "undrain", "disable", "enable", "remove"])
def test_actions_refuse_a_get(operator: Actor, worker: Worker, action: str) -> None:
    assert signed_in(operator).get(f"{FLEET}{worker.pk}/{action}/").status_code == 405


def test_an_action_without_the_csrf_token_is_refused(operator: Actor, worker: Worker) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator.user)
    assert client.post(f"{FLEET}{worker.pk}/remove/").status_code == 403
    assert Worker.objects.filter(pk=worker.pk).exists()


def test_an_unknown_worker_is_a_404(operator: Actor) -> None:
    assert signed_in(operator).post(f"{FLEET}00000000-0000-0000-0000-000000000000/drain/").status_code == 404


@pytest.mark.parametrize("actor_name", ["support", "owner", "admin", "member"])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", ""),
        ("get", "register/"),
        ("post", "register/"),
        ("get", "{pk}/"),
        ("post", "{pk}/drain/"),
        ("post", "{pk}/remove/"),
    ],
)
def test_only_operators_may_use_the_worker_pages(
    request: pytest.FixtureRequest, worker: Worker, actor_name: str, method: str, path: str
) -> None:
    client = signed_in(request.getfixturevalue(actor_name))
    response = getattr(client, method)(FLEET + path.format(pk=worker.pk), FORM if method == "post" else None)
    assert response.status_code == 403
    worker.refresh_from_db()
    assert worker.state == WorkerState.UNHEALTHY
    assert Worker.objects.count() == 1


def test_a_signed_out_visitor_is_sent_to_sign_in(worker: Worker) -> None:
    response = Client().get(FLEET)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_the_fleet_page_costs_a_fixed_number_of_queries(
    operator: Actor, owner: Actor, django_assert_max_num_queries: Any
) -> None:
    for n in range(30):
        services.worker_register(
            name=f"gpu-{n}",
            base_url=f"http://127.0.0.1:{8300 + n}",
            models={"m": "chat"},
            dedicated_org=owner.org,
            actor=operator.user,
        )
    client = signed_in(operator)
    client.get(FLEET)
    with django_assert_max_num_queries(8):
        assert client.get(FLEET).status_code == 200
