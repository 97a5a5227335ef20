"""Health checks carried out by real Celery beat and worker processes, seen by the live gateway.

The simulators run in this process (threads on loopback); beat and the worker are
subprocesses on the throwaway Redis and the test database (testing/celery.py), with the
sweep interval shortened to a second (probe timeout 0.8 s, so a probe
that times out ends before the next sweep) so K sweeps take seconds. The last test runs
``manage.py devserver`` (what ``make run`` runs) on the embedded SQLite and filesystem broker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.utils import timezone

from apps.gateway.routing import SNAPSHOT_SECONDS
from apps.workers.models import Worker, WorkerEvent, WorkerState
from testing.actors import Actor
from testing.servers import free_port

SWEEP_ENV = {
    "PENDRA_HEALTH_INTERVAL": "1.0",
    # Generous for loopback, so a busy test machine does not fail the healthy simulator's probes.
    "PENDRA_HEALTH_TIMEOUT": "0.8",
    # Only the sweep matters here; the other periodic tasks stay out of the way.
    "PENDRA_KEY_LIFECYCLE_INTERVAL": "3600",
    "PENDRA_RETENTION_INTERVAL": "3600",
}
CHAT = {"model": "sim-chat", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4}


def wait_for(condition: Callable[[], Any], *, timeout: float, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def served_by(url: str, key: str, requests: int = 20) -> Counter[str]:
    """Which worker served each of ``requests`` chat calls; a call routed to a silent worker would time out."""
    served: Counter[str] = Counter()
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=5) as client:
        for _ in range(requests):
            response = client.post("/v1/chat/completions", json=CHAT)
            assert response.status_code == 200, response.text
            served[response.headers["X-Worker-Name"]] += 1
    return served


def _state(worker: Worker) -> str:
    worker.refresh_from_db()
    return str(worker.state)


def _checks_between(worker: Worker, since: datetime, until: datetime) -> list[bool]:
    """The probe outcomes recorded in (since, until], oldest first."""
    worker.refresh_from_db()
    return [
        check["ok"] for check in reversed(worker.recent_checks) if since < datetime.fromisoformat(check["at"]) <= until
    ]


@pytest.fixture
def fleet(
    celery_stack: Any, live: Any, owner: Actor, simulator: Any, register_sim: Callable[..., Worker]
) -> Iterator[tuple[Any, Worker]]:
    """sim-a and sim-b registered and healthy, with beat sweeping every second; yields (sim-a, its Worker)."""
    sim_a, sim_b = simulator("sim-a"), simulator("sim-b")
    worker_a = register_sim(sim_a)
    register_sim(sim_b)
    stack = celery_stack(**SWEEP_ENV)
    stack.worker()
    stack.beat()
    yield sim_a, worker_a


def test_a_silent_worker_leaves_routing_within_k_sweeps_and_returns_after_two(
    fleet: tuple[Any, Worker], live: Any, owner: Actor
) -> None:
    sim_a, worker_a = fleet
    failures, recoveries = settings.PENDRA_HEALTH_FAILURES, settings.PENDRA_HEALTH_RECOVERIES
    assert set(served_by(live.url, owner.key)) == {"sim-a", "sim-b"}

    silent_since = timezone.now()
    sim_a.set_faults(hang=True)  # accepts connections, never answers: probes time out
    assert wait_for(lambda: _state(worker_a) == WorkerState.UNHEALTHY, timeout=20)

    # K failed sweeps made it unhealthy (one sweep may have been in flight when the fault began).
    event = WorkerEvent.objects.filter(worker=worker_a, to_state=WorkerState.UNHEALTHY).latest("id")
    assert event.reason.startswith(f"{failures} probes failed in a row")
    checks = _checks_between(worker_a, silent_since, event.created_at)
    assert checks[-failures:] == [False] * failures
    assert len(checks) <= failures + 1
    time.sleep(SNAPSHOT_SECONDS + 0.1)  # the gateway's fleet snapshot is at most this old
    assert served_by(live.url, owner.key) == Counter({"sim-b": 20})

    back_since = timezone.now()
    sim_a.set_faults()
    assert wait_for(lambda: _state(worker_a) == WorkerState.HEALTHY, timeout=20)

    event = WorkerEvent.objects.filter(worker=worker_a, to_state=WorkerState.HEALTHY).latest("id")
    assert event.reason == f"{recoveries} probes passed in a row"
    checks = _checks_between(worker_a, back_since, event.created_at)
    assert checks[-recoveries:] == [True] * recoveries
    assert len(checks) <= recoveries + 1
    time.sleep(SNAPSHOT_SECONDS + 0.1)
    assert served_by(live.url, owner.key)["sim-a"] > 0


# --- make run ----------------------------------------------------------------


def _simulator_pid(port: int) -> int:
    """The ``simulate_worker`` process devserver started on ``port``."""
    wanted = ["simulate_worker", "--port", str(port)]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(argv[i : i + 3] == wanted for i in range(len(argv))):
            return int(entry.name)
    raise AssertionError(f"no simulate_worker process on port {port}")


@pytest.fixture
def devserver(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """``manage.py devserver`` on the embedded defaults (SQLite, filesystem broker) in a fresh var dir."""
    port, sim_ports = free_port(), [free_port(), free_port()]
    env = {key: value for key, value in os.environ.items() if key not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(
        DEBUG="1",
        PENDRA_VAR_DIR=str(tmp_path / "var"),
        PENDRA_SIM_PORTS=",".join(map(str, sim_ports)),
        PYTHONUNBUFFERED="1",
    )
    log_path = tmp_path / "devserver.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "devserver", "--port", str(port)],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert process.poll() is None, f"devserver exited:\n{log_path.read_text()[-3000:]}"
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        assert wait_for(up, timeout=90, interval=0.2), f"devserver not up:\n{log_path.read_text()[-3000:]}"
        seeded = subprocess.run(
            [sys.executable, "manage.py", "seed_demo", "--json"],
            cwd=settings.BASE_DIR,
            env=env,
            capture_output=True,
            check=True,
            timeout=60,
        )
        yield {"url": url, "sim_ports": sim_ports, "keys": json.loads(seeded.stdout)["keys"], "log": log_path}
    finally:
        process.send_signal(signal.SIGTERM)  # devserver stops its children itself
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _workers(url: str, operator_key: str) -> dict[str, str]:
    response = httpx.get(f"{url}/api/v1/workers/", headers={"Authorization": f"Bearer {operator_key}"}, timeout=5)
    assert response.status_code == 200, response.text
    return {worker["name"]: worker["state"] for worker in response.json()["results"]}


@pytest.mark.timeout(240)  # devserver migrates a fresh SQLite database and starts seven processes first
def test_make_run_serves_and_shows_a_stopped_simulator_unhealthy_within_40_seconds(
    devserver: dict[str, Any],
) -> None:
    url, keys = devserver["url"], devserver["keys"]
    assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    chat = httpx.post(
        f"{url}/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {keys['owner']}"}, timeout=30
    )
    assert chat.status_code == 200, chat.text
    # Workers start unhealthy until their first probes pass; on a loaded machine the chat above
    # may be answered (by one of them) before the other's probes have run.
    both_healthy = {"sim-a": "healthy", "sim-b": "healthy"}
    assert wait_for(lambda: _workers(url, keys["operator"]) == both_healthy, timeout=60, interval=0.5), _workers(
        url, keys["operator"]
    )

    stopped_at = time.monotonic()
    os.kill(_simulator_pid(devserver["sim_ports"][0]), signal.SIGTERM)

    shown = wait_for(lambda: _workers(url, keys["operator"])["sim-a"] == "unhealthy", timeout=40, interval=0.5)
    assert shown, f"sim-a still not unhealthy after 40 s:\n{devserver['log'].read_text()[-3000:]}"
    assert time.monotonic() - stopped_at <= 40
    assert _workers(url, keys["operator"])["sim-b"] == "healthy"
