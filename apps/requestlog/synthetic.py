"""Realistic bulk request history, for benchmarks and for trying the console on a full database.

The rows go through the same path as the gateway's: :func:`record_request` builds and
cleans them and :func:`write_records` writes them in batches (COPY on PostgreSQL), so
whatever the writer maintains beside the raw rows (the usage roll-up) is maintained here
too. The shape follows what a fleet sees: a few organisations send most of the traffic,
most requests succeed, and every kind of failure the explanations name appears.
"""

from __future__ import annotations

import random
import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from apps.keys.models import ApiKey
from apps.keys.services import api_key_create
from apps.orgs.models import Organisation, Role
from apps.orgs.services import membership_add, org_create
from apps.plans.pricing import PriceRow, cost_of, price_for
from apps.plans.selectors import plan_for_org
from apps.requestlog.services import LimitHit, RecordRows, TimeoutHit, TokenUsage, record_request
from apps.requestlog.writer import write_records
from apps.workers.models import ModelKind, Worker, WorkerState

SLUG_PREFIX = "synthetic-"
WORKER_PREFIX = "synthetic-gpu-"
MEMBERS_PER_ORG = 3  # an owner, an admin and a member, each with one key
KEYS_PER_MEMBER = 1

# (model, kind, share of traffic)
MODELS = [
    ("llama-3.1-8b-instruct", ModelKind.CHAT, 0.45),
    ("llama-3.1-70b-instruct", ModelKind.CHAT, 0.2),
    ("mistral-7b-instruct", ModelKind.CHAT, 0.1),
    ("bge-large-en", ModelKind.EMBEDDINGS, 0.17),
    ("sdxl-turbo", ModelKind.IMAGE, 0.04),
    ("whisper-large-v3", ModelKind.AUDIO, 0.04),
]
# The usage kind a plan prices by (the gateway's route kind) for each kind of model.
PRICED_AS = {
    ModelKind.CHAT: "chat",
    ModelKind.EMBEDDINGS: "embeddings",
    ModelKind.IMAGE: "images",
    ModelKind.AUDIO: "audio",
}
ROUTES = {
    ModelKind.CHAT: "/v1/chat/completions",
    ModelKind.EMBEDDINGS: "/v1/embeddings",
    ModelKind.IMAGE: "/v1/images/generations",
    ModelKind.AUDIO: "/v1/audio/transcriptions",
}
# (outcome, share): the rest of the traffic succeeds.
OUTCOMES = [("429", 0.03), ("401", 0.008), ("400", 0.006), ("404", 0.003), ("502", 0.006), ("504", 0.003)]


@dataclass(frozen=True)
class Tenant:
    org_id: int
    plan_name: str
    prices: tuple[PriceRow, ...]
    # (key id, key public id, user id)
    keys: list[tuple[int, str, int]]


def ensure_fleet(*, workers: int) -> list[Worker]:
    """Synthetic workers, created disabled: records name them, and the gateway must never route to them."""
    fleet = []
    for number in range(1, workers + 1):
        worker, _ = Worker.objects.get_or_create(
            name=f"{WORKER_PREFIX}{number:02d}",
            defaults={
                "base_url": f"http://gpu-{number:02d}.synthetic.invalid:8000",
                "served_models": [{"name": name, "kind": kind} for name, kind, _ in MODELS],
                "state": WorkerState.DISABLED,
            },
        )
        fleet.append(worker)
    return fleet


@transaction.atomic
def ensure_tenants(*, orgs: int) -> list[Tenant]:
    """``orgs`` synthetic organisations (reused when they exist), each with an owner, an admin and a member."""
    user_model = get_user_model()
    tenants = []
    for number in range(1, orgs + 1):
        slug = f"{SLUG_PREFIX}{number:03d}"
        org = Organisation.objects.filter(slug=slug).first()
        if org is None:
            people = [
                user_model.objects.create_user(username=f"{role}@{slug}.invalid", email=f"{role}@{slug}.invalid")
                for role in ("owner", "admin", "member")
            ]
            org = org_create(name=f"Synthetic {number:03d}", slug=slug, owner=people[0])
            membership_add(org=org, user=people[1], role=Role.ADMIN, actor=people[0])
            membership_add(org=org, user=people[2], role=Role.MEMBER, actor=people[0])
            for person in people:
                api_key_create(org=org, user=person, actor=person, name=f"synthetic {person.username}")
        keys = [(key.pk, key.public_id, key.user_id) for key in ApiKey.objects.filter(org=org).order_by("pk")]
        plan = plan_for_org(org.pk)
        tenants.append(Tenant(org_id=org.pk, plan_name=plan.name, prices=plan.prices, keys=keys))
    return tenants


class HistoryGenerator:
    """Rows of request history, drawn from a seeded random source so a run can be repeated."""

    def __init__(self, *, tenants: list[Tenant], fleet: list[Worker], days: int, seed: int, now: datetime) -> None:
        self.random = random.Random(seed)
        self.tenants = tenants
        self.fleet = fleet
        self.days = days
        self.now = now
        # A few organisations send most of the traffic (Zipf-like), as on any shared platform.
        self.org_weights = [1 / (rank + 1) ** 0.9 for rank in range(len(tenants))]
        self.model_weights = [share for _, _, share in MODELS]
        self.recent_ids: list[str] = []

    def rows(self, count: int) -> Iterator[RecordRows]:
        tenants = self.random.choices(self.tenants, weights=self.org_weights, k=count)
        for tenant in tenants:
            yield self._one(tenant)

    def _when(self) -> datetime:
        # Busier in the working day than at night: hours drawn with a daytime bump.
        day = self.random.randrange(self.days)
        hour = min(23, max(0, int(self.random.gauss(14, 5))))
        # Microseconds, as the gateway stamps records: real records almost never share an instant.
        moment = self.now - timedelta(days=day, hours=self.now.hour - hour, microseconds=self.random.random() * 3.6e9)
        # An hour later today than now is yesterday's (clamping it to now would stack thousands on one instant).
        return moment if moment <= self.now else moment - timedelta(days=1)

    def _request_id(self) -> str:
        # Now and then a client reuses an id it sent before (support must show every match).
        if self.recent_ids and self.random.random() < 0.001:
            return self.random.choice(self.recent_ids)
        request_id = f"req_{secrets.token_hex(12)}"
        if len(self.recent_ids) < 1000:
            self.recent_ids.append(request_id)
        else:
            self.recent_ids[self.random.randrange(1000)] = request_id
        return request_id

    def _one(self, tenant: Tenant) -> RecordRows:
        pick = self.random
        model, kind, _ = pick.choices(MODELS, weights=self.model_weights)[0]
        key_id, public_id, user_id = pick.choice(tenant.keys)
        worker, other = pick.sample(self.fleet, 2)
        outcome = pick.choices([name for name, _ in OUTCOMES] + ["200"], weights=[s for _, s in OUTCOMES] + [1])[0]
        common: dict[str, Any] = {
            "uid": uuid.uuid4().hex,
            "request_id": self._request_id(),
            "route": ROUTES[kind],
            "method": "POST",
            "created_at": self._when(),
            "key_public_id": public_id,
            "hand_off": True,
        }
        if outcome == "401":  # an unknown or revoked key: no org known unless the public id parsed
            return record_request(status=401, latency_ms=pick.uniform(0.5, 3), error="Invalid API key.", **common)
        owned = {"org_id": tenant.org_id, "api_key_id": key_id, "user_id": user_id, "model": model}
        if outcome == "429":
            bucket = pick.choice(["chat_rpm", "chat_tpm", "concurrent_streams"])
            hit = LimitHit(bucket=bucket, plan=tenant.plan_name, limit="600 per minute", reset_s=pick.randint(1, 60))
            return record_request(status=429, latency_ms=pick.uniform(0.5, 3), limit_hit=hit, **owned, **common)
        if outcome in ("400", "404"):
            error = "Unknown model." if outcome == "404" else "'messages' must be a non-empty list."
            return record_request(status=int(outcome), latency_ms=pick.uniform(0.5, 3), error=error, **owned, **common)
        trail = [{"worker_id": str(worker.pk), "worker": worker.name, "result": "200"}]
        if outcome == "502" or pick.random() < 0.02:  # a failover: the first worker failed
            trail.insert(0, {"worker_id": str(other.pk), "worker": other.name, "result": "connection refused"})
        if outcome == "502":
            trail[-1]["result"] = "502 from the worker"
            return record_request(
                status=502,
                latency_ms=pick.uniform(5, 400),
                worker_id=str(worker.pk),
                worker_name=worker.name,
                attempts=len(trail),
                worker_trail=trail,
                error="No worker answered.",
                **owned,
                **common,
            )
        if outcome == "504":
            trail[-1]["result"] = "timed out"
            return record_request(
                status=504,
                latency_ms=60_000,
                worker_id=str(worker.pk),
                worker_name=worker.name,
                attempts=len(trail),
                worker_trail=trail,
                timeout_hit=TimeoutHit(name="read", seconds=60.0),
                error="The worker timed out.",
                **owned,
                **common,
            )
        return self._success(kind=kind, tenant=tenant, worker=worker, trail=trail, owned=owned, common=common)

    def _success(
        self,
        *,
        kind: str,
        tenant: Tenant,
        worker: Worker,
        trail: list[dict[str, str]],
        owned: dict[str, Any],
        common: dict[str, Any],
    ) -> RecordRows:
        pick = self.random
        # As the gateway bills: tokens for chat and embeddings, images generated, one per audio request.
        usage, units, streamed = None, 1, False
        if kind == ModelKind.CHAT:
            prompt, completion = int(pick.lognormvariate(6, 1)) + 1, int(pick.lognormvariate(5, 0.8)) + 1
            usage, units, streamed = TokenUsage(prompt, completion, prompt + completion), 0, pick.random() < 0.4
        elif kind == ModelKind.EMBEDDINGS:
            prompt = int(pick.lognormvariate(5, 1)) + 1
            usage, units = TokenUsage(prompt, 0, prompt), 0
        elif kind == ModelKind.IMAGE:
            units = pick.choice([1, 1, 1, 2, 4])
        cost = cost_of(
            price_for(tenant.prices, kind=PRICED_AS[ModelKind(kind)], model=owned["model"]),
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            units=units,
        )
        latency = pick.lognormvariate(6, 0.7)
        return record_request(
            status=200,
            latency_ms=latency,
            upstream_latency_ms=latency * 0.97,
            ttfb_ms=latency * 0.2,
            worker_id=str(worker.pk),
            worker_name=worker.name,
            attempts=len(trail),
            worker_trail=trail,
            streamed=streamed,
            usage=usage,
            billed_units=units,
            cost=cost,
            **owned,
            **common,
        )


def generate(
    *,
    count: int,
    orgs: int = 100,
    workers: int = 8,
    days: int = 35,
    seed: int = 1,
    batch_size: int = 5000,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write ``count`` request records (and the usage of the successes); return how many were written."""
    generator = HistoryGenerator(
        tenants=ensure_tenants(orgs=orgs),
        fleet=ensure_fleet(workers=workers),
        days=days,
        seed=seed,
        now=timezone.now(),
    )
    written = 0
    rows = generator.rows(count)
    while written < count:
        batch = [next(rows) for _ in range(min(batch_size, count - written))]
        records, _ = write_records([row.record for row in batch], [row.usage for row in batch if row.usage])
        written += records
        if progress is not None:
            progress(written)
    return written
