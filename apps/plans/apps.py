from django.apps import AppConfig


class PlansConfig(AppConfig):
    name = "apps.plans"
    label = "plans"

    def ready(self) -> None:
        # Django's idiom: the module that answers the orgs app's signals registers once the apps are loaded.
        from apps.plans import receivers  # noqa: F401
