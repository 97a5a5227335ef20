"""The live gateway with two simulated workers, shared with the gateway's own tests, and the
limits' two counter back ends as a parameter."""

from typing import Any

import pytest

from apps.gateway.tests.conftest import Gateway, gateway  # noqa: F401 (a fixture, used by name)
from apps.plans.selectors import plan_cache
from apps.plans.tests.test_across_processes import two_servers  # noqa: F401 (a fixture, used by name)
from testing.webhook_receiver import webhook_receiver  # noqa: F401 (a fixture, used by name)


@pytest.fixture(params=["redis", "embedded"])
def backend(request: pytest.FixtureRequest, settings: Any) -> str:
    """Redis (one Lua script per request), or the embedded back end the gateway uses without
    ``REDIS_URL`` (Django's cache, as `make run` does)."""
    if request.param == "embedded":
        settings.REDIS_URL = ""
    else:
        request.getfixturevalue("redis_required")
    plan_cache.clear()
    return str(request.param)


def reached_a_worker(gw: Gateway, path: str = "/v1/chat/completions") -> bool:
    """True once a request was admitted and sent on: the simulators count what they receive."""
    return any(sim.stats()["requests"].get(path) for sim in gw.sims)
