"""Which worker serves a request.

The fleet's healthy workers come from ``apps.workers.selectors`` and are kept in
process memory, so a warm request reads no table. Without Redis the view lives
``SNAPSHOT_SECONDS`` and a background task reloads it every half of that. With Redis
(:mod:`pendra_console.epochs`) it lives ``PENDRA_WATCHED_CACHE_SECONDS`` while the fleet's
epoch confirms nothing changed, and is reloaded when the epoch moves (a worker registered,
edited, drained, removed, or its health changed) or the view reaches that age: health
changes still reach routing within ``SNAPSHOT_SECONDS`` of their commit, with no reload a
second while nothing happens. Load (requests in flight) and
recent failures are this process's own observations (the in-flight counts are also
published for the console's fleet page, :mod:`apps.gateway.inflight`): among the workers serving
the model, dedicated ones come first, then those not cooling down after a failure,
then the least loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass, field

from apps.gateway.inflight import InflightPublisher
from apps.workers.selectors import WorkerTarget, model_catalogue, routable_workers
from pendra_console import epochs
from pendra_console.errors import unavailable_service
from pendra_console.ttl_cache import TTLCache

logger = logging.getLogger("pendra.gateway")

SNAPSHOT_SECONDS = 1.0
# With no request for this long, the background refresh stops until the next one.
IDLE_STOP_SECONDS = 10.0
_FLEET = "fleet"


@dataclass(slots=True)
class FleetSnapshot:
    workers: list[WorkerTarget]
    catalogue: dict[str, list[tuple[str, int | None]]]  # apps.workers.selectors.model_catalogue
    # The routable workers of each model, indexed once per load: a request looks at the few
    # that serve its model, not at the whole fleet.
    serving: dict[str, list[WorkerTarget]] = field(init=False)

    def __post_init__(self) -> None:
        self.serving = {}
        for worker in self.workers:
            for model in worker.models:
                self.serving.setdefault(model, []).append(worker)

    def kind_of(self, model: str, org_id: int) -> str | None:
        """The model's kind if a worker the org may use serves it (healthy or not), else None.

        A worker dedicated to another org does not count, so its model names stay unknown here.
        """
        for kind, dedicated_org_id in self.catalogue.get(model, ()):
            if dedicated_org_id is None or dedicated_org_id == org_id:
                return kind
        return None


def _load_snapshot() -> FleetSnapshot:
    return FleetSnapshot(workers=routable_workers(), catalogue=model_catalogue())


@dataclass
class WorkerPool:
    cooldown_seconds: float = 10.0
    inflight: dict[str, int] = field(default_factory=dict)
    cooling_until: dict[str, float] = field(default_factory=dict)
    # One entry (the fleet) in the same TTL cache as keys and plans.
    _fleet: TTLCache[str, FleetSnapshot] = field(default_factory=lambda: TTLCache(SNAPSHOT_SECONDS, watch=epochs.FLEET))
    # The last view loaded: what routing keeps using when a reload fails (the cache may have been cleared).
    _last_loaded: FleetSnapshot | None = None
    publisher: InflightPublisher = field(default_factory=InflightPublisher)
    _refresher: asyncio.Future[None] | None = None
    _publishing: asyncio.Future[None] | None = None
    _last_asked: float = 0.0

    async def fleet(self) -> FleetSnapshot:
        """The fleet as of less than ``SNAPSHOT_SECONDS`` ago, or confirmed unchanged since.

        A background task reloads it when due (every half of that without confirmations),
        so requests rarely wait; one waits when the fleet's epoch has just moved or that
        task has fallen behind (the database is slow), which keeps the promise that health
        changes reach routing within a sweep.
        """
        self._last_asked = time.monotonic()
        self._keep_refreshing()
        return await self._fleet.aget(_FLEET, self._load)

    def _keep_refreshing(self) -> None:
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.ensure_future(self._refresh_forever())

    async def _refresh_forever(self) -> None:
        # An idle process stops asking the database; the next request starts this again. While
        # requests are in flight (a long stream outlives the idle time) it keeps publishing their
        # counts for the console, and once none are left it withdraws them before stopping.
        while True:
            await asyncio.sleep(SNAPSHOT_SECONDS / 2)
            if self._asked_lately() and self._fleet.due(_FLEET, ahead=SNAPSHOT_SECONDS / 2):
                try:
                    await self._fleet.reload(_FLEET, self._load)
                except Exception:
                    logger.exception("could not refresh the worker list")
            self._publish()
            # Checked after the last await, so a request arriving meanwhile keeps this running.
            if not self._asked_lately() and not any(self.inflight.values()) and self._withdrawn():
                return

    def _publish(self) -> None:
        # A task of its own: a hung Redis must not hold back the fleet refresh (a tick is skipped instead).
        if (self._publishing is None or self._publishing.done()) and self.publisher.due(self.inflight):
            self._publishing = asyncio.ensure_future(self.publisher.publish(dict(self.inflight)))

    def _withdrawn(self) -> bool:
        return (self._publishing is None or self._publishing.done()) and self.publisher.holds_nothing

    def _asked_lately(self) -> bool:
        return time.monotonic() - self._last_asked < IDLE_STOP_SECONDS

    def _load(self) -> FleetSnapshot:
        previous = self._last_loaded
        try:
            self._last_loaded = _load_snapshot()
            return self._last_loaded
        except Exception as exc:
            if previous is None:
                raise
            if unavailable_service(exc) is None:
                logger.exception("could not refresh the worker list; routing on the previous one")
            else:  # an outage, already reported by everything else that needs the database
                logger.error(
                    "could not refresh the worker list (%s); routing on the previous one", exc.__class__.__name__
                )
            return previous

    async def close(self) -> None:
        """Stop the background refresh (the process is shutting down)."""
        if self._refresher is not None and not self._refresher.done():
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        self._refresher = None
        if self._publishing is not None:
            await self._publishing
        await self.publisher.publish({})  # leave the console's sum now, not when the TTL lapses

    def invalidate(self) -> None:
        """Forget the fleet view now (tests that rebuild the fleet; never needed in production)."""
        self._fleet.clear()

    def candidates(self, snapshot: FleetSnapshot, model: str, org_id: int, exclude: set[str]) -> list[WorkerTarget]:
        eligible = [
            worker
            for worker in snapshot.serving.get(model, ())
            if worker.id not in exclude and (worker.dedicated_org_id is None or worker.dedicated_org_id == org_id)
        ]
        if len(eligible) < 2:
            return eligible
        now = time.monotonic()
        random.shuffle(eligible)  # ties broken at random so equal workers share the load
        eligible.sort(
            key=lambda worker: (
                worker.dedicated_org_id != org_id,
                self.cooling_until.get(worker.id, 0.0) > now,
                self.inflight.get(worker.id, 0),
            )
        )
        return eligible

    def models_for(self, snapshot: FleetSnapshot, org_id: int) -> dict[str, str]:
        models: dict[str, str] = {}
        for worker in snapshot.workers:
            if worker.dedicated_org_id is None or worker.dedicated_org_id == org_id:
                models.update(worker.models)
        return models

    def started(self, worker_id: str) -> None:
        self.inflight[worker_id] = self.inflight.get(worker_id, 0) + 1

    def finished(self, worker_id: str) -> None:
        self.inflight[worker_id] = max(0, self.inflight.get(worker_id, 1) - 1)

    def failed(self, worker_id: str) -> None:
        self.cooling_until[worker_id] = time.monotonic() + self.cooldown_seconds

    def succeeded(self, worker_id: str) -> None:
        self.cooling_until.pop(worker_id, None)
