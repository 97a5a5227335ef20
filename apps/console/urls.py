from django.urls import path

from apps.console import auth_views, views

app_name = "console"

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", auth_views.ConsoleLoginView.as_view(), name="login"),
    path("logout/", auth_views.ConsoleLogoutView.as_view(), name="logout"),
]
