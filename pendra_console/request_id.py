"""Request ids: accepted from the client when well-formed, minted otherwise.

The id is on every response and every log line of the request, so a customer can
quote it and support staff can find the request. The gateway (``apps.gateway``)
uses the same functions; this module's middleware covers everything Django serves.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Callable
from contextvars import ContextVar

from django.http import HttpRequest, HttpResponse

from pendra_console import tracing
from pendra_console.contract import REQUEST_ID_HEADER

_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{20,200}")

current_request_id: ContextVar[str] = ContextVar("current_request_id", default="-")
access_log = logging.getLogger("pendra.access")


def mint_request_id() -> str:
    return "req_" + secrets.token_hex(12)


def is_request_id(value: str) -> bool:
    """True for what :func:`accept_or_mint` keeps or mints: the only ids a record can carry."""
    return _VALID_REQUEST_ID.fullmatch(value) is not None


REQUEST_ID_SHAPE = "20-200 characters of letters, digits, '.', '_' and '-'"


def accept_or_mint(incoming: str | None) -> str:
    """The client's id if it is 20-200 characters of [A-Za-z0-9._-], else a new one."""
    if incoming and _VALID_REQUEST_ID.fullmatch(incoming):
        return incoming
    return mint_request_id()


def log_access(*, method: str, path: str, status: int, started: float, **extra: object) -> None:
    if not access_log.isEnabledFor(logging.INFO):  # off (PENDRA_LOG_LEVEL above INFO): nothing to build
        return
    duration_ms = round((time.perf_counter() - started) * 1000, 2)
    access_log.info(
        "%s %s %s %.2fms",
        method,
        path,
        status,
        duration_ms,
        extra={"http": {"method": method, "path": path, "status": status, "duration_ms": duration_ms, **extra}},
    )


class RequestIdLogFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id.get()
        if tracing.tracer is not None and not hasattr(record, "trace_id"):
            record.trace_id = tracing.current_trace_id()  # the line leads to the request's trace
        return True


class RequestIdMiddleware:
    """Outermost middleware: sets the id, stamps the response, writes the access line."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        request_id = accept_or_mint(request.headers.get(REQUEST_ID_HEADER))
        request.request_id = request_id  # type: ignore[attr-defined]
        token = current_request_id.set(request_id)
        try:
            response = self.get_response(request)
            response[REQUEST_ID_HEADER] = request_id
            log_access(method=request.method or "-", path=request.path, status=response.status_code, started=started)
            return response
        finally:
            current_request_id.reset(token)
