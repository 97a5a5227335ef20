"""The one ASGI application: the /v1 gateway in front of Django.

``/v1/...`` is served by ``apps.gateway`` (a lean ASGI app: the hot path skips
Django's request stack, see DESIGN.md); everything else goes to Django.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pendra_console.settings")
django_application = get_asgi_application()

from apps.gateway.app import GatewayApplication  # noqa: E402  (needs Django set up first)
from pendra_console.body_limit import BodyLimit  # noqa: E402

# /v1 bounds its own bodies (PENDRA_MAX_BODY_BYTES); Django's are bounded before it spools them.
application = GatewayApplication(BodyLimit(django_application))
