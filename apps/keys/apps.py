from django.apps import AppConfig


class KeysConfig(AppConfig):
    name = "apps.keys"
    label = "keys"

    def ready(self) -> None:
        # Django's idiom: modules that register themselves are imported once the apps are loaded.
        from apps.keys import (
            receivers,  # noqa: F401  (answers the orgs app's signals)
            schema,  # noqa: F401  (describes key authentication to drf-spectacular)
        )
