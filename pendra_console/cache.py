"""Django's Redis cache, with ``incr`` in one round trip.

Django's ``RedisCache.incr`` asks ``EXISTS`` and then ``INCRBY`` (two round trips, and a
window between them). Rate-limit counters (``apps.plans.limits``, and django-ratelimit's
``get_usage`` for the admin API) call ``incr`` on every request, so here it is one atomic script.
Semantics are Django's: a missing key raises ``ValueError``.
"""

from __future__ import annotations

from typing import Any

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache

_INCR_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 1 then
    return redis.call('INCRBY', KEYS[1], ARGV[1])
end
return false
"""


class RedisCache(DjangoRedisCache):
    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        key = self.make_and_validate_key(key, version=version)
        client = self._cache.get_client(key, write=True)  # type: ignore[attr-defined]  # not in django-stubs
        value = client.eval(_INCR_IF_EXISTS, 1, key, delta)
        if value is None:
            raise ValueError(f"Key '{key}' not found.")
        return int(value)
