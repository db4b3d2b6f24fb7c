"""Fetching image bytes from a URL without becoming a proxy into our own network.

Standard library only (http.client): each hop of a request is checked before any
connection is made. The scheme must be http or https; the host is resolved once
and every address it resolves to must be public, and the connection then goes to
one of those checked addresses (not to the name again, so a DNS answer that
changes between the check and the connect cannot smuggle in a private address).
TLS still verifies the certificate against the host name. Redirects are followed
by hand, at most `max_redirects`, each new location checked the same way. The
body is streamed and reading stops as soon as it passes the byte cap.

One deadline (`total_timeout`) covers the whole fetch, every hop included: the DNS
lookup waits at most the time left, the connect at most that too, and every single
read of the response (each header line http.client reads, each body chunk) is given
a socket timeout of the time left (or `read_timeout` between two reads, if less), so
a server dribbling header lines or body bytes cannot hold a fetch past its budget.

Refusals never show what a name resolved to: "the host of <url> is not a public
address", not the private IP behind it.

`allow_private` (IMAGE_URL_ALLOW_PRIVATE) lets private and loopback addresses
through, for tests and a local catalog; link-local (cloud metadata endpoints),
multicast, reserved and unspecified addresses are refused even then.
"""

from __future__ import annotations

import http.client
import io
import ipaddress
import socket
import ssl
import threading
import time
from urllib.parse import SplitResult, urljoin, urlsplit

from workers.config.encoding import UrlPolicy
from workers.encoding.errors import ImageRejected

_REDIRECTS = {301, 302, 303, 307, 308}
_CHUNK = 64 * 1024

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def check_address(address: IPAddress, *, allow_private: bool) -> None:
    """Raise ImageRejected unless `address` may be connected to (the message names no
    address: the caller says whose)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    always_refused = (
        address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or (address.is_reserved and not address.is_loopback)  # ::1 sits in reserved ::/8
    )
    if always_refused:
        raise ImageRejected("private_address", "not a public address")
    if address.is_global:
        return
    if allow_private and (address.is_private or address.is_loopback):
        return
    raise ImageRejected("private_address", "not a public address")


def _timed_out(what: str) -> ImageRejected:
    return ImageRejected("timeout", f"{what} did not answer within the time budget", True)


def _getaddrinfo(host: str, port: int, timeout: float) -> list[tuple]:
    """getaddrinfo, waited for at most `timeout` seconds (it has no timeout of its own; a
    lookup still running then is left to finish in its daemon thread)."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except Exception as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, name="url-dns", daemon=True)
    thread.start()
    thread.join(max(timeout, 0.0))
    if thread.is_alive():
        raise _timed_out(f"the name server for {host}")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["infos"]  # type: ignore[return-value]


def resolve_checked(
    host: str,
    port: int,
    *,
    allow_private: bool,
    url: str | None = None,
    timeout: float | None = None,
) -> list[IPAddress]:
    """Every address of `host`, all of them checked; refused if any one is not allowed.

    Refusing when any address is private (rather than picking a public one) keeps
    a name that mixes public and private answers out entirely. The refusal names the
    URL (or host), never the addresses it resolved to.
    """
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        try:
            if timeout is None:
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            else:
                infos = _getaddrinfo(host, port, timeout)
        except socket.gaierror as exc:
            transient = exc.errno in (socket.EAI_AGAIN, getattr(socket, "EAI_SYSTEM", None))
            raise ImageRejected("dns_error", f"cannot resolve {host}: {exc}", transient) from None
        addresses = []
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise ImageRejected("dns_error", f"{host} has no address", True)
    for address in addresses:
        try:
            check_address(address, allow_private=allow_private)
        except ImageRejected:
            raise ImageRejected(
                "private_address", f"the host of {url or host} is not a public address"
            ) from None
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


class _DeadlineReader(io.RawIOBase):
    """The response side of a socket where every read waits at most the time left before
    the deadline (and at most `read_timeout`): http.client reads headers line by line
    and the body chunk by chunk through this, so no sequence of slow reads outlives the
    budget."""

    def __init__(self, sock: socket.socket, deadline: float, read_timeout: float) -> None:
        super().__init__()
        self._sock = sock
        # The socket's own raw reader: it keeps the socket open until it is closed, as
        # http.client expects when it closes the connection before the body is read.
        self._raw = sock.makefile("rb", buffering=0)
        self._deadline = deadline
        self._read_timeout = read_timeout

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int | None:  # type: ignore[override]
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the time budget ran out")
        self._sock.settimeout(min(self._read_timeout, remaining))
        return self._raw.readinto(buffer)

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


class _DeadlineSocket:
    """A connected socket whose `makefile` (what HTTPResponse reads from) is deadline-bound;
    everything else goes to the socket itself."""

    def __init__(self, sock: socket.socket, deadline: float, read_timeout: float) -> None:
        self._sock = sock
        self._deadline = deadline
        self._read_timeout = read_timeout

    def makefile(self, mode: str = "rb", *args: object, **kwargs: object) -> io.BufferedReader:
        if mode != "rb":
            raise ValueError("only the response is read through this socket")
        return io.BufferedReader(_DeadlineReader(self._sock, self._deadline, self._read_timeout))

    def __getattr__(self, name: str) -> object:
        return getattr(self._sock, name)


class _PinnedHTTP(http.client.HTTPConnection):
    """Connects to a given, already checked address instead of resolving the host
    again; the Host header and TLS server name still use the host name. Once connected,
    every read of the response is bound by the fetch's deadline."""

    pinned: IPAddress
    read_timeout: float
    deadline: float

    def connect(self) -> None:
        pinned, port = str(self.pinned), self.port
        self._create_connection = lambda _addr, timeout, source: socket.create_connection(
            (pinned, port), timeout, source
        )
        # The connect and the TLS handshake (which CPython bounds as a whole by the
        # socket timeout) get at most the time left: `_connect` sets that timeout.
        super().connect()  # HTTPSConnection's for _PinnedHTTPS (the next in its MRO)
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the time budget ran out while connecting")
        sock = self.sock
        sock.settimeout(min(self.read_timeout, remaining))  # sending the request
        # http.client only calls makefile, sendall and close on its socket: the stand-in has them
        self.sock = _DeadlineSocket(sock, self.deadline, self.read_timeout)


class _PinnedHTTPS(_PinnedHTTP, http.client.HTTPSConnection):
    pass


def _connect(
    parts: SplitResult,
    host: str,
    port: int,
    addresses: list[IPAddress],
    policy: UrlPolicy,
    deadline: float,
) -> http.client.HTTPConnection:
    """A connection to the first checked address that accepts one, before the deadline."""
    last_error: OSError | None = None
    for address in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            last_error = TimeoutError()
            break
        timeout = min(policy.connect_timeout, remaining)
        conn: _PinnedHTTP
        if parts.scheme == "https":
            conn = _PinnedHTTPS(host, port, timeout=timeout, context=ssl.create_default_context())
        else:
            conn = _PinnedHTTP(host, port, timeout=timeout)
        conn.pinned = address
        conn.read_timeout = policy.read_timeout
        conn.deadline = deadline
        try:
            conn.connect()
        except ssl.SSLCertVerificationError as exc:
            conn.close()
            raise ImageRejected("tls_error", f"{host}: {exc.verify_message}") from None
        except TimeoutError as exc:
            conn.close()
            last_error = exc
        except OSError as exc:
            conn.close()
            last_error = exc
        else:
            return conn
    if isinstance(last_error, TimeoutError):
        raise _timed_out(host)
    # The OS error text ("Connection refused") names no address.
    reason = getattr(last_error, "strerror", None) or type(last_error).__name__
    raise ImageRejected("connect_error", f"cannot connect to {host}: {reason}", True)


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
            raise _timed_out(url)
        chunk = response.read1(_CHUNK)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > max_bytes:
            raise ImageRejected("too_large", f"{url} is over {max_bytes} bytes")
        chunks.append(chunk)


def fetch_url_bytes(url: str, *, max_bytes: int, policy: UrlPolicy | None = None) -> bytes:
    """The body of `url` under `policy`, at most `max_bytes` long, or ImageRejected.

    All of it (every hop's lookup, connect, request, headers and body) within
    `policy.total_timeout` seconds.
    """
    policy = policy or UrlPolicy()
    deadline = time.monotonic() + policy.total_timeout
    current = url
    for _hop in range(policy.max_redirects + 1):
        parts, host, port = _parse(current)
        addresses = resolve_checked(
            host,
            port,
            allow_private=policy.allow_private,
            url=current,
            timeout=deadline - time.monotonic(),
        )
        conn = _connect(parts, host, port, addresses, policy, deadline)
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
            raise _timed_out(current) from None
        except (http.client.HTTPException, OSError) as exc:
            if time.monotonic() >= deadline:
                raise _timed_out(current) from None
            raise ImageRejected(
                "connect_error", f"{current}: {type(exc).__name__}: {exc}", True
            ) from None
        finally:
            conn.close()
    raise ImageRejected("too_many_redirects", f"{url}: more than {policy.max_redirects} redirects")
