"""Pendra Console settings: read once from the environment (12-factor), plus `.env` in development.

Every variable has a default that gives the embedded set-up (SQLite, local-memory
cache, Celery on the filesystem transport, all under ``var/``). Production sets
``DATABASE_URL``, ``REDIS_URL``, ``SECRET_KEY``, ``ALLOWED_HOSTS`` and ``DEBUG=0``.
A value that cannot be parsed stops the process at start-up instead of being guessed.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from pendra_console.env import env_bool, env_float, env_int, env_list, env_networks
from pendra_console.envfile import load_env_file

# Development values from `.env` (written by `make run`), never over the real environment;
# the container image sets PENDRA_ENV_FILE empty, so production reads the environment only.
ENV_FILE = load_env_file()

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("PENDRA_VAR_DIR") or BASE_DIR / "var")
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _dev_secret_key() -> str:
    """A random key kept in var/ so sessions survive restarts on a laptop."""
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


DEBUG = env_bool("DEBUG", False)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = _dev_secret_key()

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    # The console's form templates override Django's (FORM_RENDERER below).
    "django.forms",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "apps.audit",
    "csp",
    "apps.orgs",
    "apps.keys",
    "apps.plans",
    "apps.workers",
    "apps.requestlog",
    "apps.gateway",
    "apps.accounts",
    "apps.console",
    # Development only (make run, tests, the bench): a simulated GPU worker; no models, no routes.
    "apps.simulator",
    # After the project's apps, so templates/ overrides allauth's templates.
    "allauth",
    "allauth.account",
    "allauth.mfa",
]

MIDDLEWARE = [
    # Outermost, so the request id is on every response, static files and 500s included.
    "pendra_console.request_id.RequestIdMiddleware",
    "pendra_console.metrics.MetricsMiddleware",
    "pendra_console.errors.ErrorContractMiddleware",
    "apps.requestlog.middleware.AdminRequestRecordMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "apps.accounts.middleware.TwoFactorRequiredMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "pendra_console.urls"
WSGI_APPLICATION = "pendra_console.wsgi.application"
ASGI_APPLICATION = "pendra_console.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "apps.console.navigation.console",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------

DATABASE_URL = os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'pendra.sqlite3'}")
try:
    _database = dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=env_int("PENDRA_DB_CONN_MAX_AGE", 0),
        conn_health_checks=True,
    )
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a database URL: {exc}") from None
if _database["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the request-record writer and readers work at once; IMMEDIATE avoids
    # "database is locked" on read-then-write transactions.
    _database["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    _database["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
# PostgreSQL connection pool per process (psycopg_pool). Under ASGI every in-flight sync
# view runs in a thread with a connection of its own, so without a pool (or pgbouncer) a
# burst opens as many connections as it has requests and meets PostgreSQL's limit.
PENDRA_DB_POOL_SIZE = env_int("PENDRA_DB_POOL_SIZE", 0)
if PENDRA_DB_POOL_SIZE and _database["ENGINE"] == "django.db.backends.postgresql":
    if _database["CONN_MAX_AGE"]:
        raise ImproperlyConfigured("PENDRA_DB_POOL_SIZE needs PENDRA_DB_CONN_MAX_AGE=0: the pool keeps the connections")
    _database.setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": PENDRA_DB_POOL_SIZE,
        "timeout": env_float("PENDRA_DB_POOL_TIMEOUT", 10.0, minimum=0.1),
    }
DATABASES = {"default": _database}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache, rate-limit counters, Celery broker -----------------------------

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL and urlsplit(REDIS_URL).scheme not in {"redis", "rediss", "unix"}:
    raise ImproperlyConfigured(f"REDIS_URL must be a redis://, rediss:// or unix:// URL, not {REDIS_URL!r}")

# Seconds: see CELERY_BROKER_TRANSPORT_OPTIONS. Tests shorten it to see a killed task delivered again.
CELERY_VISIBILITY_TIMEOUT = env_int("PENDRA_CELERY_VISIBILITY_TIMEOUT", 3600, minimum=1)

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "pendra_console.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "pendra",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        # A task not acknowledged within this many seconds is handed to another worker: it must
        # exceed the longest task (hard limits are at most a few minutes) and any ETA/countdown
        # (none: anything later is a row with a timestamp that a periodic task picks up).
        "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
        "socket_connect_timeout": 5,
        "socket_timeout": 30,
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "pendra"}}
    _queue_dir = VAR_DIR / "celery" / "queue"
    _processed_dir = VAR_DIR / "celery" / "processed"
    _queue_dir.mkdir(parents=True, exist_ok=True)
    _processed_dir.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "processed_folder": str(_processed_dir),
        "store_processed": False,
        # Worker remote control (ping, inspect) uses a fanout exchange, kept in its own folder.
        "control_folder": str(VAR_DIR / "celery" / "control"),
    }

CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
# One queue per deployment; two deployments sharing a Redis (or two test runs) give theirs different names.
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("PENDRA_CELERY_QUEUE", "celery")
# Defaults for any task that does not set its own (every Pendra task does).
CELERY_TASK_SOFT_TIME_LIMIT = 60
CELERY_TASK_TIME_LIMIT = 90
# Acknowledge on receipt unless a task opts in with acks_late=True after showing a rerun is harmless.
CELERY_TASK_ACKS_LATE = False
# A task whose worker process dies is acknowledged, not redelivered forever (a poison message
# would otherwise kill worker after worker); the periodic tasks simply run again on the next tick.
CELERY_TASK_REJECT_ON_WORKER_LOST = False
# acks_late tasks still running when the broker connection drops are redelivered elsewhere, so
# stop them here instead of letting two copies run.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_MAX_TASKS_PER_CHILD = 1000
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_TIMEOUT = 5
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# How often beat sends each periodic task, in seconds. Every one is harmless when it runs
# twice or overlaps; tests shorten the intervals through the environment.
PENDRA_KEY_LIFECYCLE_INTERVAL = env_float("PENDRA_KEY_LIFECYCLE_INTERVAL", 60.0, minimum=0.5)
PENDRA_RETENTION_INTERVAL = env_float("PENDRA_RETENTION_INTERVAL", 3600.0, minimum=1.0)

# --- Sessions, security ----------------------------------------------------

CSRF_FAILURE_VIEW = "pendra_console.errors.csrf_failure"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("PENDRA_SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
    SECURE_SSL_REDIRECT = env_bool("PENDRA_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("PENDRA_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    # TLS ends at the load balancer, which sets X-Forwarded-Proto.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # The health probes are plain HTTP from inside the cluster.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]

# Content Security Policy (django-csp 4): everything from our own origin, nothing inline
# (no <script> or style= in templates), never framed. An injected script cannot run.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "base-uri": [SELF],
        "form-action": [SELF],
        "object-src": [NONE],
        "frame-ancestors": [NONE],
    },
}

# Argon2 for new and changed passwords (memory-hard: a stolen table is slow to crack on GPUs).
# The others stay listed so existing hashes still verify; each is upgraded at its next sign-in.
PASSWORD_HASHERS = [
    "pendra_console.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]

# Argon2's cost (Django's defaults); the test suite lowers it, as a small machine may.
PENDRA_ARGON2_MEMORY_KIB = env_int("PENDRA_ARGON2_MEMORY_KIB", 102_400, minimum=8)
PENDRA_ARGON2_TIME_COST = env_int("PENDRA_ARGON2_TIME_COST", 2, minimum=1)
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "console:home"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
FORM_RENDERER = "apps.console.rendering.ConsoleFormRenderer"

# --- Accounts (django-allauth): sign-up, email verification, password reset, two-factor ---

ACCOUNT_ADAPTER = "apps.accounts.adapter.AccountAdapter"
ACCOUNT_FORMS = {"signup": "apps.accounts.forms.SignupForm"}
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*"]
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_CHANGE_EMAIL = True
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_LOGOUT_REDIRECT_URL = "account_login"
ACCOUNT_SESSION_REMEMBER = None
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[Pendra] "
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "http" if DEBUG else "https"
# Password sign-in is throttled by apps.console.auth_views (per username and per IP, failing
# closed when the cache is down). allauth's own limits stay on: its failed-login counter also
# limits guesses of two-factor codes, and it limits sign-ups and reset emails per IP.
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = "Pendra"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("PENDRA_STATIC_ROOT", VAR_DIR / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

EMAIL_BACKEND = os.environ.get("PENDRA_EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
# For django.core.mail.backends.filebased.EmailBackend: a directory, one file per batch sent.
EMAIL_FILE_PATH = os.environ.get("PENDRA_EMAIL_FILE_PATH", str(VAR_DIR / "mail"))
EMAIL_HOST = os.environ.get("PENDRA_EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("PENDRA_EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = os.environ.get("PENDRA_EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("PENDRA_EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("PENDRA_EMAIL_USE_TLS", False)
# A mail server that stops answering must not hold a Celery task (and its row locks) forever.
EMAIL_TIMEOUT = env_float("PENDRA_EMAIL_TIMEOUT", 10.0, minimum=0.1)
DEFAULT_FROM_EMAIL = os.environ.get("PENDRA_FROM_EMAIL", "Pendra Console <no-reply@pendra.localhost>")

# --- Django REST Framework and the OpenAPI schema ---------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.keys.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # DRF's JSON parser with a bound on nesting: deep JSON is a 400, not a RecursionError.
    "DEFAULT_PARSER_CLASSES": ["pendra_console.jsonbody.BoundedJSONParser"],
    "DEFAULT_PAGINATION_CLASS": "pendra_console.api.pagination.Pagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "pendra_console.errors.drf_exception_handler",
    # The plans app's per-org "api" bucket (apps/plans/throttling.py); its 429 names bucket, limit and plan.
    "DEFAULT_THROTTLE_CLASSES": ["apps.plans.throttling.ApiRateThrottle"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Pendra Console admin API",
    "DESCRIPTION": "Organisations, members, API keys, plans, workers, usage and request lookup.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # The docs page's scripts are served from here, not from a CDN.
    "REDOC_DIST": "SIDECAR",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
}

# --- Pendra ----------------------------------------------------------------

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
PENDRA_KEY_CACHE_SECONDS = env_float("PENDRA_KEY_CACHE_SECONDS", 1.0)
PENDRA_PLAN_CACHE_SECONDS = env_float("PENDRA_PLAN_CACHE_SECONDS", 1.0)
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
PENDRA_EMBEDDINGS_TIMEOUT = env_float("PENDRA_EMBEDDINGS_TIMEOUT", 60.0, minimum=0.01)
PENDRA_IMAGES_TIMEOUT = env_float("PENDRA_IMAGES_TIMEOUT", 600.0, minimum=0.01)
PENDRA_AUDIO_TIMEOUT = env_float("PENDRA_AUDIO_TIMEOUT", 300.0, minimum=0.01)
PENDRA_MAX_ATTEMPTS = env_int("PENDRA_MAX_ATTEMPTS", 3, minimum=1)
# A client that leaves mid-answer: how long the worker may still finish and report its usage.
PENDRA_ABANDONED_USAGE_WAIT = env_float("PENDRA_ABANDONED_USAGE_WAIT", 0.25, minimum=0.0)
PENDRA_WORKER_COOLDOWN = env_float("PENDRA_WORKER_COOLDOWN", 10.0)
PENDRA_MAX_BODY_BYTES = env_int("PENDRA_MAX_BODY_BYTES", 25 * 1024 * 1024, minimum=1024)
# Everything that is not /v1 (admin API, console): refused with a 413 before Django reads
# (and spools) the body; Django's own check on request.body uses the same figure.
PENDRA_API_MAX_BODY_BYTES = env_int("PENDRA_API_MAX_BODY_BYTES", 1024 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = PENDRA_API_MAX_BODY_BYTES
# Image sizes the image models accept ("auto" always is); any other "size" is a 400.
PENDRA_IMAGE_SIZES = env_list("PENDRA_IMAGE_SIZES", "256x256,512x512,1024x1024,1536x1024,1024x1536,1792x1024,1024x1792")
PENDRA_ALLOW_PRIVATE_WORKER_URLS = env_bool("PENDRA_ALLOW_PRIVATE_WORKER_URLS", DEBUG)
# What the gateway holds of a worker's answer: a non-streamed body (base64 images are the
# largest), an error body, one server-sent event. Above the bound the worker has failed.
PENDRA_WORKER_MAX_BODY_BYTES = env_int("PENDRA_WORKER_MAX_BODY_BYTES", 64 * 1024 * 1024, minimum=1024)
PENDRA_WORKER_MAX_ERROR_BYTES = env_int("PENDRA_WORKER_MAX_ERROR_BYTES", 64 * 1024, minimum=1024)
PENDRA_WORKER_MAX_EVENT_BYTES = env_int("PENDRA_WORKER_MAX_EVENT_BYTES", 1024 * 1024, minimum=1024)
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

# Logging: one line per request; JSON lines for log shippers.
PENDRA_LOG_FORMAT = os.environ.get("PENDRA_LOG_FORMAT", "text")
if PENDRA_LOG_FORMAT not in {"text", "json"}:
    raise ImproperlyConfigured(f"PENDRA_LOG_FORMAT must be 'text' or 'json', not {PENDRA_LOG_FORMAT!r}")
PENDRA_LOG_LEVEL = os.environ.get("PENDRA_LOG_LEVEL", "INFO").upper()

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "pendra_console.request_id.RequestIdLogFilter"}},
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "pendra_console.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["request_id"],
            "formatter": PENDRA_LOG_FORMAT,
        }
    },
    "root": {"handlers": ["console"], "level": PENDRA_LOG_LEVEL},
    "loggers": {
        # The access line is ours (pendra.access); Django's duplicates it for 4xx/5xx.
        "django.request": {"level": "ERROR"},
        "django.server": {"level": "WARNING"},
        "uvicorn.access": {"level": "WARNING"},
    },
}
