"""POST /api/search/ with an `image_url`: a slow or private source is a 400 that says why,
within the fetch budget, and names no address the host resolved to."""

from __future__ import annotations

import socketserver
import time
from collections.abc import Iterator

import pytest

from tests.support.servers import serving

pytestmark = pytest.mark.django_db


class _HeaderDribbler(socketserver.StreamRequestHandler):
    """Answers with one header line per second for 20 s."""

    def handle(self) -> None:
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        try:
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            for i in range(20):
                self.wfile.write(f"X-Pad-{i}: x\r\n".encode())
                self.wfile.flush()
                time.sleep(1)
        except (BrokenPipeError, ConnectionResetError):
            pass


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True


@pytest.fixture
def port() -> Iterator[int]:
    with serving(_Server(("127.0.0.1", 0), _HeaderDribbler)) as port:
        yield port


def test_a_dribbling_image_url_is_a_400_within_the_budget(api_client, settings, port):
    settings.IMAGE_URL_ALLOW_PRIVATE = True
    budget = settings.SEARCH_IMAGE_URL_TIMEOUT  # the default: a search holds a web thread
    assert budget < settings.IMAGE_URL_TOTAL_TIMEOUT
    url = f"http://127.0.0.1:{port}/photo.jpg"
    started = time.monotonic()
    response = api_client.post("/api/search/", {"image_url": url}, format="json")
    took = time.monotonic() - started
    assert took < budget + 2.0, f"held {took:.1f}s against a {budget}s budget"
    assert response.status_code == 400, response.content[:300]
    body = response.json()
    assert body["error"] == "timeout"
    assert "within the time budget" in body["fields"]["image_url"][0]


def test_a_private_image_url_is_a_400_without_its_address(api_client, settings, port):
    settings.IMAGE_URL_ALLOW_PRIVATE = False
    url = f"http://localhost:{port}/photo.jpg"
    response = api_client.post("/api/search/", {"image_url": url}, format="json")
    assert response.status_code == 400, response.content[:300]
    body = response.json()
    assert body["error"] == "private_address"
    assert body["fields"]["image_url"] == [f"the host of {url} is not a public address"]
    assert "127.0.0.1" not in response.content.decode()
    assert "::1" not in response.content.decode()
