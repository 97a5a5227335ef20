"""The register_worker management command: idempotent by name, --probe."""

from __future__ import annotations

import threading
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apps.workers.models import Worker, WorkerState
from testing.workers import SimFactory

pytestmark = pytest.mark.django_db


def test_register_worker_with_probe_makes_a_live_simulator_healthy_at_once(simulator: SimFactory) -> None:
    sim = simulator("sim-a")
    out = StringIO()

    call_command("register_worker", "sim-a", sim.url, "--probe", stdout=out)

    worker = Worker.objects.get(name="sim-a")
    assert worker.state == WorkerState.HEALTHY
    assert {m["name"]: m["kind"] for m in worker.served_models} == sim.models
    assert out.getvalue().startswith("Registered worker sim-a")


def test_register_worker_with_probe_waits_for_a_simulator_that_is_still_starting(simulator: SimFactory) -> None:
    sim = simulator("sim-a")
    sim.stop()
    starter = threading.Timer(0.5, sim.restart)
    starter.start()

    call_command("register_worker", "sim-a", sim.url, "--probe", "--wait", "5", stdout=StringIO())
    starter.join()

    worker = Worker.objects.get(name="sim-a")
    assert worker.state == WorkerState.HEALTHY
    assert len(worker.recent_checks) == 1


def test_register_worker_with_probe_records_a_failure_when_nothing_answers(simulator: SimFactory) -> None:
    sim = simulator("sim-a")
    sim.stop()

    call_command("register_worker", "sim-a", sim.url, "--probe", "--wait", "0", stdout=StringIO())

    worker = Worker.objects.get(name="sim-a")
    assert (worker.state, worker.consecutive_failures) == (WorkerState.UNHEALTHY, 1)
    assert "cannot connect" in worker.last_error


def test_register_worker_is_idempotent_and_updates_by_name(simulator: SimFactory) -> None:
    sim = simulator("sim-a")
    call_command("register_worker", "sim-a", "http://127.0.0.1:1", "--models", "x:chat", stdout=StringIO())

    call_command("register_worker", "sim-a", sim.url, "--models", "a:chat,b:embeddings", stdout=StringIO())

    worker = Worker.objects.get()
    assert worker.base_url == sim.url
    assert worker.served_models == [{"name": "a", "kind": "chat"}, {"name": "b", "kind": "embeddings"}]


def test_register_worker_refuses_an_unsafe_url() -> None:
    with pytest.raises(CommandError, match="base_url: Worker URL must use http:// or https://"):
        call_command("register_worker", "w", "file:///etc/passwd", stdout=StringIO())

    assert not Worker.objects.exists()
