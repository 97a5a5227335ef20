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

from django.db import InterfaceError, OperationalError, connection

T = TypeVar("T")

_executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="pendra-gateway-db")


def _with_reconnect(fn: Callable[..., T], *args: Any) -> T:
    try:
        return fn(*args)
    except (InterfaceError, OperationalError):
        connection.close()
        return fn(*args)


async def run_db(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(_executor, _with_reconnect, fn, *args)


def submit_sync(fn: Callable[[], object]) -> None:
    """Fire-and-forget blocking work after a response (counting tokens), on the same pool."""
    _executor.submit(fn)
