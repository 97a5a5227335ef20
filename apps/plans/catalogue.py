"""The plan catalogue Pendra starts with. Operators edit it afterwards through the API.

A new org starts on ``team``: production limits for one team (README, "Plans"), not a
trial. ``free`` stays as the small trial tier; ``enterprise`` and ``dedicated`` are set by
an operator (not self-serve). ``None`` caps are unlimited.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

DEFAULT_PLAN = "team"

CATALOGUE: list[dict[str, Any]] = [
    {
        "slug": "free",
        "name": "Free",
        "monthly_price_cents": 0,
        "sort_order": 10,
        "chat_rpm": 60,
        "embeddings_rpm": 60,
        "images_rpm": 5,
        "audio_rpm": 10,
        "api_rpm": 120,
        "chat_tpm": 40_000,
        "embeddings_tpm": 100_000,
        "concurrent_streams": 2,
        "max_keys": 5,
        "max_members": 3,
    },
    {
        # The default: ~25 chat requests/s with 64 streams open at once, 1M tokens/minute
        # (25 requests/s of ~650 tokens), from up to 100 keys and 50 members.
        "slug": "team",
        "name": "Team",
        "monthly_price_cents": 0,
        "sort_order": 15,
        "chat_rpm": 1_500,
        "embeddings_rpm": 3_000,
        "images_rpm": 100,
        "audio_rpm": 200,
        "api_rpm": 1_200,
        "chat_tpm": 1_000_000,
        "embeddings_tpm": 3_000_000,
        "concurrent_streams": 64,
        "max_keys": 100,
        "max_members": 50,
    },
    {
        "slug": "pro",
        "name": "Pro",
        "monthly_price_cents": 4_900,
        "sort_order": 20,
        "chat_rpm": 600,
        "embeddings_rpm": 600,
        "images_rpm": 50,
        "audio_rpm": 100,
        "api_rpm": 600,
        "chat_tpm": 400_000,
        "embeddings_tpm": 1_000_000,
        "concurrent_streams": 20,
        "max_keys": 50,
        "max_members": 20,
    },
    {
        "slug": "scale",
        "name": "Scale",
        "monthly_price_cents": 49_900,
        "sort_order": 30,
        "chat_rpm": 3_000,
        "embeddings_rpm": 3_000,
        "images_rpm": 300,
        "audio_rpm": 500,
        "api_rpm": 3_000,
        "chat_tpm": 2_000_000,
        "embeddings_tpm": 5_000_000,
        "concurrent_streams": 100,
        "max_keys": 200,
        "max_members": 100,
    },
    {
        "slug": "enterprise",
        "name": "Enterprise",
        "monthly_price_cents": 499_900,
        "sort_order": 40,
        "chat_rpm": 20_000,
        "embeddings_rpm": 20_000,
        "images_rpm": 2_000,
        "audio_rpm": 3_000,
        "api_rpm": 10_000,
        "chat_tpm": 20_000_000,
        "embeddings_tpm": 50_000_000,
        "concurrent_streams": 1_000,
        "max_keys": None,
        "max_members": None,
        "self_serve": False,
    },
    {
        # Set by an operator for one org, with per-org overrides and dedicated workers.
        "slug": "dedicated",
        "name": "Dedicated",
        "monthly_price_cents": 0,
        "sort_order": 50,
        "is_public": False,
        "self_serve": False,
        "dedicated": True,
        "chat_rpm": 20_000,
        "embeddings_rpm": 20_000,
        "images_rpm": 2_000,
        "audio_rpm": 3_000,
        "api_rpm": 10_000,
        "chat_tpm": 20_000_000,
        "embeddings_tpm": 50_000_000,
        "concurrent_streams": 1_000,
        "max_keys": None,
        "max_members": None,
    },
]

# Every plan's starting prices (USD per million tokens, per image, per audio request);
# the most specific row wins (apps/plans/pricing.py), "*" of a kind covers its every model.
DEFAULT_PRICES: list[dict[str, Any]] = [
    {"kind": "chat", "model_pattern": "*", "input_per_million": Decimal("0.50"), "output_per_million": Decimal("1.50")},
    {"kind": "embeddings", "model_pattern": "*", "input_per_million": Decimal("0.10")},
    {"kind": "images", "model_pattern": "*", "per_unit": Decimal("0.02")},
    {"kind": "audio", "model_pattern": "*", "input_per_million": Decimal("0.50"), "per_unit": Decimal("0.006")},
]


def ensure_catalogue(plan_model: Any, price_model: Any = None) -> None:
    """Create the catalogue's plans (and their default prices) that do not exist yet; never
    overwrite an operator's edits. Takes the models as arguments so a migration can pass its
    historical ones: fields the model does not have yet are left out."""
    fields = {field.name for field in plan_model._meta.get_fields()}
    for entry in CATALOGUE:
        defaults = {k: v for k, v in entry.items() if k != "slug" and k in fields}
        plan, _ = plan_model.objects.get_or_create(slug=entry["slug"], defaults=defaults)
        if price_model is not None and not price_model.objects.filter(plan=plan).exists():
            price_model.objects.bulk_create(price_model(plan=plan, **price) for price in DEFAULT_PRICES)
