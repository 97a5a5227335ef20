"""Django's Argon2 hasher with its cost taken from settings.

The algorithm name stays ``argon2``, so hashes made here and by Django's own hasher verify
with either; a hash made at a lower cost is upgraded at its user's next sign-in
(``must_update`` compares the stored parameters with these).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.hashers import Argon2PasswordHasher as DjangoArgon2PasswordHasher


class Argon2PasswordHasher(DjangoArgon2PasswordHasher):
    def __init__(self) -> None:
        self.memory_cost = int(settings.PENDRA_ARGON2_MEMORY_KIB)
        self.time_cost = int(settings.PENDRA_ARGON2_TIME_COST)
