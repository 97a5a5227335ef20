"""The live gateway with two simulated workers, shared with the gateway's own tests, and the
records stream the durable hand-off's tests write through."""

from typing import Any

import pytest
import redis

from apps.gateway.tests.conftest import gateway  # noqa: F401 (a fixture, used by name)
from apps.requestlog import handoff


@pytest.fixture
def stream(redis_required: None, settings: Any) -> redis.Redis:
    """The session's Redis with an empty records stream; this process writes through it too."""
    settings.PENDRA_RECORD_HANDOFF = "redis"
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(handoff.STREAM)
    handoff.ensure_group(handoff.client())
    return client
