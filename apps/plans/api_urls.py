from django.urls import URLPattern, URLResolver, path

from apps.plans import api, api_budgets, api_terms

urlpatterns: list[URLPattern | URLResolver] = [
    path("plans/", api.PlanListView.as_view(), name="api-plans"),
    path("plans/<slug:slug>/", api.PlanDetailView.as_view(), name="api-plan"),
    path("plans/<slug:slug>/prices/", api_terms.PlanPricesView.as_view(), name="api-plan-prices"),
    path("plans/<slug:slug>/prices/<int:price_id>/", api_terms.PlanPriceDetailView.as_view(), name="api-plan-price"),
    path("subscriptions/<slug:slug>/", api_terms.OrgPlanTermsView.as_view(), name="api-org-plan-terms"),
    path("orgs/<slug:slug>/budget/", api_budgets.OrgBudgetView.as_view(), name="api-org-budget"),
    path("orgs/<slug:slug>/keys/<int:key_id>/budget/", api_budgets.KeyBudgetView.as_view(), name="api-key-budget"),
    path("orgs/<slug:slug>/plan/", api.OrgPlanView.as_view(), name="api-org-plan"),
]
