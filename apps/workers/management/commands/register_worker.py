"""``manage.py register_worker NAME URL [--models a:chat,...] [--probe]``: idempotent by name."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.orgs.models import Organisation
from apps.workers import health, selectors, services
from apps.workers.model_spec import parse_models
from pendra_console.api.exceptions import DomainError


class Command(BaseCommand):
    help = "Register a GPU worker, or update the one with this name; --probe checks it at once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("url")
        parser.add_argument("--models", help="name:kind,... (default: whatever the worker's /v1/models lists)")
        parser.add_argument("--dedicated-org", help="slug of the organisation this worker serves exclusively")
        parser.add_argument("--probe", action="store_true", help="probe it now, so a live worker is healthy at once")
        parser.add_argument(
            "--wait", type=float, default=10.0, help="with --probe: seconds to let a starting worker come up (10)"
        )

    def handle(self, *args: Any, name: str, url: str, **options: Any) -> None:
        models = parse_models(options["models"]) if options["models"] else None
        changes: dict[str, Any] = {"base_url": url}
        if models is not None:
            changes["models"] = models
        if options["dedicated_org"]:
            org = Organisation.objects.filter(slug=options["dedicated_org"]).first()
            if org is None:
                raise CommandError(f"No organisation with slug {options['dedicated_org']!r}.")
            changes["dedicated_org"] = org
        existing = selectors.worker_get_by_name(name)
        try:
            if existing is None:
                worker = services.worker_register(name=name, models=changes.pop("models", []), actor=None, **changes)
                verb = "Registered"
            else:
                worker = services.worker_update(worker=existing, actor=None, **changes)
                verb = "Updated"
        except DomainError as exc:
            detail = exc.detail
            messages = (
                "; ".join(f"{field}: {error}" for field, error in detail.items())
                if isinstance(detail, dict)
                else detail
            )
            raise CommandError(messages) from None
        if options["probe"]:
            worker = health.probe_worker(str(worker.pk), wait=max(0.0, options["wait"])) or worker
        self.stdout.write(f"{verb} worker {worker.name} ({worker.pk}) at {worker.base_url}: {worker.state}")
