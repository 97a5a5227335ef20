"""One RequestRecord for every admin API request (``/api/v1``).

The admin API is not the hot path, so its record is written in the request's own
thread, through the same :func:`~apps.requestlog.services.record_request` the gateway uses.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from apps.requestlog.services import record_request
from pendra_console.contract import API_PREFIX

logger = logging.getLogger("pendra.requestlog")


def new_request_uid() -> str:
    return secrets.token_hex(16)


class AdminRequestRecordMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(API_PREFIX):
            return self.get_response(request)
        started = time.perf_counter()
        response = self.get_response(request)
        try:
            self._record(request, response, started)
        except Exception:
            # Losing one admin record must never turn a served request into a 500.
            logger.exception("could not record admin API request")
        return response

    def _record(self, request: HttpRequest, response: HttpResponse, started: float) -> None:
        api_key = getattr(request, "api_key", None)
        user = getattr(request, "user", None)
        user_id = user.pk if user is not None and user.is_authenticated else None
        org_id = getattr(request, "pendra_org_id", None)
        if org_id is None and api_key is not None:
            org_id = api_key.org_id
        match = request.resolver_match
        route = "/" + match.route if match is not None else request.path[:200]
        detail = ""
        if response.status_code >= 400 and response.get("Content-Type", "").startswith("application/json"):
            try:
                detail = str(json.loads(response.content).get("detail", ""))
            except (ValueError, AttributeError):
                detail = ""
        record_request(
            uid=new_request_uid(),
            request_id=getattr(request, "request_id", ""),
            org_id=org_id,
            api_key_id=api_key.pk if api_key is not None else None,
            user_id=user_id,
            route=route,
            method=request.method or "",
            status=response.status_code,
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            error=detail,
            deferred=False,
        )
