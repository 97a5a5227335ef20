"""Reads of the plan catalogue and of an organisation's plan.

:func:`plan_for_org` is on the hot path of every rate-limited request, so its answer
is kept in process memory for at most ``PENDRA_PLAN_CACHE_SECONDS`` (default 1 s). A plan change or a
catalogue edit evicts it at once in the process that made it; other processes see it
within that second ("a plan change applies to the next request"). The cache is
:class:`pendra_console.ttl_cache.TTLCache`: the gateway's requests that find an entry
expired share one load (:func:`plan_for_org_async`).

The cached :class:`PlanLimits` is the org's whole snapshot for the gateway: the plan's
limits with the subscription's per-org overrides over them, the plan's prices, and the
hard budgets of the org and its keys. Every change to one of those evicts it
(:func:`apps.plans.services.evict_on_commit`), so the warm path reads no table. It also
announces the change (:mod:`pendra_console.epochs`): with Redis, a snapshot lives up to
``PENDRA_WATCHED_CACHE_SECONDS`` while the plans' epoch confirms nothing changed, and
other processes still drop it within ``PENDRA_PLAN_CACHE_SECONDS`` of a change.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from apps.plans.catalogue import DEFAULT_PLAN, ensure_catalogue
from apps.plans.models import Budget, Plan, Price, Subscription
from apps.plans.pricing import PriceRow, ordered, spend_units
from pendra_console import epochs
from pendra_console.hot_settings import hot
from pendra_console.ttl_cache import TTLCache

# Every limit a plan carries, in the order the API shows them.
LIMIT_FIELDS: tuple[str, ...] = (
    "chat_rpm",
    "embeddings_rpm",
    "images_rpm",
    "audio_rpm",
    "api_rpm",
    "chat_tpm",
    "embeddings_tpm",
    "concurrent_streams",
    "max_keys",
    "max_members",
)


@dataclass(frozen=True, slots=True)
class PlanLimits:
    """A plan's limits, detached from the ORM so any thread may keep it."""

    slug: str
    name: str
    chat_rpm: int
    embeddings_rpm: int
    images_rpm: int
    audio_rpm: int
    api_rpm: int
    chat_tpm: int
    embeddings_tpm: int
    concurrent_streams: int
    max_keys: int | None
    max_members: int | None
    dedicated: bool = False
    # The plan's prices, most specific first (apps/plans/pricing.py).
    prices: tuple[PriceRow, ...] = ()
    # Hard monthly budgets in spend units (10**-10 USD): the org's, and its keys' by key id.
    # Soft budgets only alert, off the request path, so the gateway does not carry them.
    org_budget: int | None = None
    key_budgets: Mapping[int, int] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def of(
        cls,
        plan: Plan,
        overrides: Mapping[str, Any] | None = None,
        *,
        prices: tuple[PriceRow, ...] = (),
        org_budget: int | None = None,
        key_budgets: Mapping[int, int] | None = None,
    ) -> PlanLimits:
        limits = {name: getattr(plan, name) for name in LIMIT_FIELDS}
        limits |= {name: value for name, value in (overrides or {}).items() if name in LIMIT_FIELDS}
        return cls(
            slug=plan.slug,
            name=plan.name,
            dedicated=plan.dedicated,
            prices=prices,
            org_budget=org_budget,
            key_budgets=MappingProxyType(dict(key_budgets or {})),
            **limits,
        )


# org id -> its plan's limits; 0 holds the default plan (org ids start at 1).
plan_cache: TTLCache[int, PlanLimits] = TTLCache(lambda: hot.PENDRA_PLAN_CACHE_SECONDS, watch=epochs.PLANS)


def default_plan() -> Plan:
    """The plan new organisations start on; re-seeded if the table was emptied (tests flush it)."""
    plan = Plan.objects.filter(slug=DEFAULT_PLAN).first()
    if plan is None:
        ensure_catalogue(Plan, Price)
        plan = Plan.objects.get(slug=DEFAULT_PLAN)
    return plan


def subscription_for_org(org_id: int) -> Subscription:
    """The org's subscription, created on the default plan the first time it is asked for."""
    subscription = Subscription.objects.select_related("plan").filter(org_id=org_id).first()
    if subscription is not None:
        return subscription
    plan = default_plan()
    try:
        with transaction.atomic():
            subscription, _ = Subscription.objects.select_related("plan").get_or_create(
                org_id=org_id, defaults={"plan": plan, "since": timezone.now()}
            )
    except IntegrityError:
        # Another process created it between our read and our insert.
        subscription = Subscription.objects.select_related("plan").get(org_id=org_id)
    return subscription


def price_rows(plan: Plan) -> tuple[PriceRow, ...]:
    rows = Price.objects.filter(plan=plan).values_list(
        "kind", "model_pattern", "input_per_million", "output_per_million", "per_unit"
    )
    return ordered([PriceRow(*row) for row in rows])


def load_plan_limits(org_id: int) -> PlanLimits:
    """The org's limits, prices and hard budgets read from the database now (the cache's loader)."""
    subscription = subscription_for_org(org_id)
    org_budget: int | None = None
    key_budgets: dict[int, int] = {}
    for key_id, monthly in Budget.objects.filter(org_id=org_id, hard=True).values_list("api_key_id", "monthly_usd"):
        if key_id is None:
            org_budget = spend_units(monthly)
        else:
            key_budgets[key_id] = spend_units(monthly)
    return PlanLimits.of(
        subscription.plan,
        subscription.overrides,
        prices=price_rows(subscription.plan),
        org_budget=org_budget,
        key_budgets=key_budgets,
    )


def plan_for_org(org_id: int) -> PlanLimits:
    return plan_cache.get(org_id, functools.partial(load_plan_limits, org_id))


async def plan_for_org_async(org_id: int) -> PlanLimits:
    """:func:`plan_for_org` from an event loop: no await when warm, one shared load when expired."""
    return await plan_cache.aget(org_id, functools.partial(load_plan_limits, org_id))


# Org ids start at 1, so 0 can hold the default plan in the same short-lived cache.
_DEFAULT_PLAN_ENTRY = 0


def default_plan_limits() -> PlanLimits:
    """Limits for a caller acting outside any organisation (a console session on the admin API)."""
    return plan_cache.get(_DEFAULT_PLAN_ENTRY, _load_default_plan_limits)


def _load_default_plan_limits() -> PlanLimits:
    plan = default_plan()
    return PlanLimits.of(plan, prices=price_rows(plan))


def plan_list(*, include_private: bool) -> QuerySet[Plan]:
    """The catalogue; private plans (custom deals) only for operators."""
    plans = Plan.objects.all()
    return plans if include_private else plans.filter(is_public=True)


def plan_by_slug(slug: str, *, include_private: bool) -> Plan | None:
    return plan_list(include_private=include_private).filter(slug=slug).first()


def prices_of(plan: Plan) -> QuerySet[Price]:
    return Price.objects.filter(plan=plan)


def budgets_of_org(org_id: int) -> QuerySet[Budget]:
    """The org's budget (``api_key`` null) and its keys' budgets."""
    return Budget.objects.filter(org_id=org_id).select_related("api_key")


def effective_limits(subscription: Subscription) -> dict[str, Any]:
    """What the org may use: the plan's limits with the subscription's overrides over them."""
    overrides = subscription.overrides or {}
    return {name: overrides.get(name, getattr(subscription.plan, name)) for name in LIMIT_FIELDS}
