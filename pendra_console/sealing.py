"""Secrets the server must read back, sealed at rest: today the webhooks' signing secrets.

An API key is stored as a hash because the server only ever compares it. A webhook
endpoint's signing secret cannot be: every delivery is signed with it, and its owners may
reveal it again. So it is stored encrypted, and a database dump or backup without the
server's own secrets holds no usable signing secret.

``PENDRA_SEALING_KEYS`` lists server secrets, newest first, as ``PENDRA_KEY_PEPPERS`` does
for API keys: a value is sealed with the first, and a value sealed with any of them opens.
Each entry is stretched into a Fernet key (AES-128-CBC and HMAC-SHA256, from the
``cryptography`` package) by HKDF-SHA256. ``manage.py reseal_secrets`` seals every stored
value again with the first entry, after which the older ones may be dropped
(docs/runbook.md).

A sealed value is ``sealed:`` followed by the Fernet token; :class:`SealedTextField` seals
on the way into the database and opens on the way out, so code that reads
``endpoint.secret`` sees the plain value and the column never does.
"""

from __future__ import annotations

import base64
import functools
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

PREFIX = "sealed:"
_PURPOSE = b"pendra: sealed secrets, v1"


@functools.cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    derived = [
        HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_PURPOSE).derive(key.encode()) for key in keys
    ]
    return MultiFernet([Fernet(base64.urlsafe_b64encode(key)) for key in derived])


def _keys() -> MultiFernet:
    return _fernet(tuple(settings.PENDRA_SEALING_KEYS))


def seal(value: str) -> str:
    """``value`` encrypted with the first sealing key (a different token every time)."""
    return PREFIX + _keys().encrypt(value.encode()).decode("ascii")


def unseal(stored: str) -> str:
    """The value ``stored`` was sealed from, with whichever sealing key opens it."""
    if not stored.startswith(PREFIX):
        raise ImproperlyConfigured("A stored secret is not sealed; run the migrations (manage.py migrate).")
    try:
        return _keys().decrypt(stored[len(PREFIX) :].encode("ascii")).decode()
    except (InvalidToken, UnicodeError):
        raise ImproperlyConfigured(
            "No key in PENDRA_SEALING_KEYS opens a stored secret: was a key dropped before "
            "`manage.py reseal_secrets` ran, or SECRET_KEY changed while it was the sealing key? (docs/runbook.md)"
        ) from None


class SealedTextField(models.TextField):  # type: ignore[type-arg]
    """A text column stored sealed (:func:`seal`) and read back as the plain value.

    Equality lookups cannot work on it (each seal is different): it is for values that are
    read through their row, never searched.
    """

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        return None if value is None else unseal(value)

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        return None if value is None else seal(value)
