"""The admin API's ``api`` bucket, as a DRF throttle (``REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"]``).

A refusal raises :class:`apps.plans.limits.RateLimitExceeded` rather than returning
False, so the 429 carries the bucket, limit, plan and reset (DRF's own ``Throttled``
would say none of that); ``pendra_console.errors`` maps it to the JSON contract.
"""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from apps.orgs.credentials import org_credential
from apps.plans.limits import RateLimitExceeded, admit_api


class ApiRateThrottle(BaseThrottle):
    def allow_request(self, request: Request, view: Any) -> bool:
        if not request.user or not request.user.is_authenticated:
            return True  # unauthenticated requests are refused with 401 before they are counted
        credential = org_credential(request)  # a key counts against its org's plan; a session, the default plan's
        org_id = credential.org_id if credential is not None else None
        admission = admit_api(org_id=org_id, user_id=request.user.pk)
        if not admission.allowed:
            request._request.rate_limit_refusal = admission  # type: ignore[attr-defined]  # the request record names it
            raise RateLimitExceeded(admission)
        return True
