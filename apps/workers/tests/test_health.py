"""Health sweeps against live simulators: the state machine with hysteresis, events, and what the gateway sees."""

from __future__ import annotations

import threading

import pytest
from django.db import connections

from apps.audit.models import AuditEvent
from apps.workers import health, selectors, services
from apps.workers.models import Worker, WorkerEvent, WorkerState
from testing.workers import Sim, SimFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _probe_timeout(settings) -> None:
    # Production's default: on a loaded machine a healthy simulator can take longer than half a second.
    settings.PENDRA_HEALTH_TIMEOUT = 2.0


def sweep() -> health.SweepSummary:
    return health.health_sweep(min_interval=0)


def _worker(sim: Sim, **kwargs) -> Worker:
    return services.worker_register(name=sim.name, base_url=sim.url, models=sim.models, actor=None, **kwargs)


def _state(worker: Worker) -> str:
    worker.refresh_from_db()
    return worker.state


def test_a_new_worker_is_promoted_by_its_first_passing_probe(simulator: SimFactory) -> None:
    worker = _worker(simulator("sim-a"))

    summary = sweep()

    assert _state(worker) == WorkerState.HEALTHY
    assert (summary.probed, summary.healthy, summary.failed) == (1, 1, 0)
    assert worker.last_checked_at is not None
    assert worker.latency_ms_avg is not None
    assert worker.recent_checks[0]["ok"] is True
    assert WorkerEvent.objects.filter(worker=worker, from_state="unhealthy", to_state="healthy").count() == 1


def test_a_stopped_simulator_goes_unhealthy_after_three_sweeps_and_back_after_two(
    simulator: SimFactory, register_sim
) -> None:
    sim = simulator("sim-a")
    worker = register_sim(sim)
    sim.stop()

    states_while_down = []
    for _ in range(3):
        sweep()
        states_while_down.append(_state(worker))
    sim.restart()
    states_after_restart = []
    for _ in range(2):
        sweep()
        states_after_restart.append(_state(worker))

    assert states_while_down == ["healthy", "healthy", "unhealthy"]
    assert states_after_restart == ["unhealthy", "healthy"]
    assert worker.consecutive_successes == 2
    assert worker.last_error == ""
    assert [c["ok"] for c in worker.recent_checks[:6]] == [True, True, False, False, False, True]
    assert "cannot connect" in worker.recent_checks[2]["error"]
    changes = AuditEvent.objects.filter(event_type=AuditEvent.Type.WORKER_STATE_CHANGED, target_id=str(worker.pk))
    assert sorted((e.data["from"], e.data["to"]) for e in changes) == [
        ("healthy", "unhealthy"),
        ("unhealthy", "healthy"),
        ("unhealthy", "healthy"),
    ]
    assert all(e.org is None for e in changes)


def test_the_gateway_stops_and_resumes_routing_with_the_state(simulator: SimFactory, register_sim) -> None:
    sim_a, sim_b = simulator("sim-a"), simulator("sim-b")
    register_sim(sim_a)
    register_sim(sim_b)
    sim_a.set_faults(health_status=503)

    for _ in range(3):
        sweep()
    routable_while_down = [target.name for target in selectors.routable_workers()]
    sim_a.set_faults()
    for _ in range(2):
        sweep()

    assert routable_while_down == ["sim-b"]
    assert [target.name for target in selectors.routable_workers()] == ["sim-a", "sim-b"]


def test_a_hanging_worker_fails_by_timeout(simulator: SimFactory, register_sim, settings) -> None:
    settings.PENDRA_HEALTH_TIMEOUT = 0.5
    sim = simulator("sim-a")
    worker = register_sim(sim)
    sim.set_faults(hang=True)

    sweep()

    worker.refresh_from_db()
    assert worker.consecutive_failures == 1
    assert worker.last_error == "GET /health: timed out after 0.5 s"


def test_a_failing_health_status_is_a_failed_probe(simulator: SimFactory, register_sim) -> None:
    sim = simulator("sim-a")
    worker = register_sim(sim)
    sim.set_faults(health_status=503)

    sweep()

    worker.refresh_from_db()
    assert worker.last_error == "GET /health returned 503"


def test_one_blip_does_not_take_a_worker_out_of_rotation(simulator: SimFactory, register_sim) -> None:
    sim = simulator("sim-a")
    worker = register_sim(sim)

    sim.set_faults(health_status=500)
    sweep()
    sweep()
    sim.set_faults()
    sweep()
    sim.set_faults(health_status=500)
    sweep()
    sweep()

    assert _state(worker) == WorkerState.HEALTHY


def test_draining_workers_are_probed_but_keep_their_state(simulator: SimFactory, register_sim) -> None:
    sim = simulator("sim-a")
    worker = services.worker_drain(worker=register_sim(sim), actor=None)
    sim.stop()

    for _ in range(4):
        sweep()

    worker.refresh_from_db()
    assert worker.state == WorkerState.DRAINING
    assert worker.consecutive_failures == 4
    assert selectors.routable_workers() == []


def test_disabled_workers_are_not_probed(simulator: SimFactory, register_sim) -> None:
    sim = simulator("sim-a")
    worker = services.worker_set_state(worker=register_sim(sim), state=WorkerState.DISABLED, actor=None)
    probes_before = sim.stats()["requests"]["/health"]

    summary = sweep()

    assert summary.probed == 0
    assert sim.stats()["requests"]["/health"] == probes_before
    assert _state(worker) == WorkerState.DISABLED


def test_sweeps_never_call_inference_routes(simulator: SimFactory, register_sim) -> None:
    sim = simulator("sim-a")
    register_sim(sim)

    for _ in range(3):
        sweep()

    assert set(sim.stats()["requests"]) == {"/health", "/v1/models"}


def test_the_model_list_is_refreshed_keeping_known_kinds(simulator: SimFactory) -> None:
    sim = simulator("sim-a", models={"llama": "chat", "bge-small": "embeddings", "new-whisper": "audio"})
    worker = services.worker_register(
        name="sim-a", base_url=sim.url, models=[{"name": "llama", "kind": "chat"}, {"name": "gone", "kind": "chat"}],
        actor=None,
    )  # fmt: skip

    sweep()

    worker.refresh_from_db()
    assert worker.served_models == [
        {"name": "llama", "kind": "chat"},
        {"name": "bge-small", "kind": "embeddings"},
        {"name": "new-whisper", "kind": "audio"},
    ]
    assert selectors.all_models() == {"llama": "chat", "bge-small": "embeddings", "new-whisper": "audio"}


def test_a_name_without_a_reported_kind_gets_a_guessed_one() -> None:
    assert [services.guess_kind(n) for n in ("text-embedding-3", "whisper-1", "dall-e-3", "llama-3")] == [
        "embeddings",
        "audio",
        "image",
        "chat",
    ]


@pytest.mark.django_db(transaction=True)
def test_overlapping_sweeps_probe_each_worker_once(simulator: SimFactory) -> None:
    sim = simulator("sim-a", latency_ms=300)  # each probe takes a while, so the two sweeps overlap
    worker = _worker(sim)
    summaries: list[health.SweepSummary] = []

    def run() -> None:
        try:
            summaries.append(health.health_sweep(min_interval=5))
        finally:
            connections.close_all()  # each thread has its own connection, as two Celery processes would

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert sorted((s.probed, s.skipped) for s in summaries) == [(0, 1), (1, 0)]
    assert sim.stats()["requests"]["/health"] == 1
    worker.refresh_from_db()
    assert len(worker.recent_checks) == 1
    assert worker.state == WorkerState.HEALTHY


def test_concurrent_results_for_one_worker_are_all_counted(simulator: SimFactory, register_sim) -> None:
    worker = register_sim(simulator("sim-a"))

    for _ in range(3):
        services.record_probe_result(worker_id=str(worker.pk), ok=False, latency_ms=None, error="boom")

    worker.refresh_from_db()
    assert (worker.state, worker.consecutive_failures, worker.last_error) == ("unhealthy", 3, "boom")


def test_results_for_a_removed_worker_are_ignored(simulator: SimFactory, register_sim) -> None:
    worker = register_sim(simulator("sim-a"))
    services.worker_remove(worker=worker, actor=None)

    assert services.record_probe_result(worker_id=str(worker.pk), ok=True, latency_ms=1.0) is None


def test_recent_checks_keep_the_last_20_and_latency_is_averaged(simulator: SimFactory, register_sim) -> None:
    worker = register_sim(simulator("sim-a"))

    for latency in [100.0] * 25:
        services.record_probe_result(worker_id=str(worker.pk), ok=True, latency_ms=latency)

    worker.refresh_from_db()
    assert len(worker.recent_checks) == 20
    assert worker.latency_ms_avg == pytest.approx(100.0, abs=1.0)


def test_routable_workers_are_plain_targets_in_one_query(
    simulator: SimFactory, register_sim, org, django_assert_num_queries
) -> None:
    sim = simulator("sim-a")
    worker = register_sim(sim, dedicated_org=org)
    register_sim(simulator("sim-b"))

    with django_assert_num_queries(1):
        targets = selectors.routable_workers()

    assert targets[0] == selectors.WorkerTarget(
        id=str(worker.pk), name="sim-a", base_url=sim.url, models=sim.models, dedicated_org_id=org.pk
    )
    assert [t.dedicated_org_id for t in targets] == [org.pk, None]
