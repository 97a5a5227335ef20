"""Publishes this process's requests in flight per worker for the console (:mod:`apps.workers.inflight`).

Called from the fleet-refresh loop of :class:`apps.gateway.routing.WorkerPool`, never from
the request path: one pipelined transaction when the counts changed, or to renew their
expiry while some are held; nothing at all while the process has none. A Redis outage
costs only the console's view of this process's counts (logged once, as the limits do).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from django.conf import settings
from redis.exceptions import RedisError

from apps.plans import limits_async
from apps.workers import inflight

logger = logging.getLogger("pendra.gateway")


def _held(counts: Mapping[str, int]) -> dict[str, int]:
    return {worker_id: count for worker_id, count in counts.items() if count > 0}


class InflightPublisher:
    def __init__(self, node_id: str = inflight.NODE_ID) -> None:
        self.node_id = node_id
        self._published: dict[str, int] = {}  # what the shared place holds for this process
        self._published_at = 0.0
        self._down = False

    def due(self, counts: Mapping[str, int]) -> bool:
        """Whether ``counts`` need a write: they changed, or held ones need their expiry renewed."""
        held = _held(counts)
        if held != self._published:
            return True
        return bool(held) and time.monotonic() - self._published_at >= inflight.HEARTBEAT_SECONDS

    async def publish(self, counts: Mapping[str, int]) -> None:
        if not self.due(counts):
            return
        held = _held(counts)
        now = time.monotonic()
        try:
            if settings.REDIS_URL:
                pipe = limits_async.client().pipeline(transaction=True)
                inflight.queue_publish(pipe, node_id=self.node_id, counts=held, now=time.time())
                await pipe.execute()
            else:
                inflight.publish_to_cache(node_id=self.node_id, counts=held, now=time.time())
        except (RedisError, OSError, TimeoutError) as exc:
            if not self._down:
                self._down = True
                logger.error(
                    "could not publish requests in flight (%s); the console shows them again once Redis is back",
                    type(exc).__name__,
                )
        except Exception:
            # Never let this end the refresh loop that keeps the fleet view fresh.
            logger.exception("could not publish requests in flight")
        else:
            if self._down:
                self._down = False
                logger.warning("requests in flight are published again")
            self._published = held
            self._published_at = now
            return
        if not held:
            self._published = {}  # what was published lapses on its own (TTL): nothing left to retry
        # otherwise _published is unchanged, so the next tick tries again

    @property
    def holds_nothing(self) -> bool:
        """Nothing of this process's is published (or left to lapse): the refresh loop may stop."""
        return not self._published
