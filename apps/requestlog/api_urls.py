from django.urls import path

from apps.requestlog import api, usage_api

urlpatterns = [
    path("requests/<str:request_id>/", api.RequestLookupView.as_view(), name="request-lookup"),
    path("orgs/<slug:slug>/requests/", api.OrgRequestListView.as_view(), name="org-requests"),
    path("orgs/<slug:slug>/requests/<str:request_id>/", api.OrgRequestDetailView.as_view(), name="org-request"),
    path("orgs/<slug:slug>/usage/", usage_api.OrgUsageView.as_view(), name="org-usage"),
]
