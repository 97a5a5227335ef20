"""``manage.py rebuild_rollups``: recompute the usage and request roll-ups from the records.

The record writer keeps them exact as it writes; this is for after a restore, or to check
them (the command prints how many roll-up rows it made). Safe while writers run.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from apps.requestlog.services import rollups_rebuild


class Command(BaseCommand):
    help = "Recompute the hourly usage and request roll-ups from the request and usage records."

    def handle(self, *args: Any, **options: Any) -> None:
        requests, usage = rollups_rebuild()
        self.stdout.write(f"request roll-up: {requests} rows; usage roll-up: {usage} rows")
