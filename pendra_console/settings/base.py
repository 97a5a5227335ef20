"""Django's own settings: apps, middleware, database, security, accounts, the admin API, logging."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from pendra_console.env import env_bool, env_float, env_int, env_list
from pendra_console.envfile import load_env_file

# Development values from `.env` (written by `make run`), never over the real environment;
# the container image sets PENDRA_ENV_FILE empty, so production reads the environment only.
ENV_FILE = load_env_file()

BASE_DIR = Path(__file__).resolve().parents[2]
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
    "apps.webhooks",
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
    # Off unless PENDRA_OTEL_ENABLED (it then removes itself); outside the request id so the
    # access line is written inside the request's span.
    "pendra_console.tracing.TracingMiddleware",
    # Outermost that answers, so the request id is on every response, static files and 500s included.
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
if _database["ENGINE"] == "django.db.backends.postgresql":
    # A database that accepts the TCP connection but never answers (frozen, or a black-holed
    # address) would otherwise hold each request for minutes; this bounds it, and it answers 503.
    _database.setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", env_int("PENDRA_DB_CONNECT_TIMEOUT", 5, minimum=1)
    )
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
    # A price's kind shares its field name with other choice sets (the worker's model kinds).
    "ENUM_NAME_OVERRIDES": {
        "PriceKindEnum": "apps.plans.models.Price.Kind",
        # Two models name their state field "state": each enum gets its own name.
        "WorkerStateEnum": "apps.workers.models.WorkerState",
        "DeliveryStateEnum": "apps.webhooks.models.DeliveryState",
    },
}

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
