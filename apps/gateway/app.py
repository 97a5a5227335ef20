"""The ``/v1`` gateway: a lean ASGI application in front of Django, its dispatch and lifespan.

The request path (DESIGN.md): request id → key → limits → route → proxy → record.
This module dispatches (``/v1`` here, everything else to Django unchanged), reads and
validates the request against its route (:mod:`apps.gateway.routes`), authenticates the
key and answers ``/v1/models``. The rest is in its own module:

- :mod:`apps.gateway.metering`: the plan's limits before the request, and after it the
  record (:func:`apps.requestlog.services.record_request`) and the limits settled;
- :mod:`apps.gateway.proxy`: attempts across workers, timeouts, streaming;
- :mod:`apps.gateway.routing`: which worker, from a fleet view cached for a second.

A warm request reads no table: keys, plans and the fleet are cached in this process for
about a second (:mod:`pendra_console.ttl_cache`), or with Redis for as long as their
change epochs say nothing changed (:mod:`pendra_console.epochs`, polled by a task that
requests keep running), and its record goes to a batch writer.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from django.conf import settings

from apps.gateway import metering, metrics, tracing, validation
from apps.gateway.exchange import BodyTooLarge, ClientGone, Exchange
from apps.gateway.parsing import BodyParser
from apps.gateway.proxy import Proxy
from apps.gateway.routes import ROUTES
from apps.gateway.routing import WorkerPool
from apps.keys.authentication import (
    KeyPrincipal,
    UnknownKeyBudgetSpent,
    address_refusal,
    authenticate_key_cached,
    presented_key,
)
from apps.requestlog.recorder import recorder
from apps.requestlog.services import LimitHit
from pendra_console import epochs
from pendra_console import tracing as otel
from pendra_console.aio import run_db
from pendra_console.client_address import scope_client_address
from pendra_console.contract import INVALID_TOKEN
from pendra_console.errors import RETRY_AFTER_OUTAGE, not_found_detail, outage_detail, unavailable_service
from pendra_console.hot_settings import hot
from pendra_console.request_id import current_request_id

logger = logging.getLogger("pendra.gateway")

# Bodies above this are parsed in a thread: a 25 MB JSON body takes a fraction of a
# second to parse, and on the event loop every other request would wait for it.


def model_refusal(model: str, allowed: frozenset[str]) -> str:
    return f'This API key may only call {", ".join(sorted(allowed))} (its allowed_models); not "{model}".'


class GatewayApplication:
    def __init__(self, django_app: Any) -> None:
        self.django_app = django_app
        self.pool = WorkerPool(cooldown_seconds=settings.PENDRA_WORKER_COOLDOWN)
        self.proxy = Proxy(self.pool)
        self.parser = BodyParser()
        otel.configure()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http" and (scope["path"].startswith("/v1/") or scope["path"] == "/v1"):
            await self.handle(scope, receive, send)
        elif kind == "lifespan":
            await self.lifespan(receive, send)
        else:
            await self.django_app(scope, receive, send)

    # --- lifecycle -----------------------------------------------------------

    async def lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.proxy.close()
                await self.pool.close()
                await epochs.watcher.close()
                self.parser.close()
                await run_db(recorder.flush)
                metrics.meter.flush()  # the counts batched since the last quarter second
                otel.shutdown()  # and the spans batched for export
                await send({"type": "lifespan.shutdown.complete"})
                return

    # --- the request path ----------------------------------------------------

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        epochs.watcher.watch()  # keeps this process's cached keys, plans and fleet confirmed
        exchange = Exchange(scope, receive, send, uid=secrets.token_hex(16))
        exchange.on_end = metering.conclude
        token = current_request_id.set(exchange.request_id)
        trace_token = tracing.start(exchange)
        try:
            await self.serve(exchange)
        except ClientGone:
            # 499 as nginx records it: the client closed the connection before the answer ended.
            exchange.client_gone = True
            exchange.error = exchange.error or "client disconnected before the end of the answer"
            exchange.status = 499
        except Exception as exc:
            service = unavailable_service(exc)
            if service is None:
                logger.exception("unhandled error on %s %s", exchange.method, exchange.path)
            else:  # e.g. a key not in this process's memory while PostgreSQL is down
                logger.warning("%s unreachable: %s %s answered 503", service, exchange.method, exchange.path)
            if exchange.response_started:
                exchange.error = "internal error after the response started"
            elif service is not None:
                await exchange.error_response(
                    503,
                    outage_detail(service),
                    code="service_unavailable",
                    headers=[(b"retry-after", RETRY_AFTER_OUTAGE.encode())],
                )
            else:
                await exchange.error_response(500)
        finally:
            await metering.finish(exchange)
            tracing.finish(exchange, trace_token)
            current_request_id.reset(token)

    async def serve(self, exchange: Exchange) -> None:
        path = exchange.path.rstrip("/") if exchange.path != "/" else exchange.path
        if path == "/v1/models" or path.startswith("/v1/models/"):
            if exchange.method not in {"GET", "HEAD"}:
                return await exchange.error_response(405, headers=[(b"allow", b"GET")])
            principal = await self.authenticate(exchange)
            if principal is not None:
                await self.models(exchange, principal, path)
            return
        route = ROUTES.get(path)
        if route is None:
            return await exchange.error_response(404, not_found_detail(exchange.path))
        exchange.route = route
        if exchange.method != "POST":
            return await exchange.error_response(405, f"Use POST for {route.path}.", headers=[(b"allow", b"POST")])
        principal = await self.authenticate(exchange)
        if principal is None:
            return
        org_id = principal.org_id
        if org_id is None:  # authenticate() has answered 403 for a platform key already
            return
        # From here a refusal counts against the org's bucket for the route: bad bodies are not free.
        try:
            body = await exchange.read_body(hot.PENDRA_MAX_BODY_BYTES)
        except BodyTooLarge:
            if await metering.count_refused(exchange, org_id=org_id, route=route):
                await exchange.error_response(413, f"The request body exceeds {hot.PENDRA_MAX_BODY_BYTES} bytes.")
            return
        content_type = exchange.header(b"content-type") or ""
        try:
            valid = await self.parser.parse(route.validate, body, content_type)
        except validation.InvalidRequest as exc:
            if await metering.count_refused(exchange, org_id=org_id, route=route):
                await exchange.invalid(exc)
            return
        exchange.model = valid.model
        exchange.units = valid.units

        fleet = await self.pool.fleet()
        known_kind = fleet.kind_of(valid.model, org_id)
        refusal = None
        if known_kind is None:
            refusal = validation.InvalidRequest(
                f'Unknown model "{valid.model}": GET /v1/models lists the models available.', "model"
            )
        elif known_kind != route.model_kind:
            refusal = validation.InvalidRequest(
                f'Model "{valid.model}" is a {known_kind} model; it cannot serve {route.path}.', "model"
            )
        if refusal is not None:
            if await metering.count_refused(exchange, org_id=org_id, route=route):
                await exchange.invalid(refusal)
            return
        if principal.models is not None and valid.model not in principal.models:
            if await metering.count_refused(exchange, org_id=org_id, route=route):
                await exchange.error_response(
                    403, model_refusal(valid.model, principal.models), code="model_not_allowed"
                )
            return
        if await metering.admit(exchange, org_id=org_id, route=route, valid=valid):
            await self.proxy.forward(exchange, route, valid, body, fleet, principal)

    async def authenticate(self, exchange: Exchange) -> KeyPrincipal | None:
        authorization, x_api_key = exchange.header(b"authorization"), exchange.header(b"x-api-key")
        address = scope_client_address(exchange.scope)
        try:
            principal = await authenticate_key_cached(
                authorization, x_api_key, address=address, on_used=recorder.touch_key
            )
        except UnknownKeyBudgetSpent as refusal:
            exchange.key_public_id, exchange.refused_principal = presented_key(authorization, x_api_key)
            exchange.limit_hit = LimitHit(
                bucket="unknown keys",
                plan="",
                limit=f"{settings.PENDRA_UNKNOWN_KEY_BUDGET} unknown keys/minute from one address",
                reset_s=refusal.retry_after,
            )
            await exchange.error_response(
                429,
                str(refusal),
                code="rate_limit_exceeded",
                headers=[(b"retry-after", str(refusal.retry_after).encode())],
            )
            return None
        if principal is None:
            # Only on this path does the key get parsed a second time (no query): the record names it.
            exchange.key_public_id, exchange.refused_principal = presented_key(authorization, x_api_key)
            await exchange.error_response(401, INVALID_TOKEN, code="invalid_api_key")
            return None
        exchange.principal = principal
        exchange.key_public_id = principal.public_id
        if principal.org_id is None:
            await exchange.error_response(
                403, "This key belongs to platform staff and no organisation; inference needs an organisation's key."
            )
            return None
        if principal.networks and not principal.admits_address(address):
            await exchange.error_response(403, address_refusal(address), code="address_not_allowed")
            return None
        return principal

    async def models(self, exchange: Exchange, principal: KeyPrincipal, path: str) -> None:
        fleet = await self.pool.fleet()
        available = self.pool.models_for(fleet, principal.org_id or 0)
        if principal.models is not None:  # a key limited to some models sees only those
            available = {name: kind for name, kind in available.items() if name in principal.models}
        entries = [
            {"id": name, "object": "model", "created": 0, "owned_by": "pendra", "kind": kind}
            for name, kind in sorted(available.items())
        ]
        if path == "/v1/models":
            return await exchange.respond_json(200, {"object": "list", "data": entries})
        wanted = path.removeprefix("/v1/models/")
        for entry in entries:
            if entry["id"] == wanted:
                return await exchange.respond_json(200, entry)
        await exchange.error_response(404, f'Model "{wanted}" not found: GET /v1/models lists the models available.')
