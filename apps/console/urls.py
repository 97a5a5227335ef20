from django.urls import include, path
from django.views.generic import RedirectView

from apps.console import member_pages, org_urls, plan_pages, support_pages, views, worker_pages

app_name = "console"

urlpatterns = [
    path("", views.home, name="home"),
    # Sign-in and sign-out moved to /accounts/ (django-allauth); old links and bookmarks still work.
    path("login/", RedirectView.as_view(pattern_name="account_login", query_string=True), name="login"),
    path("logout/", RedirectView.as_view(pattern_name="account_logout"), name="logout"),
    path("orgs/<slug:slug>/", include(org_urls.urlpatterns)),
    path("support/", support_pages.SupportLookup.as_view(), name="support"),
    path("support/audit/", support_pages.PlatformAudit.as_view(), name="platform-audit"),
    path("platform/workers/", worker_pages.WorkerFleet.as_view(), name="workers"),
    path("platform/orgs/<slug:slug>/plan/", plan_pages.OrgTermsPage.as_view(), name="org-terms"),
    path("platform/workers/register/", worker_pages.WorkerRegister.as_view(), name="worker-register"),
    path("platform/workers/<uuid:worker_id>/", worker_pages.WorkerEdit.as_view(), name="worker-edit"),
    path("platform/workers/<uuid:worker_id>/drain/", worker_pages.WorkerDrain.as_view(), name="worker-drain"),
    path("platform/workers/<uuid:worker_id>/undrain/", worker_pages.WorkerUndrain.as_view(), name="worker-undrain"),
    path("platform/workers/<uuid:worker_id>/disable/", worker_pages.WorkerDisable.as_view(), name="worker-disable"),
    path("platform/workers/<uuid:worker_id>/enable/", worker_pages.WorkerEnable.as_view(), name="worker-enable"),
    path("platform/workers/<uuid:worker_id>/remove/", worker_pages.WorkerRemove.as_view(), name="worker-remove"),
    path("invitations/accept/", member_pages.InvitationAccept.as_view(), name="invitation-accept"),
]
