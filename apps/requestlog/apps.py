from django.apps import AppConfig


class RequestlogConfig(AppConfig):
    name = "apps.requestlog"
    label = "requestlog"
