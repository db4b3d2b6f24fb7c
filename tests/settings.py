"""The suite's settings: the project's own, with two shards, so that every search the tests
make fans out and merges (a deployment's default is one shard per host)."""

import os

# Set in the environment, not only here: the workers the tests start inherit it.
os.environ.setdefault("SEARCH_SHARDS", "2")

from searchsite.settings import *  # noqa: F403
