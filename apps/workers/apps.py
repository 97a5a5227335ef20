from django.apps import AppConfig


class WorkersConfig(AppConfig):
    name = "apps.workers"
    label = "workers"

    def ready(self) -> None:
        from apps.workers import receivers  # noqa: F401  (answers an organisation's deletion)
        from apps.workers.metrics import worker_states
        from pendra_console.metrics import register_scrape_collector

        register_scrape_collector(worker_states)
