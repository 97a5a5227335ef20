"""A per-process cache whose entries live a short time, reloaded once for all who wait.

Keys, plans and the worker fleet are read on every ``/v1`` request; each is kept in
process memory for about a second, so a warm request reads no table, and a change made
elsewhere (a revoked key, a new plan, a drained worker) takes effect within that second.

Two rules every user of this cache relies on:

- An entry is never served past its expiry (``ttl`` seconds after it was stored). What
  was true a second ago is not a licence to answer with it now.
- When an entry has expired, the coroutines that need it share one load
  (:meth:`TTLCache.aget`), run in the database pool (:func:`pendra_console.aio.run_db`).
  Without that, every entry expiring under load sent every in-flight request to the
  database at once, and the p99 showed it.

A load that began before :meth:`~TTLCache.evict` or :meth:`~TTLCache.clear` returns its
answer to those who waited for it but does not store it: an eviction (a revocation, a
plan change) must not be undone by a read that raced it.

Synchronous callers (the admin API, Celery) use :meth:`TTLCache.get`, which loads in the
calling thread; they are few and never on the gateway's path, so they do not share loads.

A cache may be *watched* (``watch=``, a :class:`pendra_console.epochs.Domain`): its entries
then live ``PENDRA_WATCHED_CACHE_SECONDS`` instead of ``ttl``, but past ``ttl`` an entry is
served only while the domain's epoch in Redis was confirmed unchanged within the last
``ttl`` seconds (:class:`pendra_console.epochs.EpochWatcher` clears the cache when it
moved). "Never served past its expiry" then reads: never past its long expiry, and never
past ``ttl`` without a confirmation that new enough; with no confirmations (no Redis,
Redis down, the watcher late) a watched cache behaves exactly as an unwatched one.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Generic, TypeVar

from pendra_console.aio import run_db

if TYPE_CHECKING:
    from pendra_console.epochs import Domain

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """``key -> value`` for ``ttl`` seconds; ``ttl`` may be a callable read at each store (a setting).

    ``watch``: the epoch domain whose confirmations let an entry live past ``ttl`` (see above).
    """

    def __init__(
        self, ttl: float | Callable[[], float], *, watch: Domain | None = None, max_entries: int = 100_000
    ) -> None:
        self._ttl = ttl
        self._watch = watch
        self._max_entries = max_entries
        # key -> (expires at, expires at while confirmed, value, the trust its load began under),
        # the times on time.monotonic().
        self._entries: dict[K, tuple[float, float, V, int]] = {}
        self._inflight: dict[tuple[K, int], asyncio.Future[V]] = {}
        # Bumped by evict() and clear(): a load that saw an older value does not store.
        self._generation = 0
        # Bumped by shorten(): only entries loaded under the current trust may live past ttl.
        self._trust = 0
        self._lock = threading.Lock()
        if watch is not None:
            watch.register(self)

    @property
    def ttl(self) -> float:
        return self._ttl() if callable(self._ttl) else self._ttl

    def _servable(self, entry: tuple[float, float, V, int], now: float) -> bool:
        if now <= entry[0]:
            return True
        watch = self._watch
        # Past its short life only while the epochs said "unchanged" less than ttl ago.
        return (
            watch is not None and now <= entry[1] and entry[3] == self._trust and now - watch.confirmed_at <= self.ttl
        )

    def fresh(self, key: K) -> tuple[bool, V | None]:
        """``(True, value)`` while the entry may be served, else ``(False, None)``."""
        entry = self._entries.get(key)
        if entry is None or not self._servable(entry, time.monotonic()):
            return False, None
        return True, entry[2]

    def due(self, key: K, *, ahead: float) -> bool:
        """Whether a refresher that runs every ``ahead`` seconds should reload ``key`` now so
        that no request waits for a load: the entry is missing, near its long expiry, or its
        domain is not being confirmed (then every run reloads, as a short-lived cache needs)."""
        entry = self._entries.get(key)
        if entry is None or self._watch is None:
            return True
        later = time.monotonic() + ahead
        return later - self._watch.confirmed_at > self.ttl or later > entry[1]

    def entry(self, key: K) -> tuple[float, V] | None:
        """``(expires_at, value)`` as stored (``time.monotonic``; the short expiry), expired or not."""
        entry = self._entries.get(key)
        return None if entry is None else (entry[0], entry[2])

    def peek(self, key: K) -> V | None:
        """The last value stored, expired or not (a fallback when a reload fails)."""
        entry = self._entries.get(key)
        return None if entry is None else entry[2]

    def get(self, key: K, load: Callable[[], V]) -> V:
        """The fresh value, or ``load()`` in this thread, stored."""
        entry = self._entries.get(key)
        if entry is not None and self._servable(entry, time.monotonic()):
            return entry[2]
        generation, trust = self._generation, self._trust
        value = load()
        self._store_if_current(key, value, generation, trust)
        return value

    async def aget(self, key: K, load: Callable[[], V]) -> V:
        """The fresh value without awaiting anything, or one ``load`` shared by every waiter."""
        entry = self._entries.get(key)
        if entry is not None and self._servable(entry, time.monotonic()):
            return entry[2]
        return await self.reload(key, load)

    async def reload(self, key: K, load: Callable[[], V]) -> V:
        """Run ``load`` in the database pool and store it; callers that come meanwhile share it."""
        generation = self._generation
        flight = (key, generation)
        future = self._inflight.get(flight)
        if future is None:
            future = asyncio.ensure_future(run_db(self._load_and_store, key, load, generation, self._trust))
            self._inflight[flight] = future
            future.add_done_callback(lambda _: self._inflight.pop(flight, None))
        # Shielded: one waiter cancelled (its client went away) must not cancel the others' load.
        return await asyncio.shield(future)

    def _load_and_store(self, key: K, load: Callable[[], V], generation: int, trust: int) -> V:
        value = load()
        self._store_if_current(key, value, generation, trust)
        return value

    def _store_if_current(self, key: K, value: V, generation: int, trust: int) -> None:
        with self._lock:
            if generation == self._generation:
                self._put(key, value, trust)

    def store(self, key: K, value: V) -> None:
        """Store a value read elsewhere: no load of this cache vouches for when, so it lives ``ttl`` only."""
        with self._lock:
            self._put(key, value, -1)

    def _put(self, key: K, value: V, trust: int) -> None:
        if len(self._entries) >= self._max_entries and key not in self._entries:
            self._entries.clear()  # bounded memory, e.g. under a flood of random key ids
        now = time.monotonic()
        ttl = self.ttl
        lifetime = ttl if self._watch is None else max(ttl, self._watch.lifetime())
        self._entries[key] = (now + ttl, now + lifetime, value, trust)

    def evict(self, key: K) -> None:
        with self._lock:
            self._generation += 1
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()

    def shorten(self) -> None:
        """Every entry stored so far (and every load under way) keeps only its short life.

        For when the watch cannot vouch for what came before: its first answer, or its first
        after a failure, may already include a change announced since those entries were
        read. They are not dropped (a process keeps serving what it just read, e.g. through a
        database outage), only no longer extended by confirmations.
        """
        with self._lock:
            self._trust += 1
