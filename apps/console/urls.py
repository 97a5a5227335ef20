from django.urls import include, path
from django.views.generic import RedirectView

from apps.console import member_pages, org_urls, support_pages, views

app_name = "console"

urlpatterns = [
    path("", views.home, name="home"),
    # Sign-in and sign-out moved to /accounts/ (django-allauth); old links and bookmarks still work.
    path("login/", RedirectView.as_view(pattern_name="account_login", query_string=True), name="login"),
    path("logout/", RedirectView.as_view(pattern_name="account_logout"), name="logout"),
    path("orgs/<slug:slug>/", include(org_urls.urlpatterns)),
    path("support/", support_pages.SupportLookup.as_view(), name="support"),
    path("support/audit/", support_pages.PlatformAudit.as_view(), name="platform-audit"),
    path("invitations/accept/", member_pages.InvitationAccept.as_view(), name="invitation-accept"),
]
