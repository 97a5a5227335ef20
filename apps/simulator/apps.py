from django.apps import AppConfig


class SimulatorConfig(AppConfig):
    """Development only: the simulated GPU worker and its ``simulate_worker`` command; no models."""

    name = "apps.simulator"
    label = "simulator"
