"""A list of ids as a subquery bound to one parameter, for `pk__in`: a list prepares and
binds each id, which costs more than the query itself for a thousand ids."""

from __future__ import annotations

import json

from django.db import connections
from django.db.models.expressions import RawSQL


def id_list(using: str, ids: list[int]) -> RawSQL:
    """`ids` listed by a subquery: a JSON array on SQLite, an array on PostgreSQL."""
    if connections[using].vendor == "postgresql":
        return RawSQL("SELECT unnest(%s::bigint[])", (ids,))
    return RawSQL("SELECT value FROM json_each(%s)", (json.dumps(ids),))
