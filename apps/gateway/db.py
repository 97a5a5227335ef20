"""Running the ORM from the gateway's event loop.

Database work (cache misses only) goes to a small thread pool of its own so it never
blocks the loop. Its threads keep their connections; one that the server dropped is
closed and the call tried once more.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.db import InterfaceError, OperationalError, close_old_connections, connection

T = TypeVar("T")

# Threads mostly wait on a socket (Redis, PostgreSQL), so there are enough that a burst of
# requests never queues behind a few slow round trips.
_executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="pendra-gateway-io")


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


def submit_sync(fn: Callable[[], object]) -> None:
    """Fire-and-forget blocking work after a response (counting tokens), on the same pool."""
    _executor.submit(fn)
