"""Worker simulator fixtures: real OpenAI-compatible HTTP servers on loopback, in threads.

``simulator`` is a factory: ``sim = simulator("sim-a", status=500)`` starts one on a free
port (keyword arguments are instance-wide faults, see :class:`apps.simulator.server.Faults`).
``register_sim(sim)`` registers a started simulator as a worker and probes it, so it is
healthy. Every simulator a test started is stopped at teardown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from apps.simulator.server import DEFAULT_MODELS, Faults, Simulator, SimulatorServer
from testing.servers import free_port


class Sim:
    """A running simulator: ``.url``, ``.name``, ``.stats()``, ``.set_faults(...)``, ``.stop()``, ``.restart()``."""

    def __init__(self, name: str, models: dict[str, str] | None = None, **faults: Any) -> None:
        self.simulator = Simulator(name, models or dict(DEFAULT_MODELS), Faults.from_mapping(faults))
        self.server = SimulatorServer(self.simulator, port=free_port())

    @property
    def name(self) -> str:
        return self.simulator.name

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def models(self) -> dict[str, str]:
        return dict(self.simulator.models)

    def start(self) -> Sim:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def restart(self) -> Sim:
        """Stop and start again on the same port (stats and faults are kept)."""
        self.server.stop()
        self.server.start()
        return self

    def set_faults(self, **faults: Any) -> None:
        """Replace the instance-wide faults; ``set_faults()`` clears them."""
        self.simulator.faults = Faults.from_mapping(faults)

    def stats(self) -> dict[str, Any]:
        return {"name": self.name, **self.simulator.stats.as_dict()}

    def reset_stats(self) -> None:
        from apps.simulator.server import Stats

        self.simulator.stats = Stats()


SimFactory = Callable[..., Sim]


@pytest.fixture
def simulator() -> Iterator[SimFactory]:
    """``simulator(name="sim", models=None, **faults) -> Sim``, started; all stopped at teardown."""
    started: list[Sim] = []

    def start(name: str = "sim", models: dict[str, str] | None = None, **faults: Any) -> Sim:
        sim = Sim(name, models, **faults).start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


@pytest.fixture
def register_sim(db: None) -> Callable[..., Any]:
    """``register_sim(sim, dedicated_org=None) -> Worker``: registered, probed and healthy."""
    from apps.workers import health, services
    from apps.workers.models import WorkerState

    def register(sim: Sim, *, dedicated_org: Any = None) -> Any:
        worker = services.worker_register(
            name=sim.name, base_url=sim.url, models=sim.models, dedicated_org=dedicated_org, actor=None
        )
        worker = health.probe_worker(str(worker.pk))
        assert worker is not None and worker.state == WorkerState.HEALTHY, (
            f"simulator {sim.name} at {sim.url} did not pass its first probe: {worker and worker.last_error}"
        )
        # A running test gateway looks at the fleet again now rather than within its second.
        from pendra_console.asgi import application

        application.pool.invalidate()
        return worker

    return register
