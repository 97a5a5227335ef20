"""A request's price and cost, from the plan snapshot the gateway already holds.

The prices travel in :class:`apps.plans.selectors.PlanLimits` (cached per org like the
limits), so pricing a request reads no table. Money is :class:`~decimal.Decimal` only:
prices have at most 4 places (per million tokens, per unit), so a cost has at most 10 and
``UsageRecord.cost`` holds it exactly; sums of costs are exact too.

Budgets count spend in Redis as integers of :data:`SPEND_UNIT` (10**-10 USD, the cost
column's resolution), per org and per key and calendar month (UTC): :func:`spend_units`,
:func:`period_of`, :func:`spend_key`.
"""

from __future__ import annotations

import fnmatch
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

MILLION = Decimal(1_000_000)
SPEND_UNIT = Decimal("1e-10")
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class PriceRow:
    """One :class:`apps.plans.models.Price`, detached from the ORM."""

    kind: str  # "" for any kind
    model_pattern: str
    input_per_million: Decimal
    output_per_million: Decimal
    per_unit: Decimal

    def matches(self, kind: str, model: str) -> bool:
        return (not self.kind or self.kind == kind) and fnmatch.fnmatchcase(model, self.model_pattern)

    @property
    def specificity(self) -> tuple[int, int, int]:
        """Sort key, most specific first: an exact name, then a longer glob; a kind before any kind."""
        exact = not any(char in self.model_pattern for char in "*?[")
        return (0 if exact else 1, -len(self.model_pattern), 0 if self.kind else 1)


def ordered(rows: list[PriceRow]) -> tuple[PriceRow, ...]:
    """The rows in the order :func:`price_for` tries them."""
    return tuple(sorted(rows, key=lambda row: row.specificity))


def price_for(prices: tuple[PriceRow, ...], *, kind: str, model: str) -> PriceRow | None:
    """The most specific price for ``model`` of ``kind``; None: the plan does not charge for it."""
    for row in prices:
        if row.matches(kind, model):
            return row
    return None


def cost_of(price: PriceRow | None, *, prompt_tokens: int, completion_tokens: int, units: int) -> Decimal:
    """USD for one billed request, exact (at most 10 places)."""
    if price is None:
        return ZERO
    tokens = prompt_tokens * price.input_per_million + completion_tokens * price.output_per_million
    return tokens / MILLION + units * price.per_unit


def spend_units(cost: Decimal) -> int:
    """``cost`` as an integer count of 10**-10 USD (what the Redis counters add)."""
    return int(cost.scaleb(10).to_integral_value())


def usd_of_units(units: int) -> Decimal:
    return Decimal(units).scaleb(-10)


# The current month and the timestamps it spans: "now" is asked for by every admission and
# settle, and a comparison of two floats answers it until the month ends.
_current: tuple[float, float, str] = (0.0, 0.0, "")


def period_of(moment: datetime | None = None) -> str:
    """The budget month holding ``moment`` (now by default), e.g. ``"2026-11"`` (UTC)."""
    global _current
    if moment is None:
        now = time.time()
        start, end, period = _current
        if start <= now < end:
            return period
        moment = datetime.fromtimestamp(now, UTC)
        period = f"{moment.year:04d}-{moment.month:02d}"
        year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
        first = datetime(moment.year, moment.month, 1, tzinfo=UTC).timestamp()
        _current = (first, datetime(year, month, 1, tzinfo=UTC).timestamp(), period)
        return period
    moment = moment.astimezone(UTC)
    return f"{moment.year:04d}-{moment.month:02d}"


def seconds_to_next_period(moment: datetime | None = None) -> int:
    """Seconds until the budget month rolls over (what a budget 429's Retry-After says)."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return max(1, int((datetime(year, month, 1, tzinfo=UTC) - moment).total_seconds()))


# A month's counter lives past the month (40 days), so a late settle still finds it.
SPEND_TTL_SECONDS = 40 * 86_400


def spend_key(subject: str, period: str) -> str:
    """The spend counter of ``org:<id>`` or ``key:<id>`` in ``period``."""
    return f"plans:spend:{subject}:{period}"
