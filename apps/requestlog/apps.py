from django.apps import AppConfig


class RequestlogConfig(AppConfig):
    name = "apps.requestlog"
    label = "requestlog"

    def ready(self) -> None:
        from apps.requestlog.recorder import records_backlog
        from pendra_console.health import readiness_details

        # Rows accepted and not yet written: it grows only while they cannot be written.
        readiness_details["records_backlog"] = records_backlog
