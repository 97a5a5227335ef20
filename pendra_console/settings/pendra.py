"""The product's own settings: keys, the gateway, workers, request records, metrics, periodic tasks."""

from __future__ import annotations

import ipaddress
import os
import ssl

from django.core.exceptions import ImproperlyConfigured

from pendra_console.env import env_bool, env_float, env_int, env_list, env_networks
from pendra_console.settings.base import DEBUG, SECRET_KEY
from pendra_console.settings.broker import (
    CELERY_VISIBILITY_TIMEOUT,
    PENDRA_KEY_LIFECYCLE_INTERVAL,
    PENDRA_RETENTION_INTERVAL,
    REDIS_URL,
)

# Keys: the pepper makes a leaked hash table useless without the server's secret.
# PENDRA_KEY_PEPPERS lists several, newest first: new keys are hashed with the first, and a
# presented key is checked against each, so a pepper is rotated without invalidating keys at
# once (docs/runbook.md). PENDRA_KEY_PEPPER (one pepper) and SECRET_KEY are the older defaults.
if os.environ.get("PENDRA_KEY_PEPPERS") is not None and os.environ.get("PENDRA_KEY_PEPPER") is not None:
    raise ImproperlyConfigured("Set PENDRA_KEY_PEPPERS or PENDRA_KEY_PEPPER, not both")
PENDRA_KEY_PEPPERS = env_list("PENDRA_KEY_PEPPERS", os.environ.get("PENDRA_KEY_PEPPER") or SECRET_KEY)
if not PENDRA_KEY_PEPPERS:
    raise ImproperlyConfigured("PENDRA_KEY_PEPPERS must name at least one pepper")
if len(set(PENDRA_KEY_PEPPERS)) != len(PENDRA_KEY_PEPPERS):
    raise ImproperlyConfigured("PENDRA_KEY_PEPPERS lists a pepper twice")
# Secrets the server reads back (webhook signing secrets) are sealed at rest with the first of
# these and opened with any (pendra_console/sealing.py; rotation in docs/runbook.md).
PENDRA_SEALING_KEYS = env_list("PENDRA_SEALING_KEYS", SECRET_KEY)
if not PENDRA_SEALING_KEYS:
    raise ImproperlyConfigured("PENDRA_SEALING_KEYS must name at least one key")
if len(set(PENDRA_SEALING_KEYS)) != len(PENDRA_SEALING_KEYS):
    raise ImproperlyConfigured("PENDRA_SEALING_KEYS lists a key twice")
PENDRA_KEY_CACHE_SECONDS = env_float("PENDRA_KEY_CACHE_SECONDS", 1.0)
PENDRA_PLAN_CACHE_SECONDS = env_float("PENDRA_PLAN_CACHE_SECONDS", 1.0)
# With Redis, a gateway process keeps keys, plans and the fleet this long while their change
# epochs (pendra_console/epochs.py, polled four times a second) say nothing changed; past the
# short times above an entry is served only while that was confirmed within them. 0: no epochs.
PENDRA_WATCHED_CACHE_SECONDS = env_float("PENDRA_WATCHED_CACHE_SECONDS", 60.0)
# Token limits reserve a request's most tokens at admission: this many per choice when a chat
# request names no max_tokens (apps.plans.limit_decision.TokenBound).
PENDRA_DEFAULT_MAX_TOKENS = env_int("PENDRA_DEFAULT_MAX_TOKENS", 256, minimum=1)
# A stream's slot is a lease of this many seconds that the live stream renews: a slot whose
# process died comes back within one lease, and a stream can only free its own slot.
PENDRA_STREAM_LEASE_SECONDS = env_float("PENDRA_STREAM_LEASE_SECONDS", 30.0, minimum=1.0)
# A public id with no key behind it is remembered this long, so a client repeating a
# made-up key costs no query; ids are random, so no real key is ever hidden by it.
PENDRA_KEY_NEGATIVE_CACHE_SECONDS = env_float("PENDRA_KEY_NEGATIVE_CACHE_SECONDS", 60.0)
# Unknown keys one client address may present per minute (per process) before its lookups
# stop: random well-formed keys must not turn into one database query each without limit.
PENDRA_UNKNOWN_KEY_BUDGET = env_int("PENDRA_UNKNOWN_KEY_BUDGET", 60, minimum=1)
# The load balancers and proxies in front of Pendra, as CIDRs: only from these is
# X-Forwarded-For believed, read right to left (pendra_console/client_address.py).
PENDRA_TRUSTED_PROXIES = env_networks("PENDRA_TRUSTED_PROXIES")

# Gateway timeouts, in seconds.
PENDRA_CONNECT_TIMEOUT = env_float("PENDRA_CONNECT_TIMEOUT", 5.0, minimum=0.01)
PENDRA_CHAT_IDLE_TIMEOUT = env_float("PENDRA_CHAT_IDLE_TIMEOUT", 100.0, minimum=0.01)
# A chat answer's whole duration, streamed or not: the idle limit alone lets a worker that
# drips a byte inside it hold a request for ever. Below the 660 s that proxies and the
# orchestrator's grace period allow (deploy/).
PENDRA_CHAT_MAX_SECONDS = env_float("PENDRA_CHAT_MAX_SECONDS", 600.0, minimum=0.01)
PENDRA_EMBEDDINGS_TIMEOUT = env_float("PENDRA_EMBEDDINGS_TIMEOUT", 60.0, minimum=0.01)
PENDRA_IMAGES_TIMEOUT = env_float("PENDRA_IMAGES_TIMEOUT", 600.0, minimum=0.01)
PENDRA_AUDIO_TIMEOUT = env_float("PENDRA_AUDIO_TIMEOUT", 300.0, minimum=0.01)
PENDRA_MAX_ATTEMPTS = env_int("PENDRA_MAX_ATTEMPTS", 3, minimum=1)
# A client that leaves mid-answer: how long the worker may still finish and report its usage.
PENDRA_ABANDONED_USAGE_WAIT = env_float("PENDRA_ABANDONED_USAGE_WAIT", 0.25, minimum=0.0)
PENDRA_WORKER_COOLDOWN = env_float("PENDRA_WORKER_COOLDOWN", 10.0)
PENDRA_MAX_BODY_BYTES = env_int("PENDRA_MAX_BODY_BYTES", 25 * 1024 * 1024, minimum=1024)
# /v1 bodies above this many bytes are parsed in a helper process, so the parse cannot stall the
# process's other requests (apps/gateway/parsing.py); smaller ones in a thread or in place.
PENDRA_PARSE_PROCESS_BYTES = env_int("PENDRA_PARSE_PROCESS_BYTES", 1024 * 1024, minimum=64 * 1024)
# Everything that is not /v1 (admin API, console): refused with a 413 before Django reads
# (and spools) the body; Django's own check on request.body uses the same figure.
PENDRA_API_MAX_BODY_BYTES = env_int("PENDRA_API_MAX_BODY_BYTES", 1024 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = PENDRA_API_MAX_BODY_BYTES
# Image sizes the image models accept ("auto" always is); any other "size" is a 400.
PENDRA_IMAGE_SIZES = env_list("PENDRA_IMAGE_SIZES", "256x256,512x512,1024x1024,1536x1024,1024x1536,1792x1024,1024x1792")
PENDRA_ALLOW_PRIVATE_WORKER_URLS = env_bool("PENDRA_ALLOW_PRIVATE_WORKER_URLS", DEBUG)
# What the gateway holds of a worker's answer: a non-streamed body (base64 images are the
# largest), an error body, one server-sent event. Above the bound the worker has failed.
# Connections one web process keeps open to one worker at most: one per request in flight
# (a stream holds its connection while it runs); a request past it waits for one to free up.
PENDRA_WORKER_MAX_CONNECTIONS = env_int("PENDRA_WORKER_MAX_CONNECTIONS", 2048, minimum=1)
PENDRA_WORKER_MAX_BODY_BYTES = env_int("PENDRA_WORKER_MAX_BODY_BYTES", 64 * 1024 * 1024, minimum=1024)
PENDRA_WORKER_MAX_ERROR_BYTES = env_int("PENDRA_WORKER_MAX_ERROR_BYTES", 64 * 1024, minimum=1024)
PENDRA_WORKER_MAX_EVENT_BYTES = env_int("PENDRA_WORKER_MAX_EVENT_BYTES", 1024 * 1024, minimum=1024)
# A PEM file of certificate authorities trusted for https:// workers besides the system's
# (a private CA for the GPU fleet): the gateway's connections and the health probes use it.
PENDRA_WORKER_CA_FILE = os.environ.get("PENDRA_WORKER_CA_FILE", "")


def _check_worker_ca_file(path: str) -> None:
    """Read now: a file that cannot be used would otherwise fail every https:// worker later."""
    try:
        ssl.create_default_context().load_verify_locations(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        problem = f"PENDRA_WORKER_CA_FILE={path!r} holds no usable PEM certificates"
        raise ImproperlyConfigured(f"{problem}: {exc}") from None


if PENDRA_WORKER_CA_FILE:
    _check_worker_ca_file(PENDRA_WORKER_CA_FILE)
# x-sim-* request headers drive the bundled simulator's faults; a real worker has no use for them.
PENDRA_FORWARD_SIM_HEADERS = env_bool("PENDRA_FORWARD_SIM_HEADERS", DEBUG)

# Workers' health checks.
PENDRA_HEALTH_INTERVAL = env_float("PENDRA_HEALTH_INTERVAL", 10.0, minimum=0.5)
PENDRA_HEALTH_TIMEOUT = env_float("PENDRA_HEALTH_TIMEOUT", 2.0, minimum=0.1)
PENDRA_HEALTH_FAILURES = env_int("PENDRA_HEALTH_FAILURES", 3, minimum=1)
PENDRA_HEALTH_RECOVERIES = env_int("PENDRA_HEALTH_RECOVERIES", 2, minimum=1)

# Periodic tasks, for the one Celery beat: each app adds its entries to this dict.
# A sweep that could not start within one interval is dropped ("expires"): the next one is due.
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "workers-health-sweep": {
        "task": "workers.health_sweep",
        "schedule": PENDRA_HEALTH_INTERVAL,
        "options": {"expires": PENDRA_HEALTH_INTERVAL},
    },
}

# Request records.
PENDRA_REQUEST_RETENTION_DAYS = env_int("PENDRA_REQUEST_RETENTION_DAYS", 30, minimum=1)
PENDRA_RECORD_FLUSH_SECONDS = env_float("PENDRA_RECORD_FLUSH_SECONDS", 0.2, minimum=0.01)
# Where a finished request's record goes first (apps/requestlog/handoff.py): the Redis Stream that
# outlives the web process and `manage.py record_writer` empties ("redis", the default with
# REDIS_URL), or this process's memory and its writer thread ("memory").
PENDRA_RECORD_HANDOFF = os.environ.get("PENDRA_RECORD_HANDOFF", "redis" if REDIS_URL else "memory")
if PENDRA_RECORD_HANDOFF not in {"redis", "memory"}:
    raise ImproperlyConfigured(f"PENDRA_RECORD_HANDOFF must be redis or memory, not {PENDRA_RECORD_HANDOFF!r}")
if PENDRA_RECORD_HANDOFF == "redis" and not REDIS_URL:
    raise ImproperlyConfigured("PENDRA_RECORD_HANDOFF=redis needs REDIS_URL")
# Seconds a stream entry may stay read and unacknowledged (its writer died) before another writer takes it.
PENDRA_RECORD_CLAIM_IDLE = env_float("PENDRA_RECORD_CLAIM_IDLE", 30.0, minimum=0.05)
# Entries one record_writer pass reads and writes in one transaction, and how long a writer lets a
# short batch gather before its next pass. A batch's transaction, COPYs, upserts and round trips cost
# the same for 250 records as for 1,000, so bigger batches cost less per record (bench/README.md).
PENDRA_RECORD_WRITER_BATCH = env_int("PENDRA_RECORD_WRITER_BATCH", 2000, minimum=1)
PENDRA_RECORD_WRITER_GATHER_SECONDS = env_float("PENDRA_RECORD_WRITER_GATHER_SECONDS", 1.0, minimum=0.01)

CELERY_BEAT_SCHEDULE.update(
    {
        "keys-rotate-due": {
            "task": "keys.rotate_due",
            "schedule": PENDRA_KEY_LIFECYCLE_INTERVAL,
            "options": {"expires": PENDRA_KEY_LIFECYCLE_INTERVAL},
        },
        "keys-expire-and-notify": {
            "task": "keys.expire_and_notify",
            "schedule": PENDRA_KEY_LIFECYCLE_INTERVAL,
            "options": {"expires": PENDRA_KEY_LIFECYCLE_INTERVAL},
        },
        "requestlog-delete-expired": {
            "task": "requestlog.delete_expired",
            "schedule": PENDRA_RETENTION_INTERVAL,
            "options": {"expires": PENDRA_RETENTION_INTERVAL},
        },
    }
)

# Webhooks (apps/webhooks): each delivery is tried up to PENDRA_WEBHOOK_MAX_ATTEMPTS times, waiting
# RETRY_BASE seconds after the first failure and doubling, at most RETRY_MAX (kept far below the
# broker's visibility timeout); each attempt's HTTP exchange may last PENDRA_WEBHOOK_TIMEOUT seconds.
PENDRA_WEBHOOK_MAX_ATTEMPTS = env_int("PENDRA_WEBHOOK_MAX_ATTEMPTS", 6, minimum=1)
PENDRA_WEBHOOK_RETRY_BASE_SECONDS = env_float("PENDRA_WEBHOOK_RETRY_BASE_SECONDS", 30.0, minimum=0.0)
PENDRA_WEBHOOK_RETRY_MAX_SECONDS = env_float("PENDRA_WEBHOOK_RETRY_MAX_SECONDS", 900.0, minimum=0.0)
PENDRA_WEBHOOK_TIMEOUT = env_float("PENDRA_WEBHOOK_TIMEOUT", 10.0, minimum=0.1)
if PENDRA_WEBHOOK_RETRY_MAX_SECONDS >= CELERY_VISIBILITY_TIMEOUT:
    # Redis hands a message whose countdown outlasts the visibility timeout to a second worker.
    raise ImproperlyConfigured("PENDRA_WEBHOOK_RETRY_MAX_SECONDS must be below PENDRA_CELERY_VISIBILITY_TIMEOUT")
CELERY_BEAT_SCHEDULE["webhooks-send-stale"] = {
    "task": "webhooks.send_stale",
    "schedule": 60.0,
    "options": {"expires": 60.0},
}

# /metrics (Prometheus): callers from these networks, or with this bearer token, may scrape.
# PENDRA_METRICS=0 stops the gateway counting (the bench compares both).
PENDRA_METRICS = env_bool("PENDRA_METRICS", True)
PENDRA_METRICS_TOKEN = os.environ.get("PENDRA_METRICS_TOKEN", "")
PENDRA_METRICS_ALLOWED_IPS = env_list("PENDRA_METRICS_ALLOWED_IPS", "127.0.0.1/32,::1/128")
for _network in PENDRA_METRICS_ALLOWED_IPS:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(f"PENDRA_METRICS_ALLOWED_IPS: {_network!r} is not an address or network") from None

# OpenTelemetry tracing (pendra_console/tracing.py), off by default. When on, the OTLP/HTTP
# exporter reads the standard OTEL_EXPORTER_OTLP_* variables (endpoint: http://localhost:4318).
PENDRA_OTEL_ENABLED = env_bool("PENDRA_OTEL_ENABLED", False)
PENDRA_OTEL_SERVICE_NAME = os.environ.get("OTEL_SERVICE_NAME") or "pendra-console"
