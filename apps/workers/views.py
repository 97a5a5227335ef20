"""The operators' admin API for GPU workers: list, register, inspect, edit, drain, remove.

Thin views on the conventions of the orgs and keys APIs: a nested strict InputSerializer
per write, one service call, the shared OutputSerializer. The services raise the plain
domain exceptions (``pendra_console.api.exceptions``), which ``pendra_console.errors``
answers for every view alike.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.orgs.models import Organisation
from apps.orgs.permissions import IsOperator
from apps.workers import selectors, services, tasks
from apps.workers.inflight import inflight_by_worker
from apps.workers.models import ModelKind, Worker, WorkerState
from pendra_console.api.exceptions import NotFound
from pendra_console.api.pagination import paginate, paginated
from pendra_console.api.serializers import StrictInputSerializer, error_responses

WORKERS = ["workers"]
WORKER_NOT_FOUND = "Worker not found."


class ModelSpec(StrictInputSerializer):
    name = serializers.CharField(max_length=200)
    kind = serializers.ChoiceField(choices=ModelKind.choices)


class WorkerOutputSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    models = ModelSpec(source="served_models", many=True)
    dedicated_org: serializers.SlugRelatedField[Organisation] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True, allow_null=True
    )
    recent_checks = serializers.JSONField()
    in_flight = serializers.SerializerMethodField(
        help_text="Requests the gateways have open with this worker now, summed over every gateway process "
        "(as of at most a second ago); null when the shared counts cannot be read (Redis unreachable)."
    )

    class Meta:
        model = Worker
        ref_name = "WorkerOutput"
        fields = [
            "id",
            "name",
            "base_url",
            "models",
            "state",
            "last_checked_at",
            "consecutive_failures",
            "consecutive_successes",
            "latency_ms_avg",
            "recent_checks",
            "last_error",
            "dedicated_org",
            "in_flight",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_in_flight(self, worker: Worker) -> int | None:
        # Read once per response: a page of workers shares its root serializer's context.
        if "in_flight" not in self.context:
            self.context["in_flight"] = inflight_by_worker()
        counts: dict[str, int] | None = self.context["in_flight"]
        return None if counts is None else counts.get(str(worker.pk), 0)


def _dedicated_org_field(**kwargs: Any) -> serializers.SlugRelatedField[Organisation]:
    return serializers.SlugRelatedField(
        slug_field="slug",
        queryset=Organisation.objects.all(),
        allow_null=True,
        error_messages={"does_not_exist": "No organisation with slug {value}."},
        **kwargs,
    )


def _worker_or_404(worker_id: UUID) -> Worker:
    worker = selectors.worker_get(worker_id)
    if worker is None:
        raise NotFound(WORKER_NOT_FOUND)
    return worker


class WorkerListView(APIView):
    permission_classes = [IsOperator]

    class InputSerializer(StrictInputSerializer):
        name = serializers.CharField(max_length=100)
        base_url = serializers.CharField(max_length=500)
        models = ModelSpec(many=True, required=False, default=list)
        dedicated_org = _dedicated_org_field(required=False)

        class Meta:
            ref_name = "WorkerInput"

    @extend_schema(
        tags=WORKERS,
        operation_id="workers_list",
        summary="List workers",
        responses={200: paginated(WorkerOutputSerializer, "Worker"), **error_responses(403)},
    )
    def get(self, request: Request) -> Response:
        workers = selectors.worker_list()
        return paginate(request=request, view=self, queryset=workers, serializer_class=WorkerOutputSerializer)

    @extend_schema(
        tags=WORKERS,
        summary="Register a worker",
        description=(
            "The worker starts `unhealthy`; a probe is sent at once (if the task broker is unreachable, "
            "the next health sweep probes it) and promotes it when it answers."
        ),
        request=InputSerializer,
        responses={201: WorkerOutputSerializer, **error_responses(400, 403)},
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        worker = services.worker_register(actor=request.user, **data.validated_data)
        tasks.probe_soon(str(worker.pk))
        return Response(WorkerOutputSerializer(worker).data, status=status.HTTP_201_CREATED)


class WorkerDetailView(APIView):
    permission_classes = [IsOperator]

    class InputSerializer(StrictInputSerializer):
        name = serializers.CharField(max_length=100, required=False)
        base_url = serializers.CharField(max_length=500, required=False)
        models = ModelSpec(many=True, required=False)
        dedicated_org = _dedicated_org_field(required=False)
        state = serializers.ChoiceField(choices=WorkerState.choices, required=False)

        class Meta:
            ref_name = "WorkerPatchInput"

    @extend_schema(
        tags=WORKERS,
        summary="Show a worker",
        responses={200: WorkerOutputSerializer, **error_responses(403, 404)},
    )
    def get(self, request: Request, worker_id: UUID) -> Response:
        return Response(WorkerOutputSerializer(_worker_or_404(worker_id)).data)

    @extend_schema(
        tags=WORKERS,
        summary="Edit a worker",
        description="Change name, base_url, models, dedicated_org, or set `state` (e.g. `disabled`).",
        request=InputSerializer,
        responses={200: WorkerOutputSerializer, **error_responses(400, 403, 404)},
    )
    def patch(self, request: Request, worker_id: UUID) -> Response:
        worker = _worker_or_404(worker_id)
        data = self.InputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        changes = dict(data.validated_data)
        state = changes.pop("state", None)
        worker = services.worker_update(worker=worker, actor=request.user, **changes)
        if state is not None:
            worker = services.worker_set_state(worker=worker, state=state, actor=request.user)
        return Response(WorkerOutputSerializer(worker).data)

    @extend_schema(tags=WORKERS, summary="Remove a worker", responses={204: None, **error_responses(403, 404)})
    def delete(self, request: Request, worker_id: UUID) -> Response:
        services.worker_remove(worker=_worker_or_404(worker_id), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class WorkerDrainView(APIView):
    permission_classes = [IsOperator]

    @extend_schema(
        tags=WORKERS,
        summary="Drain a worker",
        description="No new traffic goes to it; requests in flight finish. Probes continue.",
        request=None,
        responses={200: WorkerOutputSerializer, **error_responses(403, 404)},
    )
    def post(self, request: Request, worker_id: UUID) -> Response:
        worker = services.worker_drain(worker=_worker_or_404(worker_id), actor=request.user)
        return Response(WorkerOutputSerializer(worker).data)


class WorkerUndrainView(APIView):
    permission_classes = [IsOperator]

    @extend_schema(
        tags=WORKERS,
        summary="Undrain a worker",
        description="Back to `healthy` if its last probe passed, else `unhealthy` until probes pass.",
        request=None,
        responses={200: WorkerOutputSerializer, **error_responses(403, 404)},
    )
    def post(self, request: Request, worker_id: UUID) -> Response:
        worker = services.worker_undrain(worker=_worker_or_404(worker_id), actor=request.user)
        return Response(WorkerOutputSerializer(worker).data)
