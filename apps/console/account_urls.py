"""Mounted at /accounts/ before allauth's URLs, so sign-in keeps the console's throttle."""

from django.urls import path

from apps.console.auth_views import ConsoleLoginView

urlpatterns = [path("login/", ConsoleLoginView.as_view(), name="account_login")]
