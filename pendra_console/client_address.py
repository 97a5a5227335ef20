"""The client's address, as the proxies we trust saw it; one rule for every surface.

``X-Forwarded-For`` is a list that each proxy appends to, so only its right end is
written by machines we run; everything to the left of the first address we do not
trust may be the client's own invention. The header is therefore read right to left,
and only while the hop that wrote the entry is in ``PENDRA_TRUSTED_PROXIES``: the first
untrusted address is the client. Without trusted proxies the header is ignored.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Any

from django.http import HttpRequest

from pendra_console.hot_settings import hot

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def _parse(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "203.0.113.5:443"
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def client_address(peer: str | None, forwarded_for: str | None) -> str:
    """The client's address given the connecting peer and the X-Forwarded-For value(s)."""
    trusted = _networks(tuple(hot.PENDRA_TRUSTED_PROXIES))
    current = _parse(peer or "")
    if current is None:
        return peer or ""
    if not trusted or not forwarded_for:
        return str(current)
    for hop in reversed(forwarded_for.split(",")):
        if not any(current in network for network in trusted):
            break  # ``current`` did not come through a proxy we run: it is the client
        parsed = _parse(hop)
        if parsed is None:
            break  # garbage written by someone untrusted: stop at the last address we know
        current = parsed
    return str(current)


def request_client_address(request: HttpRequest) -> str:
    """For Django views (Django joins repeated headers with commas)."""
    return client_address(request.META.get("REMOTE_ADDR"), request.META.get("HTTP_X_FORWARDED_FOR"))


def scope_client_address(scope: dict[str, Any]) -> str:
    """For ASGI applications: every X-Forwarded-For header, in order, then the peer."""
    values = [value.decode("latin-1") for name, value in scope.get("headers", ()) if name == b"x-forwarded-for"]
    client = scope.get("client")
    return client_address(client[0] if client else None, ",".join(values) if values else None)
