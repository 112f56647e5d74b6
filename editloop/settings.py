"""EditLoop settings: one file, typed environment helpers that fail loudly."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from django.core.exceptions import ImproperlyConfigured

from editloop import services

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number") from None


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false)")


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


# What REWARD_DEVICE may say. Checked as a string here: the web process must not import torch
# (whether CUDA is really there is known only on the worker, rewards/device.py).
REWARD_DEVICE_HELP = "auto, cpu, cuda or cuda:N (N a GPU index)"


def env_device(name: str, default: str) -> str:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    kind, _, index = value.partition(":")
    if value in {"auto", "cpu", "cuda"} or (kind == "cuda" and index.isdigit()):
        return value
    raise ImproperlyConfigured(f"{name}={raw!r} is not a device: use {REWARD_DEVICE_HELP}")


def env_positive_int_or_auto(name: str) -> int | None:
    """None when unset (or `auto`): the worker sizes it for its device."""
    raw = os.environ.get(name)
    if raw is None or raw.strip().lower() in {"", "auto"}:
        return None
    value = env_int(name, 0)
    if value < 1:
        raise ImproperlyConfigured(f"{name}={raw!r} must be a whole number >= 1, or auto")
    return value


def database_from_url(url: str) -> dict:
    parsed = urlparse(url)
    if parsed.scheme not in {"postgres", "postgresql"}:
        raise ImproperlyConfigured(f"DATABASE_URL must be a postgresql:// URL, got {url!r}")
    query = {key: values[-1] for key, values in parse_qs(parsed.query).items()}
    host = query.pop("host", None) or parsed.hostname or ""
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parsed.path.lstrip("/")) or "postgres",
        "USER": unquote(parsed.username or ""),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": host,
        "PORT": str(parsed.port or ""),
        # Server-side binding + a prepare threshold: psycopg prepares a statement once it has
        # run a few times on a connection, so the hot queries are planned once, not per call.
        "OPTIONS": {
            "server_side_binding": env_bool("DATABASE_SERVER_SIDE_BINDING", True),
            "prepare_threshold": env_int("DATABASE_PREPARE_THRESHOLD", 5),
            **query,
        },
        "CONN_MAX_AGE": env_int("DATABASE_CONN_MAX_AGE", 600),
        # No per-request "SELECT 1": a dropped connection fails one request and is replaced.
        "CONN_HEALTH_CHECKS": False,
        "TEST": {"NAME": env_str("EDITLOOP_TEST_DB", "test_editloop")},
    }


SECRET_KEY = env_str("SECRET_KEY", "dev-only-insecure-key-change-me-in-production")
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "django_celery_results",
    "annotation",
    "exports",
    "rewards",
    "training",
    "evaluation",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "editloop.urls"
WSGI_APPLICATION = "editloop.wsgi.application"

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
            ],
        },
    },
]

DATABASES = {
    "default": database_from_url(
        os.environ.get("DATABASE_URL") or services.ensure_embedded_postgres()
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(services.var_dir() / "static")))
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(services.var_dir() / "media")))
MODEL_ROOT = Path(env_str("MODEL_ROOT", str(services.var_dir() / "models")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise expects it even before collectstatic
WHITENOISE_USE_FINDERS = True  # serve static/ straight from the source tree as well

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "queue"
LOGOUT_REDIRECT_URL = "login"

# Uploads: an archive of images can be large; Django streams it to a temp file.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 5 * 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
IMPORT_MAX_ARCHIVE_BYTES = env_int("IMPORT_MAX_ARCHIVE_BYTES", 2 * 1024**3)
IMAGE_MAX_PIXELS = env_int("IMAGE_MAX_PIXELS", 40_000_000)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "annotation.authentication.CachedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "login": env_str("LOGIN_THROTTLE_RATE", "10/min"),
    },
    # editloop.errors.RequestInvalid → 400 {field: [messages]}; the rest as DRF answers it.
    "EXCEPTION_HANDLER": "editloop.errors.api_exception_handler",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "EditLoop API",
    "DESCRIPTION": "Rank and score image-edit variants; export preference data.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Offline machines: Swagger UI assets come from the sidecar package, not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

TOKEN_CACHE_SECONDS = env_float("TOKEN_CACHE_SECONDS", 10.0)

# Failed logins are counted per username and per client address (see annotation/throttling.py).
LOGIN_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 10)
LOGIN_FAILURE_WINDOW_SECONDS = env_int("LOGIN_FAILURE_WINDOW_SECONDS", 300)

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or services.ensure_embedded_redis()
CELERY_RESULT_BACKEND = "django-db"


def cache_url_for(broker_url: str) -> str:
    if broker_url.startswith("redis+socket://"):
        return "unix://" + broker_url.removeprefix("redis+socket://")
    return broker_url


# Login throttling and other short-lived counters live in Redis, next to the broker.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env_str("CACHE_URL", cache_url_for(CELERY_BROKER_URL)),
        "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "editloop"),
    }
}
CELERY_RESULT_EXTENDED = True
# Queue names are settings so that several deployments (or a test) can share one broker.
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_DEFAULT_QUEUE", "default")
CELERY_GPU_QUEUE = env_str("CELERY_GPU_QUEUE", "gpu")
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Training and generation go to the `gpu` queue (a worker on the GPU machine consumes it).
CELERY_TASK_ROUTES = {
    "rewards.retrain": {"queue": CELERY_GPU_QUEUE},
    "rewards.score_variants": {"queue": CELERY_GPU_QUEUE},
    "training.finetune": {"queue": CELERY_GPU_QUEUE},
    "training.generate": {"queue": CELERY_GPU_QUEUE},
}
# Schedules are copied into django-celery-beat's tables on start: edit them in the admin.
CELERY_BEAT_SCHEDULE = {
    "expire-stale-leases": {
        "task": "annotation.expire_leases",
        "schedule": timedelta(minutes=1),
    },
    "retrain-reward-models-when-due": {
        "task": "rewards.retrain_when_due",
        "schedule": timedelta(minutes=env_int("REWARD_CHECK_MINUTES", 5)),
    },
    "requeue-stalled-reward-runs": {
        "task": "rewards.requeue_stalled_runs",
        "schedule": timedelta(minutes=1),
    },
    "quality-checks": {
        "task": "evaluation.quality_checks",
        "schedule": timedelta(minutes=env_int("QUALITY_CHECK_MINUTES", 10)),
    },
    "requeue-stalled-exports": {
        "task": "annotation.requeue_stalled_exports",
        "schedule": timedelta(minutes=1),
    },
    "requeue-stalled-training-jobs": {
        "task": "training.requeue_stalled_jobs",
        "schedule": timedelta(minutes=1),
    },
}

# A running job whose heartbeat is older than this is taken for dead (killed worker).
JOB_HEARTBEAT_TIMEOUT_SECONDS = env_int("JOB_HEARTBEAT_TIMEOUT_SECONDS", 120)
# Reward-model versions, their checkpoints and the frozen-feature cache live here.
REWARD_MODEL_ROOT = MODEL_ROOT / "rewards"
# `tiny` (random init, for tests and the demo) or the path of a local BLIP checkpoint.
REWARD_BASE = env_str("REWARD_BASE", "tiny")
# Below these a retrain ends `skipped` and says how many judgements it needs.
REWARD_MIN_TRAIN_JUDGEMENTS = env_int("REWARD_MIN_TRAIN_JUDGEMENTS", 20)
REWARD_MIN_VAL_JUDGEMENTS = env_int("REWARD_MIN_VAL_JUDGEMENTS", 3)
# Where the gpu-queue worker trains and scores: auto (CUDA when the worker has it, else the
# CPU), cpu, cuda, cuda:N. bf16 autocast on CUDA.
REWARD_DEVICE = env_device("REWARD_DEVICE", "auto")
# Edits per scoring forward pass; unset: 256 on CUDA, 16 on the CPU (rewards/device.py).
REWARD_SCORING_BATCH = env_positive_int_or_auto("REWARD_SCORING_BATCH")
# Editor fine-tuning: `tiny` (random init, tests and the demo) or a local diffusers
# InstructPix2Pix pipeline directory; a run with fewer training examples is skipped.
FINETUNE_BASE = env_str("FINETUNE_BASE", "tiny")
FINETUNE_MIN_EXAMPLES = env_int("FINETUNE_MIN_EXAMPLES", 8)
# After a fine-tune, base and fine-tuned editors both edit this many test-split tasks.
FINETUNE_EVAL_TASKS = env_int("FINETUNE_EVAL_TASKS", 8)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "WARNING")},
}

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", False)
X_FRAME_OPTIONS = "DENY"
