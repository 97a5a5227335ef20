"""Change epochs: how a gateway process keeps keys, plans and the fleet for a minute and
still sees another process's change within a second.

The gateway's caches (:class:`pendra_console.ttl_cache.TTLCache`) hold three domains:
key principals (:data:`KEYS`), each org's plan snapshot (:data:`PLANS`) and the worker
fleet (:data:`FLEET`). Without Redis an entry lives its short TTL
(``PENDRA_KEY_CACHE_SECONDS``, ``PENDRA_PLAN_CACHE_SECONDS``, the fleet's second): that TTL
is what makes a revoked key, a plan change or a drained worker take effect everywhere
within a second, and it made every process reload everything from PostgreSQL once a
second, through the thread pool and the ORM, whether or not anything had changed.

With Redis, each domain has an epoch, ``pendra:epoch:<domain>``:

- **Writers** (the services that change a key, a plan, a budget, a price, a worker, and the
  health check when a worker's routable state changes) call :func:`changed`: once their
  transaction has committed, the epoch is set to a fresh random token. After the commit,
  so a process that reloads because of it reads the change. A random token rather than
  ``INCR``: a Redis that restarted without its data cannot hand back a value a process
  saw before.
- **Readers**: each gateway process runs :class:`EpochWatcher` on its event loop (started
  by requests, stopped when idle, as the fleet refresh is): one ``MGET`` of the epochs
  every :data:`POLL_SECONDS`. When a domain's token moved, its caches are cleared, so
  the next request reloads. After each answer the domain is *confirmed* as of the moment
  the ``MGET`` was sent (a change announced before that moment is in the answer).

An entry then lives ``PENDRA_WATCHED_CACHE_SECONDS`` (60 s, a safety net), but it is
served past its short TTL **only while its domain was confirmed within that short TTL**.
So the one-second guarantee does not depend on Redis answering: if the ``MGET`` fails or
the loop is late, confirmations stop, and entries expire after their short TTL exactly as
without Redis. The first answer after a start or after a failure cannot tell a change
announced (or lost) meanwhile from none: it confirms only entries loaded from then on,
and those already held keep their short life (:meth:`pendra_console.ttl_cache.TTLCache.shorten`; they are not
dropped, so a process that just read them keeps serving them through a database outage).

What is left open: a writer that cannot reach Redis while the gateways can (its
announcement is retried briefly, then logged) leaves the others on the old entry until
it expires, at most ``PENDRA_WATCHED_CACHE_SECONDS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import secrets
import time
import weakref
from typing import Protocol

import redis
import redis.asyncio as aioredis
from django.conf import settings
from django.db import transaction
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from pendra_console.hot_settings import hot

logger = logging.getLogger("pendra.epochs")

# A quarter of the one-second window: three polls may be lost or late before entries fall
# back to their short TTL.
POLL_SECONDS = 0.25
# With no request for this long, the watcher stops until the next one (as the fleet refresh does).
IDLE_STOP_SECONDS = 10.0
# A change is announced with this many attempts, this far apart, before it is given up.
ANNOUNCE_ATTEMPTS = 3
ANNOUNCE_PAUSE_SECONDS = 0.1


class Watched(Protocol):
    def clear(self) -> None: ...

    def shorten(self) -> None: ...


class Domain:
    """One kind of cached thing that changes together: its epoch in Redis and the caches it clears."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.redis_key = f"pendra:epoch:{name}"
        # time.monotonic() when the last MGET that confirmed this domain was sent; -inf: never.
        self.confirmed_at = -math.inf
        self._caches: weakref.WeakSet[Watched] = weakref.WeakSet()

    def register(self, cache: Watched) -> None:
        self._caches.add(cache)

    def clear(self) -> None:
        for cache in list(self._caches):
            cache.clear()

    def shorten(self) -> None:
        for cache in list(self._caches):
            cache.shorten()

    @staticmethod
    def lifetime() -> float:
        """How long an entry may live while confirmations keep coming."""
        return float(hot.PENDRA_WATCHED_CACHE_SECONDS)

    def __repr__(self) -> str:
        return f"Domain({self.name!r})"


KEYS = Domain("keys")
PLANS = Domain("plans")
FLEET = Domain("fleet")
DOMAINS = (KEYS, PLANS, FLEET)


def enabled() -> bool:
    return bool(settings.REDIS_URL) and hot.PENDRA_WATCHED_CACHE_SECONDS > 0


# --- Writers ----------------------------------------------------------------------


def changed(domain: Domain) -> None:
    """Tell every process, once the current transaction commits, that ``domain`` changed.

    The caller still evicts its own process's entries at once; this is for the others.
    Without Redis there is nobody to tell: their entries expire after the short TTL.
    """
    if not settings.REDIS_URL:
        return
    connection = transaction.get_connection()
    if connection.in_atomic_block:
        # Once per domain and transaction is enough (a leaving member's keys are revoked together),
        # if that one is sure to run whenever this one would (registered under savepoints still open).
        active = set(connection.savepoint_ids)
        for savepoints, callback, _ in connection.run_on_commit:
            if _announces(callback, domain) and savepoints <= active:
                return
    transaction.on_commit(functools.partial(_announce, domain), robust=True)


def _announces(callback: object, domain: Domain) -> bool:
    return isinstance(callback, functools.partial) and callback.func is _announce and callback.args == (domain,)


@functools.lru_cache(maxsize=4)
def _sync_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)


def _announce(domain: Domain) -> None:
    token = secrets.token_hex(8)
    for attempt in range(ANNOUNCE_ATTEMPTS):
        try:
            _sync_client(settings.REDIS_URL).set(domain.redis_key, token)
            return
        except (redis.RedisError, OSError) as exc:
            failure = exc
        if attempt + 1 < ANNOUNCE_ATTEMPTS:
            time.sleep(ANNOUNCE_PAUSE_SECONDS)
    logger.error(
        "could not announce a change of %s to the other processes (%s): one that reaches Redis may serve "
        "the old entry for up to PENDRA_WATCHED_CACHE_SECONDS",
        domain.name,
        type(failure).__name__,
    )


# --- Readers ----------------------------------------------------------------------


class EpochWatcher:
    """Polls the epochs from the event loop, clears what moved, and confirms the rest."""

    def __init__(self, domains: tuple[Domain, ...] = DOMAINS) -> None:
        self.domains = domains
        self._seen: list[bytes | str | None] | None = None  # None: no baseline (the next answer is one)
        self._task: asyncio.Future[None] | None = None
        self._last_asked = 0.0
        self._down = False
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = (
            weakref.WeakKeyDictionary()
        )

    def watch(self) -> None:
        """Called by each request (on the event loop): keeps the poller running while there is traffic."""
        self._last_asked = time.monotonic()
        if (self._task is None or self._task.done()) and enabled():
            self._task = asyncio.ensure_future(self._watch_forever())

    async def _watch_forever(self) -> None:
        try:
            while True:
                await self.poll()
                if time.monotonic() - self._last_asked >= IDLE_STOP_SECONDS:
                    return
                await asyncio.sleep(POLL_SECONDS)
        finally:
            self._seen = None  # stopped: confirmations lapse, and the next start takes a new baseline

    def _client(self) -> aioredis.Redis:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            # A connection of its own, never waiting behind the request path's pool. No retries:
            # a failure must show (it stops confirmations), not be hidden behind a backoff.
            client = aioredis.Redis.from_url(
                settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
            )
            self._clients[loop] = client
        return client

    async def poll(self) -> None:
        """One ``MGET``: clear the domains whose epoch moved, confirm all as of when it was sent."""
        sent = time.monotonic()
        try:
            values = await self._client().mget([domain.redis_key for domain in self.domains])
        except Exception as exc:  # whatever failed, the loop must go on and the entries fall back
            self._seen = None
            if not self._down:
                self._down = True
                logger.error(
                    "could not read the cache epochs (%s): cached keys, plans and the fleet live their "
                    "short TTL until Redis answers",
                    type(exc).__name__,
                )
            return
        for index, domain in enumerate(self.domains):
            if self._seen is None:
                domain.shorten()
            elif self._seen[index] != values[index]:
                domain.clear()
        self._seen = list(values)
        for domain in self.domains:
            domain.confirmed_at = sent
        if self._down:
            self._down = False
            logger.warning("the cache epochs are read again")

    async def close(self) -> None:
        """Stop polling (the process is shutting down)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()


watcher = EpochWatcher()
