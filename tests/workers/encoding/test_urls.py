"""Fetching images by URL: a real HTTP server on loopback, allowed only by the policy."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from workers.encoding.encoder import ClipEncoder
from workers.encoding.images import (
    ImageLimits,
    ImageRejected,
    UrlPolicy,
    fetch_image_url,
)
from workers.encoding.pipeline import EncodedItem, FailedItem
from workers.encoding.urls import check_address, fetch_url_bytes

from .conftest import image_bytes

PNG = image_bytes("PNG", (40, 30))
LOCAL = UrlPolicy(allow_private=True, connect_timeout=2, read_timeout=2, total_timeout=10)


@dataclass
class Served:
    base: str
    port: int
    requests: list[tuple[str, str]] = field(default_factory=list)  # (path, Host header)


class _Handler(BaseHTTPRequestHandler):
    served: Served

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if "Content-Length" not in (headers or {}) and "Transfer-Encoding" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.served.requests.append((self.path, self.headers.get("Host", "")))
        path = self.path
        try:
            if path == "/img.png":
                self._send(200, PNG, {"Content-Type": "image/png"})
            elif path == "/img.png?size=large":
                self._send(200, PNG)
            elif path == "/text.jpg":
                self._send(200, b"<html>not an image</html>", {"Content-Type": "image/jpeg"})
            elif path.startswith("/redirect-to/"):
                self._send(302, headers={"Location": path.removeprefix("/redirect-to/")})
            elif path == "/relative-redirect":
                self._send(301, headers={"Location": "/img.png"})
            elif path == "/loop":
                self._send(302, headers={"Location": "/loop"})
            elif path == "/slow":
                time.sleep(1.5)
                self._send(200, PNG)
            elif path == "/drip":
                self.send_response(200)
                self.send_header("Content-Length", str(len(PNG)))
                self.end_headers()
                for i in range(0, len(PNG), 16):
                    self.wfile.write(PNG[i : i + 16])
                    self.wfile.flush()
                    time.sleep(0.1)
            elif path == "/endless":
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                chunk = b"x" * 8192
                for _ in range(64):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.write(b"0\r\n\r\n")
            elif path == "/announced-huge":
                self._send(200, PNG, {"Content-Length": str(10**9)})
            elif path == "/error":
                self._send(503, b"busy")
            elif path == "/missing":
                self._send(404, b"no")
            else:
                self._send(404)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up on purpose


@pytest.fixture(scope="module")
def server() -> Iterator[Served]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    port = httpd.server_address[1]
    served = Served(base=f"http://127.0.0.1:{port}", port=port)
    _Handler.served = served
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield served
    httpd.shutdown()
    httpd.server_close()


def _refused(url: str, policy: UrlPolicy, limits: ImageLimits | None = None) -> ImageRejected:
    with pytest.raises(ImageRejected) as info:
        fetch_image_url(url, limits=limits or ImageLimits(), policy=policy)
    return info.value


def test_local_server_allowed_by_policy(server: Served) -> None:
    loaded = fetch_image_url(f"{server.base}/img.png", policy=LOCAL)
    assert (loaded.format, loaded.width, loaded.height) == ("PNG", 40, 30)
    assert loaded.image.mode == "RGB"
    assert (
        fetch_url_bytes(f"{server.base}/img.png?size=large", max_bytes=10**6, policy=LOCAL) == PNG
    )


def test_host_name_is_sent_while_the_checked_address_is_dialled(server: Served) -> None:
    server.requests.clear()
    loaded = fetch_image_url(f"http://localhost:{server.port}/img.png", policy=LOCAL)
    assert loaded.width == 40
    assert server.requests == [("/img.png", f"localhost:{server.port}")]


def test_private_addresses_are_refused_before_connecting(server: Served) -> None:
    strict = UrlPolicy(allow_private=False)
    server.requests.clear()
    for url in (
        f"{server.base}/img.png",
        f"http://localhost:{server.port}/img.png",
        "http://10.1.2.3/a.jpg",
        "http://192.168.0.10/a.jpg",
        "http://[::1]/a.jpg",
        "http://[::ffff:127.0.0.1]/a.jpg",
        "http://100.64.0.1/a.jpg",
    ):
        error = _refused(url, strict)
        assert (error.reason_code, error.transient) == ("private_address", False), url
    assert server.requests == []


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata: link-local
        "http://0.0.0.0/a.jpg",
        "http://224.0.0.1/a.jpg",
        "http://240.0.0.1/a.jpg",
        "http://[fe80::1]/a.jpg",
    ],
)
def test_never_allowed_even_with_allow_private(url: str) -> None:
    assert _refused(url, LOCAL).reason_code == "private_address"


def test_redirects_are_followed_and_rechecked(server: Served) -> None:
    assert fetch_image_url(f"{server.base}/relative-redirect", policy=LOCAL).width == 40
    hop = f"{server.base}/redirect-to/{server.base}/img.png"
    assert fetch_image_url(hop, policy=LOCAL).width == 40

    to_metadata = f"{server.base}/redirect-to/http://169.254.169.254/latest/meta-data/"
    assert _refused(to_metadata, LOCAL).reason_code == "private_address"
    to_file = f"{server.base}/redirect-to/file:///etc/passwd"
    assert _refused(to_file, LOCAL).reason_code == "bad_url"
    error = _refused(f"{server.base}/loop", LOCAL)
    assert (error.reason_code, error.transient) == ("too_many_redirects", False)


def test_redirect_limit_counts_hops(server: Served) -> None:
    two_hops = f"{server.base}/redirect-to/{server.base}/relative-redirect"
    one = UrlPolicy(allow_private=True, max_redirects=1)
    assert _refused(two_hops, one).reason_code == "too_many_redirects"
    assert fetch_image_url(two_hops, policy=UrlPolicy(allow_private=True, max_redirects=2))


def test_timeouts_are_transient(server: Served) -> None:
    quick = UrlPolicy(allow_private=True, connect_timeout=1, read_timeout=0.3)
    error = _refused(f"{server.base}/slow", quick)
    assert (error.reason_code, error.transient) == ("timeout", True)
    # each read is fast, but the whole download is over the total budget
    dripping = UrlPolicy(allow_private=True, read_timeout=2, total_timeout=0.3)
    error = _refused(f"{server.base}/drip", dripping)
    assert (error.reason_code, error.transient) == ("timeout", True)


def test_http_errors(server: Served) -> None:
    error = _refused(f"{server.base}/error", LOCAL)
    assert (error.reason_code, error.transient) == ("http_error", True)
    assert "503" in error.message
    error = _refused(f"{server.base}/missing", LOCAL)
    assert (error.reason_code, error.transient) == ("http_error", False)


def test_connection_refused_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens on it once closed
    error = _refused(f"http://127.0.0.1:{port}/img.png", LOCAL)
    assert (error.reason_code, error.transient) == ("connect_error", True)


def test_size_cap_while_streaming(server: Served) -> None:
    small = ImageLimits(max_bytes=100_000)
    assert _refused(f"{server.base}/endless", LOCAL, small).reason_code == "too_large"
    assert _refused(f"{server.base}/announced-huge", LOCAL, small).reason_code == "too_large"


def test_downloaded_non_image_is_refused(server: Served) -> None:
    assert _refused(f"{server.base}/text.jpg", LOCAL).reason_code == "unsupported_format"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/a.jpg",
        "file:///etc/passwd",
        "not a url",
        "http:///a.jpg",
        "http://user:secret@example.com/a.jpg",
        "http://example.com:99999/a.jpg",
        "javascript:alert(1)",
    ],
)
def test_bad_urls(url: str) -> None:
    error = _refused(url, UrlPolicy())
    assert (error.reason_code, error.transient) == ("bad_url", False)


@pytest.mark.parametrize(
    ("address", "allow_private", "allowed"),
    [
        ("8.8.8.8", False, True),
        ("2606:4700:4700::1111", False, True),
        ("10.0.0.1", False, False),
        ("10.0.0.1", True, True),
        ("172.16.5.4", True, True),
        ("127.0.0.1", True, True),
        ("::1", True, True),
        ("fd00::1", True, True),
        ("fd00::1", False, False),
        ("::ffff:10.0.0.1", False, False),
        ("::ffff:8.8.8.8", False, True),
        ("169.254.169.254", True, False),
        ("fe80::1", True, False),
        ("0.0.0.0", True, False),
        ("::", True, False),
        ("239.1.1.1", True, False),
        ("255.255.255.255", True, False),
        ("100.64.1.1", True, False),
    ],
)
def test_address_rules(address: str, allow_private: bool, allowed: bool) -> None:
    ip = ipaddress.ip_address(address)
    if allowed:
        check_address(ip, allow_private=allow_private)
    else:
        with pytest.raises(ImageRejected):
            check_address(ip, allow_private=allow_private)


def test_policy_refuses_private_addresses_by_default() -> None:
    assert UrlPolicy().allow_private is False


def test_pipeline_over_urls_keeps_going_past_bad_ones(server: Served, encoder: ClipEncoder) -> None:
    policy = UrlPolicy(allow_private=True, connect_timeout=1, read_timeout=0.3)
    urls = [
        f"{server.base}/img.png",
        "http://169.254.169.254/latest/meta-data/",
        f"{server.base}/slow",
        f"{server.base}/text.jpg",
        f"{server.base}/relative-redirect",
    ]
    results = list(
        encoder.encode_image_sources(urls, lambda url: fetch_image_url(url, policy=policy))
    )
    assert [r.source for r in results] == urls
    kinds = [
        ("ok", None) if isinstance(r, EncodedItem) else (r.reason_code, r.transient)
        for r in results
        if isinstance(r, EncodedItem | FailedItem)
    ]
    assert kinds == [
        ("ok", None),
        ("private_address", False),
        ("timeout", True),
        ("unsupported_format", False),
        ("ok", None),
    ]
    first, last = results[0], results[-1]
    assert isinstance(first, EncodedItem)
    assert isinstance(last, EncodedItem)
    assert first.sha256 == last.sha256  # the same PNG through a redirect
