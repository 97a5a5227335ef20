"""The one ASGI application: the /v1 gateway in front of Django.

``/v1/...`` is served by ``apps.gateway`` (a lean ASGI app: the hot path skips
Django's request stack, see DESIGN.md); everything else goes to Django.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pendra_console.settings")
django_application = get_asgi_application()

from apps.gateway.app import GatewayApplication  # noqa: E402  (needs Django set up first)

application = GatewayApplication(django_application)
