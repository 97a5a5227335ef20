from django.urls import URLPattern, URLResolver, path

from apps.webhooks import api

PREFIX = "orgs/<slug:slug>/webhooks/"

urlpatterns: list[URLPattern | URLResolver] = [
    path(PREFIX, api.EndpointListView.as_view(), name="api-webhooks"),
    path(f"{PREFIX}<uuid:endpoint_id>/", api.EndpointDetailView.as_view(), name="api-webhook"),
    path(f"{PREFIX}<uuid:endpoint_id>/secret/", api.EndpointSecretView.as_view(), name="api-webhook-secret"),
    path(f"{PREFIX}<uuid:endpoint_id>/deliveries/", api.DeliveryListView.as_view(), name="api-webhook-deliveries"),
    path(
        f"{PREFIX}<uuid:endpoint_id>/deliveries/<uuid:delivery_id>/resend/",
        api.DeliveryResendView.as_view(),
        name="api-webhook-resend",
    ),
]
