"""The ``name:kind,...`` spelling of a worker's models, as operators type it on a command line."""

from __future__ import annotations


def parse_models(spec: str) -> dict[str, str]:
    """``"a:chat,b:embeddings"`` -> ``{"a": "chat", "b": "embeddings"}`` (a name without kind is chat)."""
    models: dict[str, str] = {}
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        name, _, kind = item.partition(":")
        models[name.strip()] = kind.strip() or "chat"
    return models
