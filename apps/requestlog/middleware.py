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
from typing import Any

from django.http import HttpRequest, HttpResponse

from apps.keys import tokens
from apps.keys.selectors import keys_by_public_id
from apps.requestlog.services import LimitHit, record_request
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
        key_public_id = api_key.public_id if api_key is not None else ""
        if api_key is None and response.status_code == 401:
            # A refused key is still named, with its org and user, so support and the org find the 401.
            key_public_id, api_key = _presented_key(request)
            user_id = api_key.user_id if api_key is not None else None
        org_id = getattr(request, "pendra_org_id", None)
        if org_id is None and api_key is not None:
            org_id = api_key.org_id
        admission = getattr(request, "rate_limit_refusal", None)
        limit_hit = None
        if admission is not None and response.status_code == 429:
            limit_hit = LimitHit(
                bucket=admission.bucket, plan=admission.plan, limit=admission.limit, reset_s=admission.retry_after
            )
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
            key_public_id=key_public_id,
            limit_hit=limit_hit,
            deferred=False,
        )


def _presented_key(request: HttpRequest) -> tuple[str, Any]:
    raw, acceptable = tokens.key_from_headers(request.headers.get("Authorization"), request.headers.get("X-Api-Key"))
    parsed = tokens.parse_key(raw) if acceptable else None
    if parsed is None:
        return "", None
    return parsed.public_id, keys_by_public_id({parsed.public_id}).get(parsed.public_id)
