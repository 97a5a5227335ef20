"""``manage.py reseal_secrets``: every stored signing secret sealed again with the first sealing key.

Run after putting a new key first in ``PENDRA_SEALING_KEYS``; once it has run, the older
keys open nothing and may be dropped (docs/runbook.md).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from apps.webhooks import services


class Command(BaseCommand):
    help = "Seal every webhook signing secret again with the first of PENDRA_SEALING_KEYS."

    def handle(self, *args: Any, **options: Any) -> None:
        count = services.endpoint_secrets_reseal()
        self.stdout.write(f"Sealed {count} webhook signing secret(s) again with the first of PENDRA_SEALING_KEYS.")
