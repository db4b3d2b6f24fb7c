"""Wire format of the query RPC: msgpack maps carrying raw little-endian arrays, never pickle.

Whatever is read from Redis is untrusted: decoding checks every field's presence, type,
size and shape against `ProtocolLimits` and raises `ProtocolError` on anything else, so a
worker never acts on half-understood input and a client never merges a corrupt reply.
`messages` holds what travels, `encoding` writes it, `decoding` reads and checks it.
"""

from workers.config import ProtocolLimits
from workers.rpc.errors import ProtocolError
from workers.rpc.protocol.decoding import decode_reply, decode_request
from workers.rpc.protocol.encoding import encode_reply, encode_request
from workers.rpc.protocol.messages import (
    DEFAULT_LIMITS,
    DONE_SUFFIX,
    ERROR_BAD_REQUEST,
    ERROR_INTERNAL,
    ERROR_KINDS,
    KIND_ENCODE_IMAGE,
    KIND_ENCODE_TEXT,
    KIND_SEARCH,
    MAX_EXPECT,
    REPLY_KEY_PREFIX,
    VERSION,
    Embedding,
    ImageQuery,
    Reply,
    ReplyPayload,
    Request,
    RequestPayload,
    SearchHits,
    SearchQuery,
    TextQuery,
)

__all__ = [
    "DEFAULT_LIMITS",
    "DONE_SUFFIX",
    "ERROR_BAD_REQUEST",
    "ERROR_INTERNAL",
    "ERROR_KINDS",
    "KIND_ENCODE_IMAGE",
    "KIND_ENCODE_TEXT",
    "KIND_SEARCH",
    "MAX_EXPECT",
    "REPLY_KEY_PREFIX",
    "VERSION",
    "Embedding",
    "ImageQuery",
    "ProtocolError",
    "ProtocolLimits",
    "Reply",
    "ReplyPayload",
    "Request",
    "RequestPayload",
    "SearchHits",
    "SearchQuery",
    "TextQuery",
    "decode_reply",
    "decode_request",
    "encode_reply",
    "encode_request",
]
