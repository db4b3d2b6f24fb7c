"""One time budget for a whole URL fetch, and refusals that do not leak DNS answers.

The servers here are real TCP servers on loopback that answer slowly on purpose: one
header line per second, or one body byte per second, for 20 s.
"""

from __future__ import annotations

import socket
import socketserver
import time
from collections.abc import Iterator

import pytest

from tests.support.servers import serving
from workers.encoding.images import ImageRejected, UrlPolicy
from workers.encoding.urls import fetch_url_bytes

from .conftest import image_bytes

PNG = image_bytes("PNG", (40, 30))
BUDGET = 2.0
SLACK = 2.0  # thread start-up and a loaded machine; far below the 20 s the servers dribble


class _Dribbler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        request_line = self.rfile.readline().decode("latin-1")
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        path = request_line.split(" ")[1] if " " in request_line else "/"
        try:
            if path == "/headers":
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                for i in range(20):
                    self.wfile.write(f"X-Pad-{i}: {'x' * 10}\r\n".encode())
                    self.wfile.flush()
                    time.sleep(1)
                self.wfile.write(f"Content-Length: {len(PNG)}\r\n\r\n".encode() + PNG)
            elif path == "/body":
                self.wfile.write(f"HTTP/1.1 200 OK\r\nContent-Length: {len(PNG)}\r\n\r\n".encode())
                for i in range(20):
                    self.wfile.write(PNG[i : i + 1])
                    self.wfile.flush()
                    time.sleep(1)
            elif path == "/redirect":  # a slow hop, then a slow second hop
                time.sleep(BUDGET * 0.6)
                self.wfile.write(b"HTTP/1.1 302 Found\r\nLocation: /redirect\r\n")
                self.wfile.write(b"Content-Length: 0\r\n\r\n")
            else:
                self.wfile.write(f"HTTP/1.1 200 OK\r\nContent-Length: {len(PNG)}\r\n\r\n".encode())
                self.wfile.write(PNG)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the fetcher gave up, as it should


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with serving(_Server(("127.0.0.1", 0), _Dribbler)) as port:
        yield f"http://127.0.0.1:{port}"


class _HandshakeDribbler(socketserver.BaseRequestHandler):
    """Takes the TLS ClientHello, then sends a TLS record header announcing 16 KB and its
    bytes one per second: each read of the handshake arrives well within the timeout."""

    def handle(self) -> None:
        self.request.recv(4096)
        try:
            self.request.sendall(b"\x16\x03\x03\x40\x00")
            for _ in range(20):
                self.request.sendall(b"\x02")
                time.sleep(1)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture(scope="module")
def tls_base() -> Iterator[str]:
    with serving(_Server(("127.0.0.1", 0), _HandshakeDribbler)) as port:
        yield f"https://127.0.0.1:{port}"


def _policy() -> UrlPolicy:
    # read_timeout far above the gaps between the dribbles: only the total budget can stop it
    return UrlPolicy(allow_private=True, connect_timeout=5, read_timeout=10, total_timeout=BUDGET)


def _timed_refusal(url: str) -> tuple[ImageRejected, float]:
    started = time.monotonic()
    with pytest.raises(ImageRejected) as caught:
        fetch_url_bytes(url, max_bytes=1 << 20, policy=_policy())
    return caught.value, time.monotonic() - started


def test_a_server_well_behaved_is_fetched(base: str) -> None:
    assert fetch_url_bytes(f"{base}/ok", max_bytes=1 << 20, policy=_policy()) == PNG


@pytest.mark.parametrize("path", ["/headers", "/body", "/redirect"])
def test_a_dribbling_server_is_cut_off_at_the_budget(base: str, path: str) -> None:
    error, took = _timed_refusal(base + path)
    assert took < BUDGET + SLACK, f"held {took:.1f}s against a {BUDGET}s budget"
    assert (error.reason_code, error.transient) == ("timeout", True)
    assert "within the time budget" in error.message
    assert base + path in error.message


def test_a_dribbled_tls_handshake_is_cut_off_at_the_budget(tls_base: str) -> None:
    error, took = _timed_refusal(f"{tls_base}/photo.png")
    assert took < BUDGET + SLACK, f"held {took:.1f}s against a {BUDGET}s budget"
    assert (error.reason_code, error.transient) == ("timeout", True)


def test_a_private_name_is_refused_without_its_address(base: str) -> None:
    port = base.rsplit(":", 1)[1]
    url = f"http://localhost:{port}/ok"
    with pytest.raises(ImageRejected) as caught:
        fetch_url_bytes(url, max_bytes=1 << 20, policy=UrlPolicy(allow_private=False))
    error = caught.value
    assert error.reason_code == "private_address"
    assert error.message == f"the host of {url} is not a public address"
    for address in {info[4][0] for info in socket.getaddrinfo("localhost", int(port))}:
        assert address not in error.message
        assert address not in str(error)


def test_a_refused_connection_names_no_address() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    policy = UrlPolicy(allow_private=True, connect_timeout=2, total_timeout=5)
    with pytest.raises(ImageRejected) as caught:
        fetch_url_bytes(f"http://localhost:{port}/x", max_bytes=100, policy=policy)
    assert caught.value.reason_code == "connect_error"
    assert "127.0.0.1" not in str(caught.value)
    assert "::1" not in str(caught.value)
