"""Test-only URLs: the project's URLs plus views that raise, to prove 500 handling."""

from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import AllowAny

from pendra_console import errors


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("secret-internal-detail: forced failure for a test")


@api_view(["GET"])
@permission_classes([AllowAny])
def api_boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("secret-internal-detail: forced failure in a DRF view")


urlpatterns = [
    path("boom", boom),
    path("api/v1/boom", api_boom),
    path("api/v1/plain-boom", boom),
    path("", include("pendra_console.urls")),
]

handler400 = errors.bad_request
handler403 = errors.permission_denied
handler404 = errors.page_not_found
handler500 = errors.server_error
