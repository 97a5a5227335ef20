from django.urls import URLPattern, URLResolver, path

from apps.plans import api

urlpatterns: list[URLPattern | URLResolver] = [
    path("plans/", api.PlanListView.as_view(), name="api-plans"),
    path("plans/<slug:slug>/", api.PlanDetailView.as_view(), name="api-plan"),
    path("orgs/<slug:slug>/plan/", api.OrgPlanView.as_view(), name="api-org-plan"),
]
