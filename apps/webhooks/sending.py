"""The HTTP side of one delivery: a signed POST through the workers' guarded egress.

The connection goes out through :func:`apps.workers.egress.worker_connector`, whose
resolver refuses a host that now resolves to an address a URL could not be registered
with (DNS rebinding), exactly as for workers. Redirects are not followed (a 3xx is a
failed attempt): a redirect could point the request anywhere. Proxies from the
environment are ignored (``trust_env=False``) for the same reason. Only the first
``SNIPPET_BYTES`` of the answer are read and kept.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp

from apps.webhooks.signing import HEADER, signature_header
from apps.workers.egress import worker_connector

SNIPPET_BYTES = 1000
USER_AGENT = "Pendra-Webhooks/1"


@dataclass(frozen=True, slots=True)
class Outcome:
    status_code: int | None
    snippet: str
    error: str
    duration_ms: float

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


async def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession(
            connector=worker_connector(force_close=True), trust_env=False, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as session,
        session.post(url, data=body, headers=headers, allow_redirects=False) as response,
    ):
        return response.status, await response.content.read(SNIPPET_BYTES)


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect: {exc.os_error.strerror or exc.os_error}"
    return f"{type(exc).__name__}: {exc}"[:300]


def post_signed(*, url: str, secret: str, body: bytes, event_type: str, delivery_id: str, timeout: float) -> Outcome:
    """Send one attempt and say how it went; never raises for the receiver's faults."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        HEADER: signature_header(secret=secret, body=body),
        "Pendra-Event": event_type,
        "Pendra-Delivery": delivery_id,
    }
    started = time.perf_counter()
    try:
        status, raw = asyncio.run(_post(url, body, headers, timeout))
    except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
        return Outcome(None, "", _describe(exc, timeout), (time.perf_counter() - started) * 1000)
    snippet = raw.decode("utf-8", errors="replace")
    return Outcome(status, snippet, "", (time.perf_counter() - started) * 1000)
