"""The admin API under /api/v1/: each app contributes its own routes."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-docs"),
    path("", include("apps.orgs.api_urls")),
    path("", include("apps.keys.api_urls")),
    path("", include("apps.plans.api_urls")),
    path("", include("apps.workers.api_urls")),
    path("", include("apps.requestlog.api_urls")),
]
