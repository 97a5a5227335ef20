"""The operators' worker API: CRUD, drain, the permission matrix, the probe sent on registration."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.orgs.models import Organisation
from apps.workers.models import Worker, WorkerEvent, WorkerState
from pendra_console.celery import app as celery_app
from testing.workers import SimFactory

pytestmark = pytest.mark.django_db

NEW_WORKER = {
    "name": "gpu-1",
    "base_url": "http://127.0.0.1:8101",
    "models": [{"name": "llama-3", "kind": "chat"}, {"name": "bge", "kind": "embeddings"}],
}


def _create(api: APIClient, **overrides) -> dict:
    response = api.post("/api/v1/workers/", {**NEW_WORKER, **overrides}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_operator_registers_a_worker_that_starts_unhealthy(operator_api: APIClient, operator) -> None:
    body = _create(operator_api)

    assert body["name"] == "gpu-1"
    assert body["base_url"] == "http://127.0.0.1:8101"
    assert body["models"] == NEW_WORKER["models"]
    assert body["state"] == "unhealthy"
    assert body["last_checked_at"] is None
    assert body["consecutive_failures"] == 0
    assert body["recent_checks"] == []
    assert body["dedicated_org"] is None
    event = AuditEvent.objects.get(event_type=AuditEvent.Type.WORKER_REGISTERED)
    assert (event.org, event.target_id, event.actor) == (None, body["id"], operator.user)


def test_operator_lists_workers_paginated(operator_api: APIClient) -> None:
    _create(operator_api, name="gpu-b")
    _create(operator_api, name="gpu-a")

    body = operator_api.get("/api/v1/workers/?page_size=1").json()

    assert body["count"] == 2
    assert [w["name"] for w in body["results"]] == ["gpu-a"]
    assert body["next"] is not None


def test_operator_shows_edits_and_dedicates_a_worker(operator_api: APIClient, org: Organisation) -> None:
    worker_id = _create(operator_api)["id"]

    response = operator_api.patch(
        f"/api/v1/workers/{worker_id}/",
        {"name": "gpu-renamed", "models": [{"name": "mistral", "kind": "chat"}], "dedicated_org": org.slug},
        format="json",
    )

    assert response.status_code == 200
    shown = operator_api.get(f"/api/v1/workers/{worker_id}/").json()
    assert (shown["name"], shown["models"], shown["dedicated_org"]) == (
        "gpu-renamed",
        [{"name": "mistral", "kind": "chat"}],
        org.slug,
    )
    assert AuditEvent.objects.filter(event_type=AuditEvent.Type.WORKER_CHANGED, target_id=worker_id).exists()


def test_an_unknown_dedicated_org_is_a_400(operator_api: APIClient) -> None:
    response = operator_api.post("/api/v1/workers/", {**NEW_WORKER, "dedicated_org": "nope"}, format="json")

    assert response.status_code == 400
    assert response.json()["detail"] == "dedicated_org: No organisation with slug nope."
    assert not Worker.objects.exists()


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        ({"name": ""}, "name:"),
        ({"name": "has spaces"}, "name: Use 1-100 letters"),
        ({"models": [{"name": "m", "kind": "video"}]}, "models.kind:"),
        ({"models": [{"name": "m", "kind": "chat"}, {"name": "m", "kind": "chat"}]}, "listed twice"),
        ({"models": "llama"}, "models"),
        ({"base_url": 5}, "base_url"),
    ],
)
def test_invalid_input_is_a_400_naming_the_field(operator_api: APIClient, payload: dict, says: str) -> None:
    response = operator_api.post("/api/v1/workers/", {**NEW_WORKER, **payload}, format="json")

    assert response.status_code == 400
    assert says in response.json()["detail"]
    assert not Worker.objects.exists()


def test_a_duplicate_name_is_a_400(operator_api: APIClient) -> None:
    _create(operator_api)

    response = operator_api.post("/api/v1/workers/", NEW_WORKER, format="json")

    assert response.status_code == 400
    assert response.json()["detail"] == "name: A worker named 'gpu-1' already exists."
    assert Worker.objects.count() == 1


def test_drain_and_undrain_write_state_events(operator_api: APIClient) -> None:
    worker_id = _create(operator_api)["id"]

    drained = operator_api.post(f"/api/v1/workers/{worker_id}/drain/")
    undrained = operator_api.post(f"/api/v1/workers/{worker_id}/undrain/")

    assert drained.status_code == 200
    assert drained.json()["state"] == "draining"
    assert undrained.json()["state"] == "unhealthy"  # never probed, so not back in rotation
    changes = AuditEvent.objects.filter(event_type=AuditEvent.Type.WORKER_STATE_CHANGED, target_id=worker_id)
    assert sorted((e.data["from"], e.data["to"]) for e in changes) == [
        ("draining", "unhealthy"),
        ("unhealthy", "draining"),
    ]


def test_patching_state_disables_a_worker(operator_api: APIClient) -> None:
    worker_id = _create(operator_api)["id"]

    response = operator_api.patch(f"/api/v1/workers/{worker_id}/", {"state": "disabled"}, format="json")

    assert response.json()["state"] == "disabled"
    assert WorkerEvent.objects.filter(worker_id=worker_id, to_state=WorkerState.DISABLED).exists()


def test_delete_removes_the_worker_and_leaves_an_audit_event(operator_api: APIClient) -> None:
    worker_id = _create(operator_api)["id"]

    response = operator_api.delete(f"/api/v1/workers/{worker_id}/")

    assert response.status_code == 204
    assert operator_api.get(f"/api/v1/workers/{worker_id}/").status_code == 404
    assert AuditEvent.objects.filter(event_type=AuditEvent.Type.WORKER_REMOVED, target_id=worker_id).exists()


def test_an_unknown_worker_is_a_json_404(operator_api: APIClient) -> None:
    response = operator_api.get("/api/v1/workers/00000000-0000-0000-0000-000000000000/")

    assert response.status_code == 404
    assert response.json()["detail"] == "Worker not found."


def test_put_is_not_allowed(operator_api: APIClient) -> None:
    worker_id = _create(operator_api)["id"]

    assert operator_api.put(f"/api/v1/workers/{worker_id}/", NEW_WORKER, format="json").status_code == 405


ROUTES = [
    ("get", "/api/v1/workers/"),
    ("post", "/api/v1/workers/"),
    ("get", "/api/v1/workers/{id}/"),
    ("patch", "/api/v1/workers/{id}/"),
    ("delete", "/api/v1/workers/{id}/"),
    ("post", "/api/v1/workers/{id}/drain/"),
    ("post", "/api/v1/workers/{id}/undrain/"),
]


@pytest.mark.parametrize(("method", "route"), ROUTES)
@pytest.mark.parametrize(
    ("kind", "status"),
    [("support", 403), ("owner", 403), ("admin", 403), ("member", 403), ("outsider", 403), ("anonymous", 401)],
)
def test_only_operators_may_manage_workers(
    operator_api: APIClient, staff_client: Callable[[str], APIClient], method: str, route: str, kind: str, status: int
) -> None:
    worker_id = _create(operator_api)["id"]
    client = staff_client(kind)

    response = getattr(client, method)(route.format(id=worker_id), NEW_WORKER | {"name": "other"}, format="json")

    assert response.status_code == status
    expected = "This action requires the operator role." if status == 403 else "Invalid or expired token"
    assert response.json()["detail"] == expected
    assert Worker.objects.get().state == WorkerState.UNHEALTHY
    assert Worker.objects.count() == 1


@pytest.fixture
def celery_in_process() -> Iterator[None]:
    """Tasks run in this process when sent; the real broker and worker path is the Celery tests'."""
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous


def test_registering_through_the_api_sends_the_probe_that_promotes_the_worker(
    operator_api: APIClient, simulator: SimFactory, django_capture_on_commit_callbacks, celery_in_process: None
) -> None:
    sim = simulator("gpu-live")

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        body = _create(operator_api, name="gpu-live", base_url=sim.url, models=[])

    sent = Counter(getattr(callback, "func", callback).__name__ for callback in callbacks)
    assert sent["_send_probe"] == 1  # the others announce the fleet's change to the gateways (epochs)
    worker = Worker.objects.get(pk=body["id"])
    assert worker.state == WorkerState.HEALTHY
    assert {m["name"]: m["kind"] for m in worker.served_models} == sim.models
    assert sim.stats()["requests"] == {"/health": 1, "/v1/models": 1}


def test_nothing_is_sent_when_registration_fails(operator_api: APIClient, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        operator_api.post("/api/v1/workers/", {**NEW_WORKER, "base_url": "file:///etc/passwd"}, format="json")

    assert callbacks == []


def test_the_openapi_schema_documents_the_worker_routes(operator_api: APIClient) -> None:
    schema = operator_api.get("/api/v1/schema/?format=json").json()

    assert {"/api/v1/workers/", "/api/v1/workers/{worker_id}/", "/api/v1/workers/{worker_id}/drain/"} <= set(
        schema["paths"]
    )
    assert "403" in schema["paths"]["/api/v1/workers/"]["post"]["responses"]
