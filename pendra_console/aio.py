"""Blocking work (the ORM) from an event loop, without stalling it.

``run_db`` sends a call to a small thread pool of its own, so database work (cache misses
only, on the gateway's path) never blocks the loop. Its threads honour ``CONN_MAX_AGE``
like Django's request cycle, and a connection the server dropped is closed and the call
tried once more.

The per-process caches built on it (one shared load when an entry expires) are
:class:`pendra_console.ttl_cache.TTLCache`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.db import InterfaceError, OperationalError, close_old_connections, connection

logger = logging.getLogger("pendra.aio")

T = TypeVar("T")

# Threads mostly wait on a socket (PostgreSQL), so there are enough that a burst of
# cache misses never queues behind a few slow queries.
_executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="pendra-db")


def _with_reconnect(fn: Callable[..., T], *args: Any) -> T:
    try:
        return fn(*args)
    except (InterfaceError, OperationalError):
        connection.close()
        return fn(*args)
    finally:
        # Honour CONN_MAX_AGE as Django's request cycle would: 0 closes at once, N keeps it N seconds.
        close_old_connections()


async def run_db(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(_executor, _with_reconnect, fn, *args)
