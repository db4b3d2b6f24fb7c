"""Secrets out of logged URLs: the values of credential-like query parameters.

A client may put a token in a query string (`?token=`, a presigned URL's signature);
the access log must not keep it. Parameter names are matched loosely (any name that
contains "token", "secret", ...), so a few harmless values may be hidden too.
"""

from __future__ import annotations

from urllib.parse import unquote_plus

REDACTED = "[redacted]"
# Whole names that are credentials on their own, and fragments that make any name one.
_NAMES = frozenset({"key", "auth", "sig", "code", "pass", "pwd", "jwt"})
_FRAGMENTS = (
    "token",
    "secret",
    "password",
    "passwd",
    "signature",
    "apikey",
    "api_key",
    "access_key",
    "credential",
    "session",
    "authorization",
)


def is_sensitive(name: str) -> bool:
    name = name.strip().lower().replace("-", "_")
    return name in _NAMES or any(fragment in name for fragment in _FRAGMENTS)


def redact_query(query: str) -> str:
    """`query` (a raw query string) with the values of sensitive parameters replaced by
    `[redacted]`; everything else kept byte for byte."""
    if not query:
        return query
    parts = []
    for part in query.split("&"):
        name, equals, _ = part.partition("=")
        if equals and is_sensitive(unquote_plus(name)):
            part = f"{name}={REDACTED}"
        parts.append(part)
    return "&".join(parts)
