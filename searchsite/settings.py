"""Settings, all from environment variables, with working local defaults.

Local runs need nothing set (a running `make run` is found through data/stack.env).
Production sets DEBUG=false, which makes SECRET_KEY and ALLOWED_HOSTS mandatory and turns
on the secure-cookie and HTTPS settings.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import environ
from corsheaders.defaults import default_headers
from django.core.exceptions import ImproperlyConfigured

from searchsite.media_storage import FILESYSTEM_BACKEND, media_storage
from searchsite.sentry import init_sentry
from searchsite.stack_env import read_stack_env, stack_env_path
from workers.config import ConfigError, WorkerConfig
from workers.observability.logs import logging_config
from workers.queues import Queue
from workers.rpc.redis_url import RedisUrl, RedisUrlError, celery_url, parse_redis_url

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
# While `make run` runs, DATA_DIR/stack.env says how to reach its stack: commands and extra
# workers started from another shell join it (searchsite/stack_env.py; the environment wins;
# STACK_ENV=<file> reads another, STACK_ENV= none). Never in a test session: tests must not
# join a developer's running stack.
STACK_ENV_FILE = stack_env_path(BASE_DIR)
if "pytest" not in sys.modules:
    read_stack_env(STACK_ENV_FILE)

# What the worker packages read (image caps, RPC deadlines and limits, FAISS threads, shard
# upkeep, logs...): parsed by their own Django-free reader (workers/config/), so settings
# and workers agree on every name and default; the settings below that share a name are
# taken from it. Passed to the workers' objects by the tasks and bootsteps.
try:
    WORKER_CONFIG = WorkerConfig.from_env(os.environ)
except ConfigError as exc:
    raise ImproperlyConfigured(str(exc)) from None

DEBUG = env.bool("DEBUG", default=True)
DATA_DIR = Path(env.str("DATA_DIR", default=str(BASE_DIR / "data")))

if DEBUG:
    SECRET_KEY = env.str(
        "SECRET_KEY", default="insecure-local-development-key-never-use-in-production"
    )
else:
    try:
        SECRET_KEY = env.str("SECRET_KEY")
    except ImproperlyConfigured:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DEBUG is off (production): "
            "export SECRET_KEY=<a long random string>"
        ) from None
    if len(SECRET_KEY) < 50:
        raise ImproperlyConfigured("SECRET_KEY must be at least 50 characters in production")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
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
    "drf_spectacular_sidecar",  # Swagger UI's and Redoc's files, served from here: no CDN
    "corsheaders",
    "catalog",
]

MIDDLEWARE = [
    "catalog.middleware.ApiServerErrorMiddleware",  # a 500 under /api/ is JSON, DEBUG or not
    "catalog.middleware.RequestIdMiddleware",
    "catalog.middleware.AccessLogMiddleware",  # the web's access log, secrets redacted
    "catalog.middleware.MetricsMiddleware",
    # Before anything that can answer on its own (an HTTPS or slash redirect breaks a
    # preflight): it answers preflights under /api/ itself, before any view or throttle.
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "searchsite.urls"
WSGI_APPLICATION = "searchsite.wsgi.application"

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

# --- Database: SQLite in the data dir unless DATABASE_URL says otherwise ---
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'db.sqlite3'}")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # The default database lives in DATA_DIR: make sure it can be created.
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # Web, encode and shard processes share the file: WAL lets readers run beside the
    # writer, IMMEDIATE transactions queue writers instead of failing on lock upgrades.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        timeout=30,
        transaction_mode="IMMEDIATE",
        init_command="PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    )
DATABASES["default"].setdefault("TEST", {})
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

FORMS_URLFIELD_ASSUME_HTTPS = True
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(DATA_DIR / "static")))
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(DATA_DIR / "media")))
# Product images: MEDIA_ROOT by default, or MEDIA_STORAGE_URL=s3://bucket/prefix (with
# MEDIA_S3_ENDPOINT_URL, MEDIA_S3_REGION and boto3's credentials), see searchsite/media_storage.py.
STORAGES = {
    "default": media_storage(os.environ),
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
_MEDIA_ON_DISK = STORAGES["default"]["BACKEND"] == FILESYSTEM_BACKEND
if _MEDIA_ON_DISK and "OPTIONS" in STORAGES["default"]:  # file:///path names the folder
    MEDIA_ROOT = Path(STORAGES["default"]["OPTIONS"]["location"])
# The web serves MEDIA_ROOT itself; images in a bucket have the bucket's (signed) URLs.
SERVE_MEDIA = env.bool("SERVE_MEDIA", default=_MEDIA_ON_DISK)
# An encode worker that finds no stored file retries while the image row is younger than this
# (a fresh upload may still be replicating), then marks it `missing_file`; a storage that
# fails to answer is always retried (catalog/stored_files.py).
MEDIA_MISSING_AFTER_S = env.float("MEDIA_MISSING_AFTER_S", default=600.0)
# import_catalog reads local image paths only under this folder (relative ones from it).
IMPORT_ROOT = Path(env.str("IMPORT_ROOT", default=str(DATA_DIR / "import")))
# Uploads larger than this are streamed to a temporary file instead of memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=25 * 1024 * 1024)

# --- Redis: broker, cache, update logs, RPC ---
# redis://[user:password@]host:port/db, or through Sentinel:
# redis+sentinel://[user:password@]host1:26379,host2:26379/<master-name>[/<db>]
# (workers/rpc/redis_url.py); the sentinels' own password: ?sentinel_password= in the
# URL, else SENTINEL_PASSWORD (read there, by every process that connects).
REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")


def _redis_url(name: str, url: str) -> RedisUrl:
    try:
        return parse_redis_url(url)
    except RedisUrlError as exc:
        raise ImproperlyConfigured(f"{name}: {exc}") from None


_redis_url("REDIS_URL", REDIS_URL)
# Update log appends wait (WAIT) until this many replicas hold the entry, else fail the
# append (the encode task retries): with asynchronous replication a failover may lose
# an entry the master acknowledged but had not yet sent. 0: no wait.
REDIS_MIN_REPLICAS_ACK = env.int("REDIS_MIN_REPLICAS_ACK", default=0)
REDIS_REPLICAS_ACK_TIMEOUT_MS = env.int("REDIS_REPLICAS_ACK_TIMEOUT_MS", default=500)
if REDIS_MIN_REPLICAS_ACK < 0 or REDIS_REPLICAS_ACK_TIMEOUT_MS <= 0:
    raise ImproperlyConfigured(
        "REDIS_MIN_REPLICAS_ACK must be 0 or more, REDIS_REPLICAS_ACK_TIMEOUT_MS more than 0"
    )
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        # A list: Django splits a string on ',' (several servers), a Sentinel URL's separator.
        "LOCATION": [REDIS_URL],
        "KEY_PREFIX": "searchsite",
        "OPTIONS": {
            "socket_timeout": 1.0,
            "socket_connect_timeout": 1.0,
            "pool_class": "workers.rpc.redis_url.UrlConnectionPool",  # Sentinel URLs too
        },
    }
}

# --- Celery (read by searchsite/celery.py through the CELERY_ namespace) ---
# A Sentinel URL becomes kombu's sentinel://...;sentinel://... plus transport options.
CELERY_BROKER_URL, _broker_options = celery_url(
    _redis_url("CELERY_BROKER_URL", env.str("CELERY_BROKER_URL", default=REDIS_URL))
)
CELERY_RESULT_BACKEND, CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = celery_url(
    _redis_url("CELERY_RESULT_BACKEND", env.str("CELERY_RESULT_BACKEND", default=REDIS_URL))
)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_DEFAULT_QUEUE = Queue.DEFAULT.value
# Long GPU tasks: acknowledge after the work is done and hand the task back when a
# worker dies mid-task, so a killed worker loses nothing.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=600)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=900)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# With acks_late on Redis, an unacknowledged task is redelivered after this many
# seconds; it must exceed the longest task.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=1800),
    **_broker_options,
}
CELERY_TASK_ROUTES = {
    "workers.tasks.encoding.*": {"queue": Queue.ENCODE.value},
    "workers.tasks.maintenance.*": {"queue": Queue.INDEX.value},
}
# Encode tasks hold a lease per product, renewed 4 times per TTL while they work; the
# sweep re-sends products left `encoding` without one (a killed worker) within about
# TTL + sweep period, and `pending` ones older than ENCODE_PENDING_AFTER_S while no
# encode task is queued (their task was never sent).
ENCODE_LEASE_TTL_S = env.float("ENCODE_LEASE_TTL_S", default=20.0)
ENCODE_STALE_EVERY_S = env.float("ENCODE_STALE_EVERY_S", default=15.0)
ENCODE_PENDING_AFTER_S = env.float("ENCODE_PENDING_AFTER_S", default=60.0)
# An encode task whose images failed for a passing reason (a storage or URL not answering,
# a file not replicated yet) retries after this many seconds, doubling up to the max.
ENCODE_RETRY_BACKOFF_S = env.float("ENCODE_RETRY_BACKOFF_S", default=2.0)
ENCODE_RETRY_BACKOFF_MAX_S = env.float("ENCODE_RETRY_BACKOFF_MAX_S", default=60.0)
# Reconciliation compares every live replica's ids and filter attributes with the
# database (catalog/services/reconcile.py) this often, waits this long for the replicas'
# digests, and reports products pending or encoding for longer than RECONCILE_STUCK_AFTER_S.
RECONCILE_EVERY_S = env.float("RECONCILE_EVERY_S", default=300.0)
RECONCILE_TIMEOUT_S = env.float("RECONCILE_TIMEOUT_S", default=30.0)
RECONCILE_STUCK_AFTER_S = env.float("RECONCILE_STUCK_AFTER_S", default=900.0)
# Periodic maintenance (shard compaction and snapshots run inside each replica:
# workers/serving/upkeep.py).
CELERY_BEAT_SCHEDULE = {
    "maybe-rebuild": {
        "task": "workers.tasks.maintenance.maybe_rebuild",
        "schedule": env.float("REBUILD_CHECK_S", default=600.0),
        "options": {"queue": Queue.INDEX.value, "expires": 300},
    },
    "recall-probe": {
        "task": "workers.tasks.maintenance.recall_probe",
        "schedule": env.float("RECALL_PROBE_EVERY_S", default=3600.0),
        "options": {"queue": Queue.INDEX.value, "expires": 1800},
    },
    "encode-stale": {
        "task": "workers.tasks.encoding.encode_stale",
        "schedule": ENCODE_STALE_EVERY_S,
        # The default queue: a sweep must not wait behind a backlog of encode batches.
        "options": {"queue": Queue.DEFAULT.value, "expires": ENCODE_STALE_EVERY_S},
    },
    "reconcile": {
        "task": "workers.tasks.maintenance.reconcile_shards",
        "schedule": RECONCILE_EVERY_S,
        # A run that waited a whole period is dropped: the next one is due anyway.
        "options": {"queue": Queue.INDEX.value, "expires": RECONCILE_EVERY_S},
    },
}
RECALL_PROBE_QUERIES = env.int("RECALL_PROBE_QUERIES", default=50)
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_TASK_SEND_SENT_EVENT = True

# --- Search: shards, index files, the CLIP model ---
# One shard per host: on one host more shards only add hops and deeper searches (README,
# "How many shards"); shard to spread a catalog over hosts.
SEARCH_SHARDS = env.int("SEARCH_SHARDS", default=1)
# "auto" picks the index kind by shard size (workers/index/spec.py); or a FAISS factory string.
INDEX_SPEC = env.str("INDEX_SPEC", default="auto")
# Most search requests a shard answers with one FAISS call.
SEARCH_BATCH_CAP = env.int("SEARCH_BATCH_CAP", default=64)
# This host's own working directory for index state (cached artifacts, re-rank files):
# never shared between hosts. What hosts share is the artifact store below.
INDEX_DIR = Path(env.str("INDEX_DIR", default=str(DATA_DIR / "index")))
# Builds and snapshots, with checksums and the log position each covers: file:// or s3://.
INDEX_STORE_URL = env.str("INDEX_STORE_URL", default=(DATA_DIR / "index-store").resolve().as_uri())
# Snapshots of the current build kept in the store; younger artifacts are never collected.
INDEX_STORE_KEEP_SNAPSHOTS = env.int("INDEX_STORE_KEEP_SNAPSHOTS", default=2)
INDEX_STORE_GRACE_S = env.float("INDEX_STORE_GRACE_S", default=600.0)
# Replica heartbeats: a replica silent for REPLICA_TTL_S is gone (no traffic, no trim floor).
REPLICA_HEARTBEAT_S = env.float("REPLICA_HEARTBEAT_S", default=2.0)
REPLICA_TTL_S = env.float("REPLICA_TTL_S", default=10.0)
# The host name replicas register under (defaults to the machine's).
REPLICA_HOST = env.str("REPLICA_HOST", default="") or None
CLIP_MODEL = env.str("CLIP_MODEL", default="openai/clip-vit-base-patch32")
# Offline fallback: a tiny random CLIP built here when CLIP_MODEL cannot be loaded.
CLIP_FALLBACK_DIR = Path(
    env.str("CLIP_FALLBACK_DIR", default=str(DATA_DIR / "models" / "tiny-clip"))
)
CLIP_BF16 = env.bool("CLIP_BF16", default=False)
CLIP_COMPILE = env.bool("CLIP_COMPILE", default=False)
ENCODE_BATCH_SIZE = env.int("ENCODE_BATCH_SIZE", default=32)
# An encode task also takes up to this many other pending products into its batch.
ENCODE_BATCH_PRODUCTS = env.int("ENCODE_BATCH_PRODUCTS", default=64)
FLOWER_URL = env.str("FLOWER_URL", default="http://127.0.0.1:5555/")

# Query path: deadlines of the RPC calls, the query-embedding cache, and whether
# the web process encodes queries itself (small deployments) instead of asking
# the encode workers.
SEARCH_TIMEOUT_S = WORKER_CONFIG.rpc.search_timeout_s
ENCODE_TIMEOUT_S = WORKER_CONFIG.rpc.encode_timeout_s
QUERY_CACHE_TTL_S = env.int("QUERY_CACHE_TTL_S", default=24 * 3600)
# Search-result cards and stored vectors in Redis (catalog.product_cache): writes forget
# them; the TTL bounds how long a card cached by a search racing a write can stay stale.
SEARCH_CARD_TTL_S = env.int("SEARCH_CARD_TTL_S", default=300)
SEARCH_ENCODE_IN_PROCESS = env.bool("SEARCH_ENCODE_IN_PROCESS", default=False)
# Text search ranks this many products per side (lexical, CLIP) and pages within them:
# the deepest result a shopper can page to (at most RPC_MAX_K, one shard call's k).
SEARCH_MAX_DEPTH = env.int("SEARCH_MAX_DEPTH", default=1000)
# A word in more products than this is common: text search counts it on the candidates
# of the query's other words instead of ranking all its hits (catalog/lexical/).
SEARCH_COMMON_WORD_HITS = env.int("SEARCH_COMMON_WORD_HITS", default=2000)

# --- Uploads and remote images ---
# The byte cap, and what a decode and the resize to the model's input may cost (a 300000x1
# strip is 0.3 Mpx but resizes to 67200000x224): checked from the header in the web process
# and again in the encoders, from the same worker configuration.
IMAGE_MAX_BYTES = WORKER_CONFIG.images.max_bytes
IMAGE_MAX_PIXELS = WORKER_CONFIG.images.max_pixels
IMAGE_MAX_SIDE = WORKER_CONFIG.images.max_side
IMAGE_MAX_ASPECT = WORKER_CONFIG.images.max_aspect
IMAGE_MAX_RESIZED_PIXELS = WORKER_CONFIG.images.max_resized_pixels
IMAGE_INPUT_SIDE = WORKER_CONFIG.images.input_side  # the model's shortest side
IMAGE_URL_ALLOW_PRIVATE = WORKER_CONFIG.urls.allow_private
# One budget for a whole URL fetch (DNS, connect, headers, body, redirects), the
# connect's, and the longest wait for one read.
IMAGE_URL_TOTAL_TIMEOUT = WORKER_CONFIG.urls.total_timeout
IMAGE_URL_CONNECT_TIMEOUT = WORKER_CONFIG.urls.connect_timeout
IMAGE_URL_READ_TIMEOUT = WORKER_CONFIG.urls.read_timeout
# A search by `image_url` holds a web thread and a shopper while it fetches: a shorter budget.
SEARCH_IMAGE_URL_TIMEOUT = env.float("SEARCH_IMAGE_URL_TIMEOUT", default=5.0)

# --- REST API ---
# Reverse proxies in front of the web (nginx, a load balancer), each appending the address
# it saw to X-Forwarded-For. Rate limits (and the access log) take the client to be the
# address this many hops from the end; 0 (no proxy) takes the socket address and ignores
# X-Forwarded-For, which any client can write.
TRUSTED_PROXIES = env.int("TRUSTED_PROXIES", default=0)
if TRUSTED_PROXIES < 0:
    raise ImproperlyConfigured("TRUSTED_PROXIES must be 0 or more (the number of proxies)")
REST_FRAMEWORK = {
    "NUM_PROXIES": TRUSTED_PROXIES,  # DRF's default, None, trusts X-Forwarded-For blindly
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["catalog.api.permissions.IsStaffOrReadOnly"],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    # JSON nested past 64 levels is a 400 (catalog/api/parsers.py), not a RecursionError.
    "DEFAULT_PARSER_CLASSES": [
        "catalog.api.parsers.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_RENDERER_CLASSES": [
        "catalog.api.renderers.FastJSONRenderer",  # DRF's JSON, written by orjson
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PAGINATION_CLASS": "catalog.api.pagination.Pagination",
    "PAGE_SIZE": 20,
    # DRF's anonymous and per-user limits, except that OPTIONS (preflights) spend nothing.
    "DEFAULT_THROTTLE_CLASSES": [
        "catalog.api.throttles.AnonThrottle",
        "catalog.api.throttles.UserThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("THROTTLE_ANON", default="120/minute"),
        "user": env.str("THROTTLE_USER", default="1200/minute"),
        "search": env.str("THROTTLE_SEARCH", default="60/minute"),
    },
    "DEFAULT_SCHEMA_CLASS": "catalog.api.schema.ApiSchema",
    "EXCEPTION_HANDLER": "catalog.api.errors.exception_handler",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Visual product search API",
    "DESCRIPTION": "Product catalog and text / image / similar-product search.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "catalog.api.schema.close_marked_bodies",
    ],
    # /api/docs/ loads Swagger UI from this site's static files (drf-spectacular-sidecar),
    # never from a CDN: it works offline and runs no third-party script.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- CORS: which other sites' pages may call the API from a browser (django-cors-headers) ---
# Origins as scheme://host[:port], comma-separated; none by default: same origin only
# (`manage.py check` refuses an origin with a path or without a scheme).
CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", default=[])
CORS_URLS_REGEX = r"^/api/"  # the admin, the pages and /metrics never answer other origins
# No cookies cross-origin (CORS_ALLOW_CREDENTIALS stays off): such callers send a token.
CORS_ALLOW_HEADERS = (*default_headers, "x-request-id")
# What the calling page may read: the id to quote in a report, and the wait after a 429.
CORS_EXPOSE_HEADERS = ["X-Request-ID", "Retry-After"]

# --- Security: on by default when DEBUG is off ---
SECURE = not DEBUG
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=SECURE)
# Only a proxy we run may say the client used HTTPS: without one, a client could write the
# header itself and pass as secure.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if TRUSTED_PROXIES else None
SESSION_COOKIE_SECURE = SECURE
CSRF_COOKIE_SECURE = SECURE
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000 if SECURE else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE
SECURE_HSTS_PRELOAD = SECURE
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# --- Observability ---
# Prometheus multiprocess mode: every process of the host writes its metrics under this
# directory and /metrics serves the sum. Set before prometheus_client is first imported.
PROMETHEUS_MULTIPROC_DIR = Path(
    env.str("PROMETHEUS_MULTIPROC_DIR", default=str(DATA_DIR / "prometheus"))
)
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(PROMETHEUS_MULTIPROC_DIR))
# /metrics is public locally; in production staff or `Authorization: Bearer <METRICS_TOKEN>`.
METRICS_ALLOW_ANONYMOUS = env.bool("METRICS_ALLOW_ANONYMOUS", default=DEBUG)
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# Every log record carries the request id; LOG_FORMAT=json writes one JSON object a line.
# The same configuration serves gunicorn and the Celery processes (workers/observability/).
LOG_FORMAT = WORKER_CONFIG.observability.log_format
LOGGING = logging_config(LOG_FORMAT, WORKER_CONFIG.observability.log_level)
LOGGING_CONFIG = "workers.observability.logs.configure"
# --- end of Observability ---

# --- Error tracking: Sentry, off unless SENTRY_DSN is set (searchsite/sentry.py) ---
# Started here, so the web and every Celery process (they all load these settings) report.
SENTRY_DSN = env.str("SENTRY_DSN", default="")
SENTRY_ENVIRONMENT = env.str("SENTRY_ENVIRONMENT", default="development" if DEBUG else "production")
# The fraction of requests and tasks traced; 0 (the default) makes no spans at all.
SENTRY_TRACES_SAMPLE_RATE = env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0)
if not 0.0 <= SENTRY_TRACES_SAMPLE_RATE <= 1.0:
    raise ImproperlyConfigured("SENTRY_TRACES_SAMPLE_RATE must be from 0 to 1")
init_sentry(
    SENTRY_DSN, environment=SENTRY_ENVIRONMENT, traces_sample_rate=SENTRY_TRACES_SAMPLE_RATE
)
