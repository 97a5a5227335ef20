"""Every change to the worker fleet: registration, edits, drain, removal and probe results.

Probe results drive a small state machine with hysteresis (``record_probe_result``), so a
single lost probe never flaps a worker in and out of rotation:

- healthy -> unhealthy after ``PENDRA_HEALTH_FAILURES`` consecutive failures;
- unhealthy -> healthy after ``PENDRA_HEALTH_RECOVERIES`` consecutive successes, except that
  a worker never checked before is promoted on its first success (new workers start
  unhealthy, so nothing routes to a URL nobody has seen answer);
- draining and disabled are the operator's decisions: probes never change them.

Each state change writes a WorkerEvent and an audit event (org=None: the fleet is the platform's).
Every change the gateways' fleet view holds (a worker registered, edited, removed, its state
or its served models changed) announces itself on commit (:mod:`pendra_console.epochs`), so
every gateway process reloads the fleet within a second; a probe that changes neither
announces nothing.
Bad input raises the plain domain ``ValidationError`` naming the field; a worker removed
meanwhile, ``NotFound``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.audit.services import audit
from apps.orgs.models import Organisation
from apps.workers.models import ModelKind, Worker, WorkerEvent, WorkerState
from apps.workers.signals import worker_state_changed
from apps.workers.validation import WorkerUrlError, validate_worker_url
from pendra_console import epochs
from pendra_console.api.exceptions import NotFound, ValidationError

RECENT_CHECKS_KEPT = 20
LATENCY_EWMA_WEIGHT = 0.3  # weight of the newest sample: reacts within a few probes, ignores one blip
MAX_MODELS = 200
MAX_MODEL_NAME = 200
_NAME_SHAPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")

# Guesses for a model name first seen in a worker's /v1/models that carries no kind.
_KIND_HINTS: tuple[tuple[str, str], ...] = (
    ("embed", ModelKind.EMBEDDINGS),
    ("bge", ModelKind.EMBEDDINGS),
    ("e5-", ModelKind.EMBEDDINGS),
    ("whisper", ModelKind.AUDIO),
    ("tts", ModelKind.AUDIO),
    ("speech", ModelKind.AUDIO),
    ("transcri", ModelKind.AUDIO),
    ("audio", ModelKind.AUDIO),
    ("image", ModelKind.IMAGE),
    ("dall-e", ModelKind.IMAGE),
    ("diffusion", ModelKind.IMAGE),
    ("flux", ModelKind.IMAGE),
    ("sdxl", ModelKind.IMAGE),
)


def guess_kind(model_name: str) -> str:
    lowered = model_name.lower()
    for hint, kind in _KIND_HINTS:
        if hint in lowered:
            return str(kind)
    return str(ModelKind.CHAT)


def _audit(actor: Any | None, action: str, worker: Worker, **data: Any) -> None:
    audit(actor, action, worker, org=None, data={"name": worker.name, **data})


def clean_worker_name(name: str) -> str:
    name = (name or "").strip()
    if not _NAME_SHAPE.fullmatch(name):
        raise ValidationError({"name": "Use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit."})
    return name


def clean_base_url(base_url: str) -> str:
    try:
        return validate_worker_url(base_url)
    except WorkerUrlError as exc:
        raise ValidationError({"base_url": str(exc)}) from None


def clean_models(models: Iterable[Mapping[str, Any]] | Mapping[str, str]) -> list[dict[str, str]]:
    """``[{"name", "kind"}]`` (or ``{name: kind}``) checked and de-duplicated, in the given order."""
    items: Iterable[Any] = (
        [{"name": name, "kind": kind} for name, kind in models.items()] if isinstance(models, Mapping) else models
    )
    cleaned: list[dict[str, str]] = []
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise ValidationError({"models": 'Each model is an object {"name": ..., "kind": ...}.'})
        name = item["name"].strip()
        kind = item.get("kind") or guess_kind(name)
        if not name or len(name) > MAX_MODEL_NAME or any(ord(char) < 32 for char in name):
            raise ValidationError({"models": f"Model names are 1-{MAX_MODEL_NAME} printable characters."})
        if kind not in ModelKind.values:
            raise ValidationError(
                {"models": f"Model {name!r} has kind {kind!r}; use one of {', '.join(ModelKind.values)}."}
            )
        if name in seen:
            raise ValidationError({"models": f"Model {name!r} is listed twice."})
        seen.add(name)
        cleaned.append({"name": name, "kind": str(kind)})
    if len(cleaned) > MAX_MODELS:
        raise ValidationError({"models": f"A worker serves at most {MAX_MODELS} models."})
    return cleaned


def _name_taken(name: str, *, exclude: Worker | None = None) -> bool:
    query = Worker.objects.filter(name=name)
    if exclude is not None:
        query = query.exclude(pk=exclude.pk)
    return query.exists()


@transaction.atomic
def worker_register(
    *,
    name: str,
    base_url: str,
    models: Iterable[Mapping[str, Any]] | Mapping[str, str],
    dedicated_org: Organisation | None = None,
    actor: Any | None,
) -> Worker:
    """A new worker, unhealthy until its first probe passes."""
    name = clean_worker_name(name)
    base_url = clean_base_url(base_url)
    served_models = clean_models(models)
    if _name_taken(name):
        raise ValidationError({"name": f"A worker named {name!r} already exists."})
    try:
        with transaction.atomic():
            worker = Worker.objects.create(
                name=name,
                base_url=base_url,
                served_models=served_models,
                dedicated_org=dedicated_org,
                state=WorkerState.UNHEALTHY,
            )
    except IntegrityError:  # a concurrent registration of the same name won
        raise ValidationError({"name": f"A worker named {name!r} already exists."}) from None
    WorkerEvent.objects.create(worker=worker, from_state="", to_state=worker.state, reason="registered")
    epochs.changed(epochs.FLEET)  # its models are known to the gateways before it is healthy
    _audit(
        actor, AuditEvent.Type.WORKER_REGISTERED, worker, base_url=base_url, models=[m["name"] for m in served_models]
    )
    return worker


_UNSET: Any = object()


@transaction.atomic
def worker_update(
    *,
    worker: Worker,
    actor: Any | None,
    name: str = _UNSET,
    base_url: str = _UNSET,
    models: Iterable[Mapping[str, Any]] | Mapping[str, str] = _UNSET,
    dedicated_org: Organisation | None = _UNSET,
) -> Worker:
    """Change what the operator may change; only the fields passed are touched."""
    changed: dict[str, Any] = {}
    if name is not _UNSET:
        name = clean_worker_name(name)
        if name != worker.name:
            if _name_taken(name, exclude=worker):
                raise ValidationError({"name": f"A worker named {name!r} already exists."})
            changed["name"] = name
    if base_url is not _UNSET:
        base_url = clean_base_url(base_url)
        if base_url != worker.base_url:
            changed["base_url"] = base_url
    if models is not _UNSET:
        served_models = clean_models(models)
        if served_models != worker.served_models:
            changed["served_models"] = served_models
    if dedicated_org is not _UNSET and dedicated_org != worker.dedicated_org:
        changed["dedicated_org"] = dedicated_org
    if not changed:
        return worker
    for field, value in changed.items():
        setattr(worker, field, value)
    try:
        with transaction.atomic():
            worker.save(update_fields=[*changed, "updated_at"])
    except IntegrityError:
        raise ValidationError({"name": f"A worker named {worker.name!r} already exists."}) from None
    shown = {
        field: (value.slug if isinstance(value, Organisation) else value)
        for field, value in changed.items()
        if field != "served_models"
    }
    if "served_models" in changed:
        shown["models"] = [m["name"] for m in changed["served_models"]]
    epochs.changed(epochs.FLEET)
    _audit(actor, AuditEvent.Type.WORKER_CHANGED, worker, changed=shown)
    return worker


def _change_state(*, worker: Worker, to_state: str, reason: str, actor: Any | None) -> bool:
    """Move ``worker`` (a row locked by the caller) to ``to_state``, writing both events. False if already there."""
    from_state = worker.state
    if from_state == to_state:
        return False
    worker.state = to_state
    worker.save(update_fields=["state", "updated_at"])
    WorkerEvent.objects.create(worker=worker, from_state=from_state, to_state=to_state, reason=reason[:300])
    _audit(
        actor,
        AuditEvent.Type.WORKER_STATE_CHANGED,
        worker,
        **{"from": from_state, "to": to_state, "reason": reason[:300]},
    )
    worker_state_changed.send(
        sender=Worker, worker=worker, from_state=from_state, to_state=to_state, reason=reason[:300]
    )
    epochs.changed(epochs.FLEET)
    return True


def _locked(worker: Worker) -> Worker:
    locked = Worker.objects.select_for_update().filter(pk=worker.pk).first()
    if locked is None:
        raise NotFound("Worker not found.")  # removed by someone else since the caller looked it up
    return locked


@transaction.atomic
def worker_set_state(*, worker: Worker, state: str, actor: Any | None, reason: str = "") -> Worker:
    """The operator's word on a worker's state (e.g. disable it, or force it healthy)."""
    if state not in WorkerState.values:
        raise ValidationError({"state": f"Unknown state {state!r}; use one of {', '.join(WorkerState.values)}."})
    locked = _locked(worker)
    _change_state(worker=locked, to_state=state, reason=reason or "set by operator", actor=actor)
    return locked


@transaction.atomic
def worker_drain(*, worker: Worker, actor: Any | None) -> Worker:
    """No new traffic; requests in flight finish; probes continue but change nothing."""
    locked = _locked(worker)
    _change_state(worker=locked, to_state=WorkerState.DRAINING, reason="drained by operator", actor=actor)
    return locked


@transaction.atomic
def worker_undrain(*, worker: Worker, actor: Any | None) -> Worker:
    """Back into rotation if its last probe passed, else unhealthy until probes say otherwise."""
    locked = _locked(worker)
    if locked.state != WorkerState.DRAINING:
        return locked
    last_ok = bool(locked.recent_checks) and bool(locked.recent_checks[0].get("ok"))
    to_state = WorkerState.HEALTHY if last_ok else WorkerState.UNHEALTHY
    _change_state(worker=locked, to_state=to_state, reason="undrained by operator", actor=actor)
    return locked


@transaction.atomic
def worker_remove(*, worker: Worker, actor: Any | None) -> None:
    _audit(actor, AuditEvent.Type.WORKER_REMOVED, worker, base_url=worker.base_url, state=worker.state)
    Worker.objects.filter(pk=worker.pk).delete()
    epochs.changed(epochs.FLEET)


def _refreshed_models(current: list[dict[str, str]], reported: list[dict[str, str]]) -> list[dict[str, str]]:
    """The worker's reported names, keeping the kinds already known; a new name gets its reported or guessed kind."""
    known = {entry.get("name"): entry.get("kind") for entry in current if isinstance(entry, dict)}
    refreshed: list[dict[str, str]] = []
    seen: set[str] = set()
    for entry in reported:
        name = str(entry.get("name") or "").strip()
        if not name or name in seen or len(name) > MAX_MODEL_NAME or len(refreshed) >= MAX_MODELS:
            continue
        seen.add(name)
        kind = known.get(name) or entry.get("kind")
        if kind not in ModelKind.values:
            kind = guess_kind(name)
        refreshed.append({"name": name, "kind": str(kind)})
    return refreshed


def record_probe_result(
    *,
    worker_id: str,
    ok: bool,
    latency_ms: float | None,
    error: str = "",
    models: list[dict[str, str]] | None = None,
    checked_at: datetime | None = None,
) -> Worker | None:
    """Apply one probe's outcome to the worker (locked, so overlapping sweeps serialise). None if it is gone."""
    now = checked_at or timezone.now()
    with transaction.atomic():
        worker = Worker.objects.select_for_update().filter(pk=worker_id).first()
        if worker is None:
            return None
        never_checked = not worker.recent_checks
        check = {
            "at": now.isoformat(),
            "ok": ok,
            "latency_ms": round(latency_ms, 1) if latency_ms is not None else None,
            "error": error[:200],
        }
        worker.recent_checks = [check, *worker.recent_checks][:RECENT_CHECKS_KEPT]
        worker.last_checked_at = now
        fields = ["recent_checks", "last_checked_at", "consecutive_failures", "consecutive_successes", "last_error"]
        if ok:
            worker.consecutive_successes += 1
            worker.consecutive_failures = 0
            worker.last_error = ""
            if latency_ms is not None:
                previous = worker.latency_ms_avg
                worker.latency_ms_avg = (
                    latency_ms
                    if previous is None
                    else LATENCY_EWMA_WEIGHT * latency_ms + (1 - LATENCY_EWMA_WEIGHT) * previous
                )
                fields.append("latency_ms_avg")
            if models is not None:
                refreshed = _refreshed_models(worker.served_models, models)
                if refreshed and refreshed != worker.served_models:
                    worker.served_models = refreshed
                    fields.append("served_models")
                    epochs.changed(epochs.FLEET)
        else:
            worker.consecutive_failures += 1
            worker.consecutive_successes = 0
            worker.last_error = (error or "probe failed")[:300]
        worker.save(update_fields=[*fields, "updated_at"])

        recoveries = settings.PENDRA_HEALTH_RECOVERIES
        failures = settings.PENDRA_HEALTH_FAILURES
        if (
            worker.state == WorkerState.UNHEALTHY
            and ok
            and (never_checked or worker.consecutive_successes >= recoveries)
        ):
            reason = "first probe passed" if never_checked else f"{worker.consecutive_successes} probes passed in a row"
            _change_state(worker=worker, to_state=WorkerState.HEALTHY, reason=reason, actor=None)
        elif worker.state == WorkerState.HEALTHY and not ok and worker.consecutive_failures >= failures:
            reason = f"{worker.consecutive_failures} probes failed in a row: {worker.last_error}"
            _change_state(worker=worker, to_state=WorkerState.UNHEALTHY, reason=reason, actor=None)
        return worker
