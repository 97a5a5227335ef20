"""Reads of the worker fleet. Workers belong to the platform, not to an organisation.

``routable_workers`` and ``all_models`` are what the gateway asks for (one query each,
plain dataclasses/dicts so the hot path never touches the ORM afterwards).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.db.models import Count, QuerySet

from apps.workers.models import Worker, WorkerState


@dataclass(frozen=True, slots=True)
class WorkerTarget:
    id: str
    name: str
    base_url: str  # no trailing slash
    models: dict[str, str]  # model name -> kind ("chat" | "embeddings" | "image" | "audio")
    dedicated_org_id: int | None


def _models_of(served_models: object) -> dict[str, str]:
    models: dict[str, str] = {}
    if isinstance(served_models, list):
        for entry in served_models:
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                models[entry["name"]] = str(entry.get("kind") or "chat")
    return models


def routable_workers() -> list[WorkerTarget]:
    """Healthy workers, the only ones that get new traffic (draining ones finish what they have)."""
    rows = Worker.objects.filter(state=WorkerState.HEALTHY).order_by("name")
    return [
        WorkerTarget(
            id=str(pk),
            name=name,
            base_url=base_url.rstrip("/"),
            models=_models_of(served_models),
            dedicated_org_id=dedicated_org_id,
        )
        for pk, name, base_url, served_models, dedicated_org_id in rows.values_list(
            "id", "name", "base_url", "served_models", "dedicated_org_id"
        )
    ]


def all_models() -> dict[str, str]:
    """Every model some non-disabled worker serves, with its kind (first worker by name wins a conflict)."""
    models: dict[str, str] = {}
    rows = Worker.objects.exclude(state=WorkerState.DISABLED).order_by("name")
    for served_models in rows.values_list("served_models", flat=True):
        for name, kind in _models_of(served_models).items():
            models.setdefault(name, kind)
    return models


def model_catalogue() -> dict[str, list[tuple[str, int | None]]]:
    """Model -> [(kind, dedicated org id)] over every non-disabled worker, healthy or not (the gateway's view)."""
    catalogue: dict[str, list[tuple[str, int | None]]] = {}
    rows = Worker.objects.exclude(state=WorkerState.DISABLED).order_by("name")
    for served_models, dedicated_org_id in rows.values_list("served_models", "dedicated_org_id"):
        for name, kind in _models_of(served_models).items():
            catalogue.setdefault(name, []).append((kind, dedicated_org_id))
    return catalogue


def models_offered_to(*, org_id: int) -> dict[str, str]:
    """The models the org may call: served by a non-disabled shared worker or one dedicated to it."""
    return {
        name: kind
        for name, workers in model_catalogue().items()
        for kind, dedicated_org_id in workers
        if dedicated_org_id is None or dedicated_org_id == org_id
    }


def worker_list() -> QuerySet[Worker]:
    return Worker.objects.select_related("dedicated_org").order_by("name")


def worker_get(worker_id: uuid.UUID | str) -> Worker | None:
    try:
        pk = uuid.UUID(str(worker_id))
    except ValueError:
        return None
    return Worker.objects.select_related("dedicated_org").filter(pk=pk).first()


def worker_get_by_name(name: str) -> Worker | None:
    return Worker.objects.select_related("dedicated_org").filter(name=name).first()


def probe_targets() -> list[tuple[str, str]]:
    """(id, base_url) of every worker the health sweep checks: all but the disabled."""
    rows = Worker.objects.exclude(state=WorkerState.DISABLED).order_by("name").values_list("id", "base_url")
    return [(str(pk), base_url) for pk, base_url in rows]


def worker_state_counts() -> dict[str, int]:
    """How many workers are in each state (platform-wide: operators' metrics, no tenant data)."""
    counts = dict.fromkeys(WorkerState.values, 0)
    for row in Worker.objects.values("state").annotate(count=Count("pk")).order_by():
        counts[row["state"]] = row["count"]
    return counts
