from django.urls import include, path

from apps.console import auth_views, member_pages, org_urls, views

app_name = "console"

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", auth_views.ConsoleLoginView.as_view(), name="login"),
    path("logout/", auth_views.ConsoleLogoutView.as_view(), name="logout"),
    path("orgs/<slug:slug>/", include(org_urls.urlpatterns)),
    path("invitations/accept/", member_pages.InvitationAccept.as_view(), name="invitation-accept"),
]
