"""The operators' admin API for GPU workers: list, register, inspect, edit, drain, remove."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import generics, serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.exceptions import ValidationError as DrfValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.orgs.models import Organisation
from apps.orgs.permissions import IsOperator
from apps.workers import selectors, services, tasks
from apps.workers.models import ModelKind, Worker, WorkerState

T = TypeVar("T")


class ErrorOutput(serializers.Serializer):
    detail = serializers.CharField()
    request_id = serializers.CharField()


ERRORS = {
    400: OpenApiResponse(ErrorOutput, description="Invalid input; `detail` names the field."),
    401: OpenApiResponse(ErrorOutput, description="No credentials, or an invalid or expired key."),
    403: OpenApiResponse(ErrorOutput, description="The caller is not an operator."),
}
NOT_FOUND = {404: OpenApiResponse(ErrorOutput, description="No such worker.")}


class ModelSpec(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    kind = serializers.ChoiceField(choices=ModelKind.choices)


class WorkerOutput(serializers.ModelSerializer):
    models = ModelSpec(source="served_models", many=True)
    dedicated_org = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    recent_checks = serializers.JSONField()

    class Meta:
        model = Worker
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
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class WorkerInput(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    base_url = serializers.CharField(max_length=500)
    models = ModelSpec(many=True, required=False, default=list)
    dedicated_org = serializers.SlugRelatedField(
        slug_field="slug",
        queryset=Organisation.objects.all(),
        required=False,
        allow_null=True,
        error_messages={"does_not_exist": "No organisation with slug {value}."},
    )


class WorkerPatchInput(WorkerInput):
    name = serializers.CharField(max_length=100, required=False)
    base_url = serializers.CharField(max_length=500, required=False)
    models = ModelSpec(many=True, required=False)
    state = serializers.ChoiceField(choices=WorkerState.choices, required=False)


def _call(service: Callable[..., T], **kwargs: Any) -> T:
    """Services speak Django's ValidationError; the API answers it as a 400 naming the field."""
    try:
        return service(**kwargs)
    except DjangoValidationError as exc:
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        raise DrfValidationError(detail) from None
    except Worker.DoesNotExist:  # removed by someone else between the lookup and the change
        raise NotFound("Worker not found.") from None


def _worker_or_404(worker_id: Any) -> Worker:
    worker = selectors.worker_get(worker_id)
    if worker is None:
        raise NotFound("Worker not found.")
    return worker


@extend_schema_view(
    get=extend_schema(summary="List workers", responses={200: WorkerOutput(many=True), **ERRORS}),
    post=extend_schema(
        summary="Register a worker",
        description="The worker starts `unhealthy`; a probe is sent at once and promotes it when it answers.",
        request=WorkerInput,
        responses={201: WorkerOutput, **ERRORS},
    ),
)
class WorkerListView(generics.ListCreateAPIView):
    permission_classes = [IsOperator]
    serializer_class = WorkerOutput

    def get_queryset(self) -> Any:
        return selectors.worker_list()

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = WorkerInput(data=request.data)
        data.is_valid(raise_exception=True)
        worker = _call(services.worker_register, actor=request.user, **data.validated_data)
        tasks.probe_worker.delay_on_commit(str(worker.pk))
        return Response(WorkerOutput(worker).data, status=status.HTTP_201_CREATED)


@extend_schema_view(
    get=extend_schema(summary="Show a worker", responses={200: WorkerOutput, **ERRORS, **NOT_FOUND}),
    patch=extend_schema(
        summary="Edit a worker",
        description="Change name, base_url, models, dedicated_org, or set `state` (e.g. `disabled`).",
        request=WorkerPatchInput,
        responses={200: WorkerOutput, **ERRORS, **NOT_FOUND},
    ),
    delete=extend_schema(summary="Remove a worker", responses={204: None, **ERRORS, **NOT_FOUND}),
)
class WorkerDetailView(generics.RetrieveUpdateDestroyAPIView):
    permission_classes = [IsOperator]
    serializer_class = WorkerOutput
    http_method_names = ["get", "patch", "delete", "head", "options"]

    def get_object(self) -> Worker:
        return _worker_or_404(self.kwargs["worker_id"])

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        worker = self.get_object()
        data = WorkerPatchInput(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        changes = dict(data.validated_data)
        state = changes.pop("state", None)
        worker = _call(services.worker_update, worker=worker, actor=request.user, **changes)
        if state is not None:
            worker = _call(services.worker_set_state, worker=worker, state=state, actor=request.user)
        return Response(WorkerOutput(worker).data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.worker_remove(worker=self.get_object(), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class WorkerDrainView(APIView):
    permission_classes = [IsOperator]

    @extend_schema(
        summary="Drain a worker",
        description="No new traffic goes to it; requests in flight finish. Probes continue.",
        request=None,
        responses={200: WorkerOutput, **ERRORS, **NOT_FOUND},
    )
    def post(self, request: Request, worker_id: Any) -> Response:
        worker = _call(services.worker_drain, worker=_worker_or_404(worker_id), actor=request.user)
        return Response(WorkerOutput(worker).data)


class WorkerUndrainView(APIView):
    permission_classes = [IsOperator]

    @extend_schema(
        summary="Undrain a worker",
        description="Back to `healthy` if its last probe passed, else `unhealthy` until probes pass.",
        request=None,
        responses={200: WorkerOutput, **ERRORS, **NOT_FOUND},
    )
    def post(self, request: Request, worker_id: Any) -> Response:
        worker = _call(services.worker_undrain, worker=_worker_or_404(worker_id), actor=request.user)
        return Response(WorkerOutput(worker).data)
