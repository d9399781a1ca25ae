"""Settings, read from environment variables (see docs/configuration.md).

Embedded default: a SQLite file beside the code, the django-q2 ORM broker and the database
cache, so the engine runs with nothing else installed. Production: ``DATABASE_URL`` on
PostgreSQL and ``REDIS_URL`` for the django-q2 broker and the cache.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import dj_database_url

from project.env import (
    ImproperlyConfiguredEnv,
    env_bool,
    env_int,
    env_list,
    env_str,
    env_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent

try:
    DEBUG = env_bool("DEBUG", default=False)
    SECRET_KEY = env_str("SECRET_KEY")
    # A fixed development key keeps `make demo`, the tests and the other commands
    # self-contained; the web server and the cluster refuse it unless DEBUG is on
    # (project/ops/secret.py). REQUIRE_SECRET_KEY=1 makes every command refuse it.
    SECRET_KEY_IS_DEVELOPMENT = not SECRET_KEY
    if SECRET_KEY_IS_DEVELOPMENT:
        if env_bool("REQUIRE_SECRET_KEY", False):
            raise ImproperlyConfiguredEnv("SECRET_KEY must be set when REQUIRE_SECRET_KEY is on")
        SECRET_KEY = "django-insecure-development-key-set-SECRET_KEY-in-production"
    ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
    CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
    # HTTPS, for a deployment behind a TLS-terminating proxy (docs/operations.md). Off by
    # default: `make serve` answers plain HTTP on 127.0.0.1.
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", False)
    # The header a proxy sets to "https" for a request it received over TLS, such as
    # X-Forwarded-Proto: trust it only behind a proxy that always sets or strips it.
    proxy_ssl_header = env_str("SECURE_PROXY_SSL_HEADER", "").strip()
    if proxy_ssl_header and not re.fullmatch(r"[A-Za-z0-9-]+", proxy_ssl_header):
        raise ImproperlyConfiguredEnv(
            f"SECURE_PROXY_SSL_HEADER={proxy_ssl_header!r} is not a header name"
        )
    SECURE_PROXY_SSL_HEADER = (
        ("HTTP_" + proxy_ssl_header.upper().replace("-", "_"), "https")
        if proxy_ssl_header
        else None
    )
    DATABASE_URL = env_url("DATABASE_URL", ("postgres", "postgresql", "sqlite"))
    REDIS_URL = env_url("REDIS_URL", ("redis", "rediss", "unix"))
    Q_WORKERS = env_int("Q_WORKERS", 2, minimum=1)
    ORDER_TASK_TIMEOUT = env_int("ORDER_TASK_TIMEOUT", 60, minimum=5)
    EXECUTION_API_URL = env_url("EXECUTION_API_URL", ("http", "https"))
    EXECUTION_API_KEY_ID = env_str("EXECUTION_API_KEY_ID", "")
    EXECUTION_API_SECRET_KEY = env_str("EXECUTION_API_SECRET_KEY", "")
    EXECUTION_API_TIMEOUT = env_int("EXECUTION_API_TIMEOUT", 10, minimum=1)
    # Client-side budget of requests to the execution API per minute, shared by every process
    # through the cache (execution/ratelimit.py); 0 switches the client-side limit off.
    EXECUTION_API_RATE_LIMIT = env_int("EXECUTION_API_RATE_LIMIT", 200, minimum=0)
    # The market data API (Alpaca-compatible data API v2): latest trades for the pools whose
    # engine configuration asks for them, and the daily-bar refresh. Unset: neither runs.
    MARKET_DATA_API_URL = env_url("MARKET_DATA_API_URL", ("http", "https"))
    MARKET_DATA_API_KEY_ID = env_str("MARKET_DATA_API_KEY_ID", "")
    MARKET_DATA_API_SECRET_KEY = env_str("MARKET_DATA_API_SECRET_KEY", "")
    MARKET_DATA_API_TIMEOUT = env_int("MARKET_DATA_API_TIMEOUT", 5, minimum=1)
    API_INGEST_RATE = env_str("API_INGEST_RATE", "600/min")
    API_CONTROL_RATE = env_str("API_CONTROL_RATE", "60/min")
    API_MAX_BODY_BYTES = env_int("API_MAX_BODY_BYTES", 16 * 1024 * 1024, minimum=1024)
    API_MAX_BATCH = env_int("API_MAX_BATCH", 10_000, minimum=1)
    METRICS_ALLOWED_IPS = env_list("METRICS_ALLOWED_IPS", [])
    # How far after the present a value may be dated and still be accepted (clock skew
    # between an upstream system and this one); later is refused unless a simulation says so.
    FUTURE_TOLERANCE_SECONDS = env_int("FUTURE_TOLERANCE_SECONDS", 300, minimum=0)
    # The order event export (execution/lakehouse.py): a folder, file:///folder or
    # s3://bucket/prefix; unset, the schedule exports nothing. The S3 settings serve any
    # S3-compatible store (MinIO: its URL as the endpoint).
    EVENTS_EXPORT_DESTINATION = (env_str("EVENTS_EXPORT_DESTINATION", "") or "").strip()
    if "://" in EVENTS_EXPORT_DESTINATION:
        env_url("EVENTS_EXPORT_DESTINATION", ("file", "s3"))
    EVENTS_EXPORT_FORMAT = (env_str("EVENTS_EXPORT_FORMAT", "jsonl") or "jsonl").strip().lower()
    if EVENTS_EXPORT_FORMAT not in ("jsonl", "parquet"):
        raise ImproperlyConfiguredEnv(
            f"EVENTS_EXPORT_FORMAT={EVENTS_EXPORT_FORMAT!r} is not one of jsonl, parquet"
        )
    EVENTS_S3_ENDPOINT_URL = env_url("EVENTS_S3_ENDPOINT_URL", ("http", "https"))
    EVENTS_S3_ACCESS_KEY_ID = env_str("EVENTS_S3_ACCESS_KEY_ID", "")
    EVENTS_S3_SECRET_ACCESS_KEY = env_str("EVENTS_S3_SECRET_ACCESS_KEY", "")
    EVENTS_S3_REGION = env_str("EVENTS_S3_REGION", "us-east-1")
except ImproperlyConfiguredEnv as exc:  # pragma: no cover - exercised by tests/test_settings.py
    sys.stderr.write(f"Configuration error: {exc}\n")
    raise SystemExit(2) from exc

INSTALLED_APPS = [
    # First: its runserver and qcluster commands take the place of staticfiles' and django-q2's.
    "project.ops",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "portfolio",
    "decisions",
    "execution",
    "project.api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "project.api.middleware.RefuseNulInPath",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

if DATABASE_URL and not DATABASE_URL.startswith("sqlite"):
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
    DATABASES["default"].setdefault("TEST", {})
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
else:
    sqlite_path = (
        dj_database_url.parse(DATABASE_URL)["NAME"]
        if DATABASE_URL
        else BASE_DIR / "var" / "engine.sqlite3"
    )
    Path(sqlite_path).parent.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": sqlite_path,
            "OPTIONS": {
                # IMMEDIATE takes the write lock when a transaction starts, so two writers wait
                # for each other instead of failing half-way with "database is locked".
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_FUNCTION": "project.cache.plain_key",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 2, "SOCKET_TIMEOUT": 2},
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "engine_cache",
        }
    }

# The source keeps a dedupe key per processed recommendation in Redis (24 h TTL) as a fast
# path beside the database; with the database cache it would only duplicate the
# execution_decisions table row by row, so it is used with Redis only.
DEDUPE_CACHE = bool(REDIS_URL)

# django-q2. `retry` must exceed the longest task, or a task is delivered twice; the orders
# table is the durable outbox either way (see execution/worker.py).
Q_CLUSTER = {
    "name": "engine",
    "workers": Q_WORKERS,
    "timeout": ORDER_TASK_TIMEOUT,
    "retry": ORDER_TASK_TIMEOUT * 2 + 30,
    "max_attempts": 1,
    "catch_up": False,
    "time_zone": "America/New_York",
    "ack_failures": True,
    "save_limit": 1000,
    "label": "Task queue",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "America/New_York"  # shown in the admin; everything is stored in UTC
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# WhiteNoise serves the apps' static files (the admin's, the API docs') from the web process,
# DEBUG on or off, straight from the installed apps: no collectstatic step and no STATIC_ROOT,
# and the files always match the installed versions.
WHITENOISE_USE_FINDERS = True

REST_FRAMEWORK = {
    # Token first: an anonymous request is answered 401 with "WWW-Authenticate: Token".
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["project.api.permissions.ReadRole"],
    "DEFAULT_PARSER_CLASSES": ["project.api.parsers.BoundedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_RATES": {"ingest": API_INGEST_RATE, "control": API_CONTROL_RATE},
    "EXCEPTION_HANDLER": "project.api.errors.exception_handler",
    "COERCE_DECIMAL_TO_STRING": True,
    "STRICT_JSON": True,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Decision execution engine API",
    "DESCRIPTION": (
        "Ingest recommendations and market data, read the audit trail, operate pools. "
        "Numbers with a decimal point travel as strings; fractions are fractions (0.05 = 5 %); "
        "times are ISO 8601 in UTC."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    # One name per vocabulary, whichever serializer uses it.
    "ENUM_NAME_OVERRIDES": {
        "OrderStatusEnum": "execution.models.OrderStatus",
        "CommitmentStatusEnum": "portfolio.models.CommitmentStatus",
        "RiskTierEnum": "portfolio.models.RiskTier",
        "RecommendationActionEnum": "decisions.models.RecommendationAction",
        "OperatorActionKindEnum": "portfolio.models.OperatorActionKind",
        "BreakerTypeEnum": "portfolio.models.BreakerType",
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {
            "()": "project.logging.UTCFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        }
    },
    "filters": {"one_line_client_errors": {"()": "project.logging.OneLineClientErrors"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["one_line_client_errors"],
        }
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
