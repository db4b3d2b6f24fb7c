"""Fetching image bytes from a URL without becoming a proxy into our own network.

Standard library only (http.client): each hop of a request is checked before any
connection is made. The scheme must be http or https; the host is resolved once
and every address it resolves to must be public, and the connection then goes to
one of those checked addresses (not to the name again, so a DNS answer that
changes between the check and the connect cannot smuggle in a private address).
TLS still verifies the certificate against the host name. Redirects are followed
by hand, at most `max_redirects`, each new location checked the same way. The
body is streamed and reading stops as soon as it passes the byte cap.

`allow_private` (IMAGE_URL_ALLOW_PRIVATE) lets private and loopback addresses
through, for tests and a local catalog; link-local (cloud metadata endpoints),
multicast, reserved and unspecified addresses are refused even then.
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import socket
import ssl
import time
from dataclasses import dataclass, field
from urllib.parse import SplitResult, urljoin, urlsplit

from workers.encoding.errors import ImageRejected

_REDIRECTS = {301, 302, 303, 307, 308}
_CHUNK = 64 * 1024

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def _env_bool(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class UrlPolicy:
    """How a URL may be fetched. Defaults from IMAGE_URL_* environment variables."""

    allow_private: bool = field(default_factory=lambda: _env_bool("IMAGE_URL_ALLOW_PRIVATE"))
    connect_timeout: float = field(
        default_factory=lambda: _env_float("IMAGE_URL_CONNECT_TIMEOUT", 5.0)
    )
    read_timeout: float = field(default_factory=lambda: _env_float("IMAGE_URL_READ_TIMEOUT", 10.0))
    total_timeout: float = field(
        default_factory=lambda: _env_float("IMAGE_URL_TOTAL_TIMEOUT", 30.0)
    )
    max_redirects: int = 3
    user_agent: str = "visual-product-search-image-fetcher/1"


def check_address(address: IPAddress, *, allow_private: bool) -> None:
    """Raise ImageRejected unless `address` may be connected to."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    always_refused = (
        address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or (address.is_reserved and not address.is_loopback)  # ::1 sits in reserved ::/8
    )
    if always_refused:
        raise ImageRejected("private_address", f"{address} is not a routable public address")
    if address.is_global:
        return
    if allow_private and (address.is_private or address.is_loopback):
        return
    raise ImageRejected("private_address", f"{address} is a private or loopback address")


def resolve_checked(host: str, port: int, *, allow_private: bool) -> list[IPAddress]:
    """Every address of `host`, all of them checked; refused if any one is not allowed.

    Refusing when any address is private (rather than picking a public one) keeps
    a name that mixes public and private answers out entirely.
    """
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            transient = exc.errno in (socket.EAI_AGAIN, getattr(socket, "EAI_SYSTEM", None))
            raise ImageRejected("dns_error", f"cannot resolve {host}: {exc}", transient) from None
        addresses = []
        for info in infos:
            address = ipaddress.ip_address(info[4][0].split("%", 1)[0])
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise ImageRejected("dns_error", f"{host} has no address", True)
    for address in addresses:
        check_address(address, allow_private=allow_private)
    return addresses


def _parse(url: str) -> tuple[SplitResult, str, int]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ImageRejected("bad_url", f"malformed URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ImageRejected(
            "bad_url", f"only http and https URLs are fetched, not {parts.scheme!r}"
        )
    if not parts.hostname:
        raise ImageRejected("bad_url", "the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise ImageRejected("bad_url", "credentials in URLs are not accepted")
    return parts, parts.hostname, port or (443 if parts.scheme == "https" else 80)


class _PinnedConnectionMixin:
    """Connects to a given, already checked address instead of resolving the host
    again; the Host header and TLS server name still use the host name."""

    pinned: IPAddress
    read_timeout: float

    def connect(self) -> None:
        pinned, port = str(self.pinned), self.port  # type: ignore[attr-defined]
        self._create_connection = (  # type: ignore[attr-defined]
            lambda _addr, timeout, source: socket.create_connection((pinned, port), timeout, source)
        )
        super().connect()  # type: ignore[misc]
        self.sock.settimeout(self.read_timeout)  # type: ignore[attr-defined]


class _PinnedHTTP(_PinnedConnectionMixin, http.client.HTTPConnection):
    pass


class _PinnedHTTPS(_PinnedConnectionMixin, http.client.HTTPSConnection):
    pass


def _connect(
    parts: SplitResult, host: str, port: int, addresses: list[IPAddress], policy: UrlPolicy
) -> http.client.HTTPConnection:
    """A connection to the first checked address that accepts one."""
    last_error: OSError | None = None
    for address in addresses:
        conn: http.client.HTTPConnection
        if parts.scheme == "https":
            conn = _PinnedHTTPS(
                host, port, timeout=policy.connect_timeout, context=ssl.create_default_context()
            )
        else:
            conn = _PinnedHTTP(host, port, timeout=policy.connect_timeout)
        conn.pinned = address  # type: ignore[attr-defined]
        conn.read_timeout = policy.read_timeout  # type: ignore[attr-defined]
        try:
            conn.connect()
        except ssl.SSLCertVerificationError as exc:
            conn.close()
            raise ImageRejected("tls_error", f"{host}: {exc.verify_message}") from None
        except TimeoutError:
            conn.close()
            last_error = TimeoutError(f"connecting to {address} timed out")
        except OSError as exc:
            conn.close()
            last_error = exc
        else:
            return conn
    if isinstance(last_error, TimeoutError):
        raise ImageRejected("timeout", f"{host}: {last_error}", True)
    raise ImageRejected("connect_error", f"cannot connect to {host}: {last_error}", True)


def _read_capped(
    response: http.client.HTTPResponse, max_bytes: int, deadline: float, url: str
) -> bytes:
    length = response.getheader("Content-Length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise ImageRejected(
            "too_large", f"{url} announces {length} bytes, the limit is {max_bytes}"
        )
    chunks: list[bytes] = []
    total = 0
    while True:
        if time.monotonic() > deadline:
            raise ImageRejected("timeout", f"{url} took too long to download", True)
        chunk = response.read1(_CHUNK)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > max_bytes:
            raise ImageRejected("too_large", f"{url} is over {max_bytes} bytes")
        chunks.append(chunk)


def fetch_url_bytes(url: str, *, max_bytes: int, policy: UrlPolicy | None = None) -> bytes:
    """The body of `url` under `policy`, at most `max_bytes` long, or ImageRejected."""
    policy = policy or UrlPolicy()
    deadline = time.monotonic() + policy.total_timeout
    current = url
    for _hop in range(policy.max_redirects + 1):
        parts, host, port = _parse(current)
        addresses = resolve_checked(host, port, allow_private=policy.allow_private)
        conn = _connect(parts, host, port, addresses, policy)
        try:
            path = parts.path or "/"
            if parts.query:
                path += "?" + parts.query
            conn.request(
                "GET",
                path,
                headers={
                    "User-Agent": policy.user_agent,
                    "Accept": "image/*",
                    "Accept-Encoding": "identity",
                },
            )
            response = conn.getresponse()
            status = response.status
            if status in _REDIRECTS:
                location = response.getheader("Location")
                if not location:
                    raise ImageRejected("http_error", f"{current}: redirect without a Location")
                current = urljoin(current, location)
                continue
            if status != 200:
                transient = status >= 500 or status in (408, 429)
                raise ImageRejected("http_error", f"{current}: HTTP {status}", transient)
            return _read_capped(response, max_bytes, deadline, current)
        except TimeoutError:
            raise ImageRejected("timeout", f"{current}: no answer in time", True) from None
        except (http.client.HTTPException, OSError) as exc:
            raise ImageRejected(
                "connect_error", f"{current}: {type(exc).__name__}: {exc}", True
            ) from None
        finally:
            conn.close()
    raise ImageRejected("too_many_redirects", f"{url}: more than {policy.max_redirects} redirects")
