"""SSRF-safe worker base URLs.

The gateway and the health sweep send requests to whatever URL an operator registers,
from inside the platform's network. So a URL is accepted only when it is plain
http(s), carries no credentials, and neither it nor any address its host resolves to
is link-local, a cloud metadata endpoint, unspecified, multicast or reserved. Loopback
and private ranges are refused too unless ``PENDRA_ALLOW_PRIVATE_WORKER_URLS`` is on
(dev and tests, where the simulators live on 127.0.0.1). IPv6 forms that lead to an
IPv4 address (mapped, compatible, 6to4, Teredo, NAT64) are judged by that address.

Registration is not enough on its own: a name can resolve elsewhere later (DNS
rebinding), so every connection to a worker checks again (:mod:`apps.workers.egress`).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings

MAX_URL_LENGTH = 500
ALLOWED_SCHEMES = frozenset({"http", "https"})
METADATA_HOSTS = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "metadata.azure.com",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
METADATA_ADDRESSES = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),
        ipaddress.ip_address("169.254.170.2"),  # ECS task metadata
        ipaddress.ip_address("fd00:ec2::254"),
        ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud metadata
    }
)
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class WorkerUrlError(ValueError):
    """The URL is unacceptable; ``str(error)`` says why, for a 400 detail."""


_NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL_USE = ipaddress.ip_network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address leads to: a translator or tunnel delivers to them, so they are checked."""
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if address.sixtofour is not None:
        return [address.sixtofour]
    if address.teredo is not None:
        return list(address.teredo)
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _NAT64_WELL_KNOWN:
        return [low32]
    if address in _IPV4_COMPATIBLE and int(address) > 1:  # ::a.b.c.d (deprecated), not :: or ::1
        return [low32]
    return []


def address_problem(address: IPAddress, *, allow_private: bool) -> str | None:
    """Why a worker may not be reached at ``address``, or None; registration and every connection ask."""
    if isinstance(address, ipaddress.IPv6Address):
        for embedded in _embedded_ipv4(address):
            problem = address_problem(embedded, allow_private=allow_private)
            if problem is not None:
                return problem
        if address in _NAT64_WELL_KNOWN:
            return None  # a public IPv4 address behind the translator
        if address in _NAT64_LOCAL_USE:
            # Where a local-use NAT64 prefix puts the IPv4 address depends on its length: refuse them all.
            return f"{address} is a NAT64 local-use address"
        if address.is_site_local and not allow_private:
            return f"{address} is a site-local address, and private worker URLs are not allowed here"
    if address in METADATA_ADDRESSES:
        return f"{address} is a cloud metadata address"
    if address.is_link_local:
        return f"{address} is a link-local address"
    if address.is_unspecified or (isinstance(address, ipaddress.IPv4Address) and address in _THIS_NETWORK):
        return f"{address} is an unspecified address"
    if address.is_multicast:
        return f"{address} is a multicast address"
    if address.is_loopback:  # before "reserved": ::1 sits in the reserved ::/8 block
        return (
            None if allow_private else f"{address} is a loopback address, and private worker URLs are not allowed here"
        )
    if address.is_reserved:
        return f"{address} is a reserved address"
    if not address.is_global and not allow_private:
        return f"{address} is a private address, and private worker URLs are not allowed here"
    return None


def _resolve(host: str, port: int, label: str) -> list[IPAddress]:
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return [literal]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError):
        raise WorkerUrlError(f"{label} host {host!r} does not resolve.") from None
    addresses: list[IPAddress] = []
    for info in infos:
        # The scope suffix of a link-local IPv6 address ("fe80::1%eth0") is not part of the address.
        raw = str(info[4][0]).split("%", 1)[0]
        addresses.append(ipaddress.ip_address(raw))
    if not addresses:
        raise WorkerUrlError(f"{label} host {host!r} does not resolve.")
    return addresses


def validate_worker_url(raw: str, *, allow_private: bool | None = None, label: str = "Worker URL") -> str:
    """The normalised URL (lower-case scheme and host, no trailing slash) or :class:`WorkerUrlError`.

    ``label`` names the URL in the messages: webhook endpoints are held to the same rules.
    """
    if allow_private is None:
        allow_private = settings.PENDRA_ALLOW_PRIVATE_WORKER_URLS
    url = (raw or "").strip()
    if not url:
        raise WorkerUrlError(f"{label} is required.")
    if len(url) > MAX_URL_LENGTH:
        raise WorkerUrlError(f"{label} is longer than {MAX_URL_LENGTH} characters.")
    if any(ord(char) < 33 for char in url):
        raise WorkerUrlError(f"{label} must not contain spaces or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WorkerUrlError(f"{label} is malformed: {exc}.") from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        shown = f"{scheme}://" if scheme else "no scheme"
        raise WorkerUrlError(f"{label} must use http:// or https://, not {shown}.")
    if "@" in parts.netloc:
        raise WorkerUrlError(f"{label} must not contain credentials (user:password@).")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise WorkerUrlError(f"{label} must name a host.")
    if parts.query or parts.fragment:
        raise WorkerUrlError(f"{label} must not have a query string or fragment.")
    if host in METADATA_HOSTS:
        raise WorkerUrlError(f"{label} host {host} is a cloud metadata endpoint.")
    for address in _resolve(host, port or (443 if scheme == "https" else 80), label):
        problem = address_problem(address, allow_private=allow_private)
        if problem is not None:
            raise WorkerUrlError(f"{label} host {host} is not allowed: {problem}.")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), "", ""))
