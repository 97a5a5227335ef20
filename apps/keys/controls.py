"""Per-key controls: the models a key may call, the addresses it may come from, its own rate.

Every control lives inside the org's: a key's requests or tokens per minute above what
the org's plan allows, or a model the org is not offered, is a 400. Someone who may only
*narrow* a key (a member, on their own key) cannot lift or loosen a control already set,
e.g. one an admin put there: each new value must fit inside the old one. The gateway reads
the controls from its cached principal (apps/keys/authentication.py), never from a table.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from apps.keys.models import ApiKey
from apps.plans.limit_decision import INFERENCE_KINDS, TOKEN_BUCKETS
from apps.plans.selectors import plan_for_org
from apps.workers.selectors import models_offered_to
from pendra_console.api.exceptions import ValidationError

CONTROL_FIELDS = ("allowed_models", "allowed_ips", "rpm_limit", "tpm_limit")
MAX_MODELS = 100
MAX_NETWORKS = 50
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def _clean_models(org_id: int, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(name, str) and name.strip() for name in value):
        raise ValidationError({"allowed_models": "A list of model names (empty: every model of the organisation)."})
    if len(value) > MAX_MODELS:
        raise ValidationError({"allowed_models": f"At most {MAX_MODELS} models."})
    names = sorted({name.strip() for name in value})
    offered = models_offered_to(org_id=org_id)
    unknown = [name for name in names if name not in offered]
    if unknown:
        raise ValidationError(
            {"allowed_models": f"Not offered to this organisation: {', '.join(unknown)}; GET /v1/models lists them."}
        )
    return names


def _clean_networks(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(cidr, str) for cidr in value):
        raise ValidationError({"allowed_ips": "A list of addresses or CIDR ranges, e.g. 203.0.113.0/24."})
    if len(value) > MAX_NETWORKS:
        raise ValidationError({"allowed_ips": f"At most {MAX_NETWORKS} ranges."})
    networks: list[str] = []
    for cidr in value:
        try:
            network = ipaddress.ip_network(cidr.strip(), strict=False)
        except ValueError:
            raise ValidationError({"allowed_ips": f"{cidr[:60]!r} is not an IP address or CIDR range."}) from None
        if str(network) not in networks:
            networks.append(str(network))
    return networks


def _clean_rate(field: str, value: Any, ceiling: int, unit: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError({field: f"A whole number of {unit} per minute, at least 1 (null: the org's limit)."})
    if value > ceiling:
        raise ValidationError({field: f"At most {ceiling} {unit} per minute: the organisation's plan allows no more."})
    return value


def clean_controls(*, org_id: int | None, fields: dict[str, Any]) -> dict[str, Any]:
    """The controls among ``fields``, validated against the org's plan and models, normalised."""
    present = {name: fields[name] for name in CONTROL_FIELDS if name in fields}
    if not present:
        return {}
    if org_id is None:
        raise ValidationError(dict.fromkeys(present, "Only an organisation's key has per-key controls."))
    plan = plan_for_org(org_id)
    cleaned: dict[str, Any] = {}
    if "allowed_models" in present:
        cleaned["allowed_models"] = _clean_models(org_id, present["allowed_models"])
    if "allowed_ips" in present:
        cleaned["allowed_ips"] = _clean_networks(present["allowed_ips"])
    if "rpm_limit" in present:
        ceiling = max(int(getattr(plan, f"{kind}_rpm")) for kind in INFERENCE_KINDS)
        cleaned["rpm_limit"] = _clean_rate("rpm_limit", present["rpm_limit"], ceiling, "requests")
    if "tpm_limit" in present:
        ceiling = max(int(getattr(plan, tpm)) for _, tpm in TOKEN_BUCKETS.values())
        cleaned["tpm_limit"] = _clean_rate("tpm_limit", present["tpm_limit"], ceiling, "tokens")
    return cleaned


def _within(old: list[str], new: list[str]) -> bool:
    old_networks = parse_networks(old)
    return all(
        any(n.version == o.version and n.subnet_of(o) for o in old_networks)  # type: ignore[arg-type]
        for n in parse_networks(new)
    )


def widening(*, key: ApiKey, cleaned: dict[str, Any]) -> dict[str, str]:
    """The controls in ``cleaned`` that would loosen what ``key`` has now (empty: only narrowing)."""
    refused: dict[str, str] = {}
    models = cleaned.get("allowed_models")
    if models is not None and key.allowed_models and (not models or not set(models) <= set(key.allowed_models)):
        refused["allowed_models"] = "You may only remove models from this key's list; an owner or admin may add."
    networks = cleaned.get("allowed_ips")
    if networks is not None and key.allowed_ips and (not networks or not _within(key.allowed_ips, networks)):
        refused["allowed_ips"] = "You may only narrow this key's address ranges; an owner or admin may widen them."
    for field in ("rpm_limit", "tpm_limit"):
        if field in cleaned and getattr(key, field) is not None:
            new = cleaned[field]
            if new is None or new > getattr(key, field):
                refused[field] = "You may only lower this key's limit; an owner or admin may raise or lift it."
    return refused
