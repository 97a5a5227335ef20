"""The API key format: ``pnd_<public id>_<secret><checksum>``.

- ``pnd_``: recognisable, so secret scanners and people know what leaked;
- public id: 12 characters of ``[a-z0-9]``, the database lookup handle;
- secret: 32 base62 characters (190 bits from :mod:`secrets`);
- checksum: 6 base62 characters of CRC-32 over everything before it, so a mistyped
  or truncated key is rejected before any database query.

Only ``HMAC-SHA256(pepper, secret)`` is stored. The pepper (``PENDRA_KEY_PEPPERS``,
defaulting to ``SECRET_KEY``) means a copy of the table alone cannot be brute-forced.
Several peppers may be listed, newest first: new secrets are hashed with the first and a
presented secret matches a hash made with any of them, so rotating the pepper does not
invalidate every key at once.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import zlib
from dataclasses import dataclass

from pendra_console.hot_settings import hot

PREFIX = "pnd_"
PUBLIC_ID_LENGTH = 12
SECRET_LENGTH = 32
CHECKSUM_LENGTH = 6
_BASE62 = string.digits + string.ascii_letters
_PUBLIC_ALPHABET = string.digits + string.ascii_lowercase
_KEY_SHAPE = re.compile(
    rf"pnd_(?P<public_id>[a-z0-9]{{{PUBLIC_ID_LENGTH}}})_(?P<secret>[0-9A-Za-z]{{{SECRET_LENGTH}}})"
    rf"(?P<checksum>[0-9A-Za-z]{{{CHECKSUM_LENGTH}}})"
)
MAX_KEY_LENGTH = len(PREFIX) + PUBLIC_ID_LENGTH + 1 + SECRET_LENGTH + CHECKSUM_LENGTH


@dataclass(frozen=True, slots=True)
class ParsedKey:
    public_id: str
    secret: str


# Every pair of base62 digits, so a checksum (six digits) is three divisions and three
# look-ups, not six of each and a join: parse_key runs on every /v1 request.
_BASE62_PAIRS = [high + low for high in _BASE62 for low in _BASE62]


def _checksum(body: str) -> str:
    """CRC-32 of ``body`` as six base62 digits (62**6 > 2**32: nothing is cut off)."""
    number = zlib.crc32(body.encode("ascii"))
    rest, low = divmod(number, 3844)
    high, middle = divmod(rest, 3844)
    return _BASE62_PAIRS[high] + _BASE62_PAIRS[middle] + _BASE62_PAIRS[low]


def new_public_id() -> str:
    return "".join(secrets.choice(_PUBLIC_ALPHABET) for _ in range(PUBLIC_ID_LENGTH))


def new_secret() -> str:
    return "".join(secrets.choice(_BASE62) for _ in range(SECRET_LENGTH))


def format_key(public_id: str, secret: str) -> str:
    body = f"{PREFIX}{public_id}_{secret}"
    return body + _checksum(body)


def parse_key(raw: str | None) -> ParsedKey | None:
    """The key's parts if it is well-formed and its checksum holds; no database involved."""
    if not raw or len(raw) != MAX_KEY_LENGTH:
        return None
    match = _KEY_SHAPE.fullmatch(raw)
    if match is None:
        return None
    if not hmac.compare_digest(_checksum(raw[:-CHECKSUM_LENGTH]), match["checksum"]):
        return None
    return ParsedKey(public_id=match["public_id"], secret=match["secret"])


# HMAC-SHA256 keyed with each pepper once: a copy of the keyed state then costs a third of
# keying it again for every request (hmac.new). By pepper, so a changed setting keys anew.
_keyed: dict[str, hmac.HMAC] = {}


def _hmac(pepper: str, secret: str) -> str:
    keyed = _keyed.get(pepper)
    if keyed is None:
        if len(_keyed) >= 16:
            _keyed.clear()  # peppers only change with the settings: bounded all the same
        keyed = _keyed[pepper] = hmac.new(pepper.encode(), digestmod=hashlib.sha256)
    digest = keyed.copy()
    digest.update(secret.encode("ascii"))
    return digest.hexdigest()


def hash_secret(secret: str) -> str:
    """The hash stored for a new secret: made with the current (first) pepper."""
    return _hmac(hot.PENDRA_KEY_PEPPERS[0], secret)


def secret_matches(secret: str, stored_hash: str) -> bool:
    """True if ``stored_hash`` was made from ``secret`` with any configured pepper (constant time each)."""
    if not stored_hash:
        return False
    # Every pepper is tried, match or not, so the time taken does not tell which one matched.
    matches = [hmac.compare_digest(_hmac(pepper, secret), stored_hash) for pepper in hot.PENDRA_KEY_PEPPERS]
    return any(matches)


def key_from_headers(authorization: str | None, x_api_key: str | None) -> tuple[str | None, bool]:
    """The presented key and whether the request is acceptable at all.

    Either header may carry the key; both may carry the same key; two different keys
    are refused rather than guessing which one the caller meant.
    """
    bearer = None
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return None, False
        bearer = value.strip()
    other = x_api_key.strip() if x_api_key else None
    if bearer and other and bearer != other:
        return None, False
    return bearer or other, True
