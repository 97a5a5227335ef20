"""The error contract, in one place.

Every error under ``/api/v1/`` and ``/v1/`` is JSON ``{"detail": ..., "request_id": ...}``;
under ``/v1/`` the body also carries an OpenAI-shaped ``error`` object so OpenAI SDKs
show the message. DRF views, plain views, the 404/500 handlers, Django's own
non-JSON error responses (405, CSRF, request too large) and the ``/v1`` gateway all
build their bodies with :func:`error_body`. The plain domain exceptions that services
raise (:mod:`pendra_console.api.exceptions`) get their status codes here, once.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from django.db import InterfaceError as DatabaseInterfaceError
from django.db import OperationalError as DatabaseOperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import Resolver404, resolve
from django_ratelimit.exceptions import Ratelimited  # type: ignore[import-untyped]
from kombu.exceptions import OperationalError as BrokerOperationalError
from redis.exceptions import RedisError
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_default_handler

from pendra_console.api import exceptions as domain
from pendra_console.contract import API_PREFIX, INFERENCE_PREFIX, INFERENCE_ROUTES, INVALID_TOKEN
from pendra_console.request_id import current_request_id

logger = logging.getLogger("pendra.errors")


_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    410: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    504: "timeout_error",
}
_DEFAULT_DETAILS = {
    400: "Bad request.",
    401: INVALID_TOKEN,
    403: "You do not have permission to perform this action.",
    404: "Not found.",
    405: "Method not allowed.",
    413: "Request body too large.",
    415: "Unsupported media type.",
    429: "Rate limit exceeded.",
    500: "Sorry, something went wrong on our side. Quote the request id to support.",
    502: "The GPU worker failed; retrying picks a different worker.",
    503: "Service unavailable; retry shortly.",
    504: "The request timed out.",
}


# The status code of each plain domain exception (the most specific class wins).
DOMAIN_STATUS: dict[type[domain.DomainError], int] = {
    domain.ValidationError: 400,
    domain.PermissionDenied: 403,
    domain.NotFound: 404,
    domain.Conflict: 409,
    domain.Gone: 410,
}


# An outage of a backing service is a 503 ("retry shortly"), never a 500 (a bug of ours).
# What fails closed this way: any page or API call that needs the service, including the
# console forms django-allauth throttles in the cache (sign-up, password reset, ...).
RETRY_AFTER_OUTAGE = "5"


def unavailable_service(exc: BaseException | None) -> str | None:
    """``"database"`` or ``"cache"`` when ``exc`` says that service is unreachable, else None."""
    if isinstance(exc, (DatabaseOperationalError, DatabaseInterfaceError)):
        return "database"
    if isinstance(exc, (RedisError, BrokerOperationalError)):
        return "cache"
    return None


def outage_detail(service: str) -> str:
    return f"Service unavailable: the {service} cannot be reached right now; retry shortly."


def domain_status(exc: domain.DomainError) -> int:
    for cls in type(exc).__mro__:
        if cls in DOMAIN_STATUS:
            return DOMAIN_STATUS[cls]
    return 400


def is_api_path(path: str) -> bool:
    return path.startswith(API_PREFIX) or path.startswith(INFERENCE_PREFIX) or path in {"/api/v1", "/v1"}


def is_inference_path(path: str) -> bool:
    return path.startswith(INFERENCE_PREFIX) or path == "/v1"


def default_detail(status: int) -> str:
    return _DEFAULT_DETAILS.get(status, "Request failed.")


def openai_error_type(status: int) -> str:
    return _OPENAI_TYPES.get(status, "api_error")


def error_body(
    status: int,
    detail: str,
    *,
    path: str,
    request_id: str | None = None,
    code: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"detail": detail, "request_id": request_id or current_request_id.get()}
    if extra:
        body.update(extra)
    if is_inference_path(path):
        body["error"] = {"message": detail, "type": openai_error_type(status), "code": code, "param": None}
    return body


def error_response(
    request: HttpRequest,
    status: int,
    detail: str | None = None,
    *,
    code: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JsonResponse:
    body = error_body(
        status,
        detail or default_detail(status),
        path=request.path,
        request_id=getattr(request, "request_id", None),
        code=code,
        extra=extra,
    )
    response = JsonResponse(body, status=status, headers=headers)
    if status == 401:
        response["WWW-Authenticate"] = "Bearer"
    return response


def not_found_detail(path: str) -> str:
    """Say what was not found, and which prefix to use when the other one has it."""
    shown = path if len(path) <= 200 else path[:200] + "..."
    if path.startswith(API_PREFIX):
        rest = path[len(API_PREFIX) :].strip("/")
        if rest in INFERENCE_ROUTES or rest.startswith("models/"):
            return f"No admin route {shown}. Inference routes live under /v1/: use /v1/{rest}"
    elif path.startswith(INFERENCE_PREFIX):
        rest = path[len(INFERENCE_PREFIX) :]
        try:
            resolve(API_PREFIX + rest)
        except Resolver404:
            pass
        else:
            return f"No inference route {shown}. Admin routes live under /api/v1/: use /api/v1/{rest}"
    return f"Not found: {shown}"


def _rate_limited_response(request: HttpRequest, exc: Exception) -> HttpResponse:
    # Ratelimited carries no details of its own; the plans app raises a subclass that does.
    detail = str(exc) or default_detail(429)
    headers = dict(getattr(exc, "headers", None) or {})
    return error_response(request, 429, detail, code="rate_limit_exceeded", headers=headers)


def _flatten_validation(detail: Any, prefix: str = "") -> list[str]:
    if isinstance(detail, dict):
        out: list[str] = []
        for field, value in detail.items():
            name = field if field != "non_field_errors" else ""
            out += _flatten_validation(value, f"{prefix}.{name}" if prefix and name else (name or prefix))
        return out
    if isinstance(detail, list):
        out = []
        for item in detail:
            out += _flatten_validation(item, prefix)
        return out
    return [f"{prefix}: {detail}" if prefix else str(detail)]


def drf_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    request = context["request"]
    path = request.path
    if isinstance(exc, domain.ValidationError):
        exc = drf_exceptions.ValidationError(exc.detail)  # the same body as a serializer's errors
    elif isinstance(exc, domain.DomainError):
        status = domain_status(exc)
        return Response(error_body(status, str(exc.detail), path=path), status=status)
    if isinstance(exc, Ratelimited):
        django_response = _rate_limited_response(request, exc)
        return Response(json.loads(django_response.content), status=429, headers=dict(django_response.items()))
    if isinstance(exc, drf_exceptions.ValidationError):
        messages = _flatten_validation(exc.detail)
        body = error_body(400, "; ".join(messages) or "Invalid input.", path=path, extra={"errors": exc.detail})
        return Response(body, status=400)
    if isinstance(exc, (drf_exceptions.NotAuthenticated, drf_exceptions.AuthenticationFailed)):
        return Response(error_body(401, INVALID_TOKEN, path=path), status=401, headers={"WWW-Authenticate": "Bearer"})
    if isinstance(exc, drf_exceptions.ParseError):
        return Response(error_body(400, f"Malformed JSON: {exc.detail}", path=path), status=400)

    service = unavailable_service(exc)
    if service is not None:
        logger.warning("%s unreachable: %s %s answered 503", service, request.method, path)
        body = error_body(503, outage_detail(service), path=path, code="service_unavailable")
        return Response(body, status=503, headers={"Retry-After": RETRY_AFTER_OUTAGE})
    response = drf_default_handler(exc, context)
    if response is None:
        # Unexpected: log with the traceback, answer with the apology and nothing else.
        logger.exception("Unhandled error in %s %s", request.method, path)
        return Response(error_body(500, default_detail(500), path=path), status=500)
    detail = response.data.get("detail") if isinstance(response.data, dict) else None
    if response.status_code == 404 and (
        detail is None or str(detail) in {"Not found.", "No Organisation matches the given query."}
    ):
        detail = "Not found."
    response.data = error_body(response.status_code, str(detail or default_detail(response.status_code)), path=path)
    return response


class ErrorContractMiddleware:
    """Turns whatever Django answers with under the API prefixes into the JSON contract.

    Catches what DRF's handler never sees: Django's 404 (also its DEBUG page), 405 from
    plain views, CSRF failures, oversized bodies, and exceptions raised by any view, for
    which no traceback ever reaches the client, whatever DEBUG says.
    """

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response: HttpResponse = self.get_response(request)
        if response.status_code < 400 or not is_api_path(request.path):
            return response
        if response.get("Content-Type", "").startswith("application/json"):
            return response
        status = response.status_code
        detail = not_found_detail(request.path) if status == 404 else default_detail(status)
        replacement = error_response(request, status, detail)
        for header in ("Allow", "Retry-After"):
            if header in response:
                replacement[header] = response[header]
        return replacement

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
        from django.http import Http404

        if isinstance(exception, Ratelimited):
            return _rate_limited_response(request, exception) if is_api_path(request.path) else None
        if isinstance(exception, domain.DomainError) and is_api_path(request.path):
            detail = exception.detail
            if isinstance(detail, dict):
                return error_response(request, 400, "; ".join(_flatten_validation(detail)), extra={"errors": detail})
            return error_response(request, domain_status(exception), str(detail))
        if isinstance(exception, (Http404, PermissionDenied)):
            return None  # Django's handlers answer these; __call__ shapes them.
        if isinstance(exception, RequestDataTooBig):
            return error_response(request, 413) if is_api_path(request.path) else None
        if isinstance(exception, SuspiciousOperation):
            return None
        if unavailable_service(exception) is None:
            logger.exception("Unhandled error in %s %s", request.method, request.path)
        return server_error(request)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    detail = "CSRF verification failed: send the csrftoken cookie's value in X-CSRFToken."
    if is_api_path(request.path):
        return error_response(request, 403, detail)
    return render(request, "403_csrf.html", {"reason": detail}, status=403)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if is_api_path(request.path):
        return error_response(request, 400)
    return render(request, "400.html", status=400)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if is_api_path(request.path):
        return error_response(request, 403, str(exception) if exception and str(exception) else None)
    # The page names the role required, as the API's detail does.
    return render(request, "403.html", {"exception": str(exception or "")}, status=403)


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if is_api_path(request.path):
        return error_response(request, 404, not_found_detail(request.path))
    return render(request, "404.html", {"path": request.path}, status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    # Django calls this while handling the exception, so it is still at hand.
    service = unavailable_service(sys.exc_info()[1])
    if service is not None:
        return service_unavailable(request, service)
    if is_api_path(request.path):
        return error_response(request, 500)
    try:
        return render(request, "500.html", {"request_id": current_request_id.get()}, status=500)
    except Exception:  # the template itself may be what failed
        return HttpResponse(
            "Server error. Request id: " + current_request_id.get(), status=500, content_type="text/plain"
        )


def service_unavailable(request: HttpRequest, service: str) -> HttpResponse:
    logger.warning("%s unreachable: %s %s answered 503", service, request.method, request.path)
    detail = outage_detail(service)
    if is_api_path(request.path):
        return error_response(
            request, 503, detail, code="service_unavailable", headers={"Retry-After": RETRY_AFTER_OUTAGE}
        )
    try:
        response = render(request, "503.html", {"request_id": current_request_id.get(), "detail": detail}, status=503)
    except Exception:  # the page's own layout may need what is down
        response = HttpResponse(
            f"{detail} Request id: {current_request_id.get()}", status=503, content_type="text/plain"
        )
    response["Retry-After"] = RETRY_AFTER_OUTAGE
    return response
