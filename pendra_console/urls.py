"""Root URLs. ``/v1`` is served by the gateway ASGI app in front of Django (asgi.py);
its routes are listed here only so Django-side tools (the 404 prefix hint, tests on
the WSGI client) know they exist."""

from django.urls import include, path

from pendra_console import errors, health, metrics

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("api/v1/", include("pendra_console.api_urls")),
    # Before allauth's own URLs, so sign-in keeps the console's throttle.
    path("accounts/", include("apps.console.account_urls")),
    path("accounts/", include("allauth.urls")),
    path("", include("apps.console.urls")),
]

handler400 = errors.bad_request
handler403 = errors.permission_denied
handler404 = errors.page_not_found
handler500 = errors.server_error
