from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from apps.accounts.selectors import two_factor_setup_required

# Where a user who still has to set up two-factor sign-in may go: the set-up itself, sign-out,
# the rest of their account, static files, and the API and gateway (keys, not sessions).
EXEMPT_PREFIXES = ("/accounts/", "/static/", "/api/", "/v1/", "/healthz", "/readyz")


class TwoFactorRequiredMiddleware:
    """Sends members of an org that requires two-factor sign-in to set it up before anything else."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(EXEMPT_PREFIXES) and two_factor_setup_required(user=request.user):
            messages.warning(request, "Your organisation requires two-factor sign-in. Set it up to continue.")
            return redirect("mfa_activate_totp")
        return self.get_response(request)
