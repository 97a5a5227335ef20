from django.apps import AppConfig


class KeysConfig(AppConfig):
    name = "apps.keys"
    label = "keys"

    def ready(self) -> None:
        # Registers the OpenAPI description of key authentication with drf-spectacular.
        from apps.keys import schema  # noqa: F401
