"""The plan catalogue Pendra starts with. Operators edit it afterwards through the API.

Each step up multiplies the limits by roughly ten; ``None`` caps are unlimited.
"""

from __future__ import annotations

from typing import Any

DEFAULT_PLAN = "free"

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
    },
]


def ensure_catalogue(plan_model: Any) -> None:
    """Create the catalogue's plans that do not exist yet; never overwrite an operator's edits."""
    for entry in CATALOGUE:
        plan_model.objects.get_or_create(slug=entry["slug"], defaults={k: v for k, v in entry.items() if k != "slug"})
