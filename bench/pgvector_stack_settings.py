"""This project's settings, plus the pgvector bench's cluster as a second database and
bench/pgvector_stack.py's URLs: the same middleware, DRF authentication, rate limit and
renderer as the service's own views, in front of a pgvector query."""

from bench import pgvector_sql
from searchsite.settings import *  # noqa: F403

DATABASES = {**DATABASES, "pgvector": pgvector_sql.database()}  # noqa: F405
ROOT_URLCONF = "bench.pgvector_stack"
