"""The RPC layer's exceptions, so callers map failures without knowing Redis.

`RpcUnavailable` and `NoWorkerAvailable` mean "service unavailable" (HTTP 503);
`BadRequest` means the worker refused the input (HTTP 400, its message says why).
"""

from __future__ import annotations


class RpcError(Exception):
    """Base of every error raised by the RPC clients."""


class ProtocolError(RpcError, ValueError):
    """A message that does not follow the wire format (never trusted, never half-read)."""


class RpcUnavailable(RpcError):
    """Redis could not be reached: the call failed without reaching any worker."""


class NoWorkerAvailable(RpcError):
    """No worker answered before the deadline."""


class NoShardAvailable(NoWorkerAvailable):
    """Not a single search shard answered before the deadline."""


class RemoteError(RpcError):
    """A worker answered with an error."""


class BadRequest(RemoteError):
    """A worker refused the input itself (for example an unreadable image)."""
