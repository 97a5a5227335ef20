"""DNS rebinding: a webhook host that was public when registered and is private when delivered gets no request.

The resolver is simulated as in the workers' egress tests: ``socket.getaddrinfo`` answers for
one made-up name, and the test changes the answer between registration and delivery. The
"private" address is a plain TCP listener on 127.0.0.1: if the delivery connected, it would
be waiting in the listener's backlog.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from apps.webhooks.models import Attempt, Delivery, DeliveryState
from apps.webhooks.services import emit_event
from apps.webhooks.tasks import deliver
from testing.actors import Actor

pytestmark = pytest.mark.django_db

HOST = "flip.example.com"


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Answers for HOST (change ``dns[HOST]`` to rebind it); every other name resolves as usual."""
    answers = {HOST: "93.184.215.14"}
    real = socket.getaddrinfo

    def fake(host: str, port: object = None, *args: object, **kwargs: object) -> object:
        if host in answers:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], int(port or 443)))]  # type: ignore[call-overload]
        return real(host, port, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return answers


@pytest.fixture
def private_listener() -> Iterator[socket.socket]:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    yield listener
    listener.close()


def test_a_host_rebound_to_a_private_address_after_registration_is_not_delivered(
    owner: Actor, settings: object, dns: dict[str, str], private_listener: socket.socket
) -> None:
    settings.PENDRA_ALLOW_PRIVATE_WORKER_URLS = False  # type: ignore[attr-defined]  # production rules
    settings.PENDRA_WEBHOOK_MAX_ATTEMPTS = 1  # type: ignore[attr-defined]  # one attempt, nothing re-queued
    settings.PENDRA_WEBHOOK_TIMEOUT = 2  # type: ignore[attr-defined]
    port = private_listener.getsockname()[1]
    created = owner.client().post(
        "/api/v1/orgs/acme/webhooks/", {"url": f"https://{HOST}:{port}/hook", "events": ["key.expired"]}, format="json"
    )
    assert created.status_code == 201, created.content
    emit_event(org=owner.org, event="key.expired", data={"key": {"id": 1}})  # type: ignore[arg-type]
    delivery = Delivery.objects.get()
    dns[HOST] = "127.0.0.1"

    deliver(str(delivery.pk))  # the Celery task's body, run here where the simulated resolver applies

    attempt = Attempt.objects.get(delivery=delivery)
    assert attempt.status_code is None
    assert "resolves to a refused address" in attempt.error
    assert "loopback" in attempt.error
    assert Delivery.objects.get().state == DeliveryState.FAILED
    with pytest.raises(BlockingIOError):
        private_listener.accept()  # nothing ever connected to the private address
