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
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from pendra_console.aio import run_db

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """``key -> value`` for ``ttl`` seconds; ``ttl`` may be a callable read at each store (a setting)."""

    def __init__(self, ttl: float | Callable[[], float], *, max_entries: int = 100_000) -> None:
        self._ttl = ttl
        self._max_entries = max_entries
        self._entries: dict[K, tuple[float, V]] = {}
        self._inflight: dict[tuple[K, int], asyncio.Future[V]] = {}
        # Bumped by evict() and clear(): a load that saw an older value does not store.
        self._generation = 0
        self._lock = threading.Lock()

    @property
    def ttl(self) -> float:
        return self._ttl() if callable(self._ttl) else self._ttl

    def fresh(self, key: K) -> tuple[bool, V | None]:
        """``(True, value)`` while the entry is within its ttl, else ``(False, None)``."""
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            return False, None
        return True, entry[1]

    def entry(self, key: K) -> tuple[float, V] | None:
        """``(expires_at, value)`` as stored (``time.monotonic``), expired or not."""
        return self._entries.get(key)

    def peek(self, key: K) -> V | None:
        """The last value stored, expired or not (a fallback when a reload fails)."""
        entry = self._entries.get(key)
        return None if entry is None else entry[1]

    def get(self, key: K, load: Callable[[], V]) -> V:
        """The fresh value, or ``load()`` in this thread, stored."""
        entry = self._entries.get(key)
        if entry is not None and entry[0] >= time.monotonic():
            return entry[1]
        generation = self._generation
        value = load()
        self._store_if_current(key, value, generation)
        return value

    async def aget(self, key: K, load: Callable[[], V]) -> V:
        """The fresh value without awaiting anything, or one ``load`` shared by every waiter."""
        entry = self._entries.get(key)
        if entry is not None and entry[0] >= time.monotonic():
            return entry[1]
        return await self.reload(key, load)

    async def reload(self, key: K, load: Callable[[], V]) -> V:
        """Run ``load`` in the database pool and store it; callers that come meanwhile share it."""
        generation = self._generation
        flight = (key, generation)
        future = self._inflight.get(flight)
        if future is None:
            future = asyncio.ensure_future(run_db(self._load_and_store, key, load, generation))
            self._inflight[flight] = future
            future.add_done_callback(lambda _: self._inflight.pop(flight, None))
        # Shielded: one waiter cancelled (its client went away) must not cancel the others' load.
        return await asyncio.shield(future)

    def _load_and_store(self, key: K, load: Callable[[], V], generation: int) -> V:
        value = load()
        self._store_if_current(key, value, generation)
        return value

    def _store_if_current(self, key: K, value: V, generation: int) -> None:
        with self._lock:
            if generation == self._generation:
                self._put(key, value)

    def store(self, key: K, value: V) -> None:
        with self._lock:
            self._put(key, value)

    def _put(self, key: K, value: V) -> None:
        if len(self._entries) >= self._max_entries and key not in self._entries:
            self._entries.clear()  # bounded memory, e.g. under a flood of random key ids
        self._entries[key] = (time.monotonic() + self.ttl, value)

    def evict(self, key: K) -> None:
        with self._lock:
            self._generation += 1
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()
