"""The admin API under /api/v1/: each app contributes its own routes."""

from csp.constants import SELF, UNSAFE_INLINE
from csp.decorators import csp_update
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView

# Redoc styles the page it renders with <style> elements it creates at run time; the docs
# page alone allows inline styles (never scripts), the console keeps the strict policy.
docs_view = csp_update({"style-src": [SELF, UNSAFE_INLINE]})(SpectacularRedocView.as_view(url_name="api-schema"))

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", docs_view, name="api-docs"),
    path("", include("apps.orgs.api_urls")),
    path("", include("apps.keys.api_urls")),
    path("", include("apps.plans.api_urls")),
    path("", include("apps.workers.api_urls")),
    path("", include("apps.requestlog.api_urls")),
    path("", include("apps.webhooks.api_urls")),
]
