from django.urls import URLPattern, URLResolver, path

from apps.keys import api

urlpatterns: list[URLPattern | URLResolver] = [
    path("me", api.MeView.as_view(), name="api-me"),
    path("orgs/<slug:slug>/keys/", api.KeyListView.as_view(), name="api-keys"),
    path("orgs/<slug:slug>/keys/<int:key_id>/", api.KeyDetailView.as_view(), name="api-key"),
    path("orgs/<slug:slug>/keys/<int:key_id>/rotate/", api.KeyRotateView.as_view(), name="api-key-rotate"),
    path("orgs/<slug:slug>/keys/<int:key_id>/reveal/", api.KeyRevealView.as_view(), name="api-key-reveal"),
]
