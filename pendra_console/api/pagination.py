"""The admin API's page envelope (``REST_FRAMEWORK["DEFAULT_PAGINATION_CLASS"]``) and the helpers views use."""

from __future__ import annotations

from functools import cache
from typing import Any

from django.db.models import QuerySet
from rest_framework import serializers
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView


class Pagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 200


def paginate(
    *, request: Request, view: APIView, queryset: QuerySet[Any], serializer_class: type[serializers.Serializer[Any]]
) -> Response:
    paginator = Pagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True).data)


@cache
def paginated(serializer_class: type[serializers.Serializer[Any]], name: str) -> type[serializers.Serializer[Any]]:
    """The page envelope of Pagination around ``serializer_class``."""
    attrs: dict[str, Any] = {
        "count": serializers.IntegerField(),
        "next": serializers.URLField(allow_null=True),
        "previous": serializers.URLField(allow_null=True),
        "results": serializer_class(many=True),
        "Meta": type("Meta", (), {"ref_name": f"Paginated{name}List"}),
    }
    return type(f"Paginated{name}ListSerializer", (serializers.Serializer,), attrs)
