"""The operators' worker pages: the fleet, register, edit, drain, return to service, disable, enable, remove.

Every action calls the same service as the admin API (:mod:`apps.workers.services`), so it
is checked and audited the same way; a refused input comes back next to its field. Writes
are POST only (CSRF), each followed by a redirect. Only operators get in
(:class:`PlatformPage` with ``operators_only``); support staff and org users get the 403
every staff page gives. The name shown is the worker's ``name``: the ``X-Worker-Name``
header on every answer it gives.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any
from uuid import UUID

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from apps.console.access import PlatformPage, ServiceRefused, redirect_after_post, service_call
from apps.console.worker_forms import WorkerForm
from apps.requestlog.selectors import requests_per_worker
from apps.workers import selectors, services, tasks
from apps.workers.inflight import inflight_by_worker
from apps.workers.models import Worker, WorkerState

# The fleet table's traffic column: requests each worker took in this last stretch of time.
TRAFFIC_WINDOW = timedelta(minutes=1)


def _worker_or_404(worker_id: UUID) -> Worker:
    worker = selectors.worker_get(worker_id)
    if worker is None:
        raise Http404("Worker not found.")
    return worker


class OperatorPage(PlatformPage):
    operators_only = True


class WorkerFleet(OperatorPage):
    def get(self, request: HttpRequest) -> HttpResponse:
        workers = list(selectors.worker_list())
        traffic = requests_per_worker(since=timezone.now() - TRAFFIC_WINDOW)
        in_flight = inflight_by_worker()  # None: Redis unreadable, shown as unknown rather than 0
        rows = [
            (worker, None if in_flight is None else in_flight.get(str(worker.pk), 0), traffic.get(str(worker.pk), 0))
            for worker in workers
        ]
        return render(request, "console/workers/list.html", {"rows": rows, "states": WorkerState})


class WorkerRegister(OperatorPage):
    def get(self, request: HttpRequest) -> HttpResponse:
        return render(request, "console/workers/form.html", {"form": WorkerForm(), "worker": None})

    def post(self, request: HttpRequest) -> HttpResponse:
        form = WorkerForm(request.POST)
        if form.is_valid():
            try:
                with service_call(request, form):
                    worker = services.worker_register(actor=request.user, **form.service_fields())
            except ServiceRefused:
                pass
            else:
                tasks.probe_soon(str(worker.pk))  # as the API does: in rotation once a probe passes
                messages.success(request, f"Registered {worker.name}; it takes traffic once a health probe passes.")
                return redirect_after_post(request, "console:workers")
        return render(request, "console/workers/form.html", {"form": form, "worker": None}, status=400)


class WorkerEdit(OperatorPage):
    def get(self, request: HttpRequest, worker_id: UUID) -> HttpResponse:
        worker = _worker_or_404(worker_id)
        return render(request, "console/workers/form.html", {"form": WorkerForm.for_worker(worker), "worker": worker})

    def post(self, request: HttpRequest, worker_id: UUID) -> HttpResponse:
        worker = _worker_or_404(worker_id)
        form = WorkerForm(request.POST)
        if form.is_valid():
            try:
                with service_call(request, form):
                    worker = services.worker_update(worker=worker, actor=request.user, **form.service_fields())
            except ServiceRefused:
                pass
            else:
                messages.success(request, f"Saved {worker.name}.")
                return redirect_after_post(request, "console:workers")
        return render(request, "console/workers/form.html", {"form": form, "worker": worker}, status=400)


def _enable(*, worker: Worker, actor: Any) -> Worker:
    """A disabled worker comes back unhealthy and is probed at once: traffic only after a passing probe."""
    if worker.state != WorkerState.DISABLED:
        return worker
    worker = services.worker_set_state(
        worker=worker, state=WorkerState.UNHEALTHY, actor=actor, reason="enabled by operator"
    )
    tasks.probe_soon(str(worker.pk))
    return worker


def _disable(*, worker: Worker, actor: Any) -> Worker:
    return services.worker_set_state(
        worker=worker, state=WorkerState.DISABLED, actor=actor, reason="disabled by operator"
    )


class WorkerAction(OperatorPage):
    """One POST that changes a worker's state, then back to the fleet."""

    http_method_names = ["post"]
    action: Callable[..., Worker]
    done: str

    def post(self, request: HttpRequest, worker_id: UUID) -> HttpResponse:
        worker = _worker_or_404(worker_id)
        try:
            with service_call(request):
                worker = type(self).action(worker=worker, actor=request.user)
        except ServiceRefused:
            return redirect_after_post(request, "console:workers")
        messages.success(request, self.done.format(name=worker.name, state=worker.get_state_display().lower()))
        return redirect_after_post(request, "console:workers")


class WorkerDrain(WorkerAction):
    action = services.worker_drain
    done = "Draining {name}: no new requests go to it; those in flight finish."


class WorkerUndrain(WorkerAction):
    action = services.worker_undrain
    done = "Undrained {name}: back in service ({state})."


class WorkerDisable(WorkerAction):
    action = _disable
    done = "Disabled {name}: no traffic and no health probes."


class WorkerEnable(WorkerAction):
    action = _enable
    done = "Enabled {name} ({state}): it takes traffic once a health probe passes."


class WorkerRemove(OperatorPage):
    """Asked to confirm in the page (hx-confirm) before this POST is sent."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest, worker_id: UUID) -> HttpResponse:
        worker = _worker_or_404(worker_id)
        try:
            with service_call(request):
                services.worker_remove(worker=worker, actor=request.user)
        except ServiceRefused:
            return redirect_after_post(request, "console:workers")
        messages.success(request, f"Removed {worker.name}.")
        return redirect_after_post(request, "console:workers")
