"""Console sign-in (django-allauth's, at /accounts/login/), throttled per username and per IP.

Every POST counts (before the password is checked, so parallel guesses cannot all slip
in under the limit): the sixth attempt on one username inside the window is refused
with a 429 page even when its password is right. The counters are django-ratelimit's,
in the shared cache; if the cache is unreachable sign-in fails *closed* (503), because
an unthrottled password form is worse than a console that is briefly unavailable.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from allauth.account.forms import LoginForm
from allauth.account.views import LoginView
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django_ratelimit.core import get_usage
from redis.exceptions import RedisError

from apps.plans.limits import outage
from pendra_console.client_address import request_client_address

# (attempts, seconds) per window.
LOGIN_RATE_PER_USERNAME = (5, 300)
LOGIN_RATE_PER_IP = (20, 300)


def _username(group: str, request: HttpRequest) -> str:
    # As Django compares usernames when it creates them (NFKC), and without case, so that
    # fullwidth "alice" and "ALICE" spend alice's attempts rather than getting five each.
    username = unicodedata.normalize("NFKC", request.POST.get("login", "")).strip().casefold()
    return username[:254]


def _client_address(group: str, request: HttpRequest) -> str:
    return request_client_address(request)


def _throttle_refusal(request: HttpRequest) -> HttpResponse | None:
    """The refusal page when this attempt is over a limit or cannot be counted, else None."""
    retry_after = 0
    try:
        for group, key, rate in (
            ("console.login.username", _username, LOGIN_RATE_PER_USERNAME),
            ("console.login.ip", _client_address, LOGIN_RATE_PER_IP),
        ):
            usage = get_usage(request, group=group, key=key, rate=rate, method="POST", increment=True)
            if usage is None or usage["time_left"] < 0:
                raise OSError("the cache returned no count")
            if usage["should_limit"]:
                retry_after = max(retry_after, usage["time_left"], 1)
    except (RedisError, OSError) as exc:
        outage.failed(exc)
        message = "Sign-in is temporarily unavailable. Please try again in a minute."
        return _login_page(request, status=503, error=message, retry_after=60)
    if retry_after:
        message = f"Too many sign-in attempts. Try again in {retry_after} seconds."
        return _login_page(request, status=429, error=message, retry_after=retry_after)
    return None


def _login_page(request: HttpRequest, *, status: int, error: str, retry_after: int) -> HttpResponse:
    context: dict[str, Any] = {"form": LoginForm(request=request), "throttle_error": error}
    response = render(request, "account/login.html", context, status=status)
    response["Retry-After"] = str(retry_after)
    return response


class ConsoleLoginView(LoginView):
    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # Before allauth's own per-IP limit, which raises (a 500) when the cache is down.
        if request.method == "POST":
            refusal = _throttle_refusal(request)
            if refusal is not None:
                return refusal
        return super().dispatch(request, *args, **kwargs)
