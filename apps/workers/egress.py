"""The only way out to a worker: connections that re-check every address they are about to use.

A worker URL was checked when it was registered (:mod:`apps.workers.validation`), but a
host name can resolve to another address later (DNS rebinding, or a record an attacker
controls). So the resolver of every connection to a worker, from the gateway and from
the health probes, refuses a name that now resolves to an address registration would
have refused. An IP literal never reaches the resolver; it was judged at registration
and cannot change. Redirects are never followed (callers pass ``allow_redirects=False``):
a worker could otherwise send the request anywhere.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from django.conf import settings

from apps.workers.validation import address_problem


class RefusedAddress(OSError):
    """The worker's host resolved to an address that is not allowed."""


def check_resolved(host: str, addresses: Iterable[str]) -> None:
    """Raise :class:`RefusedAddress` if any address ``host`` resolved to is one a worker may not have."""
    allow_private = settings.PENDRA_ALLOW_PRIVATE_WORKER_URLS
    for text in addresses:
        problem = address_problem(ipaddress.ip_address(text.split("%", 1)[0]), allow_private=allow_private)
        if problem is not None:
            raise RefusedAddress(f"worker host {host} resolves to a refused address: {problem}")


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, refusing the answer if any address in it is one a worker may not have."""

    def __init__(self) -> None:
        self._inner = aiohttp.DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        check_resolved(host, [str(result["host"]) for result in results])
        return results

    async def close(self) -> None:
        await self._inner.close()


def worker_tls_context() -> ssl.SSLContext:
    """What an https:// worker's certificate is checked against: the system's authorities and
    ``PENDRA_WORKER_CA_FILE``'s, host names verified. One context per CA file, shared."""
    return _tls_context(settings.PENDRA_WORKER_CA_FILE)


@functools.cache
def _tls_context(ca_file: str) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


def worker_connector(**options: Any) -> aiohttp.TCPConnector:
    """A connector for talking to workers (inside a running event loop)."""
    return aiohttp.TCPConnector(resolver=GuardedResolver(), **options)
