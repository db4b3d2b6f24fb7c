"""The one error a refused image raises, shared by the decoder and the URL fetcher."""

from __future__ import annotations


class ImageRejected(Exception):
    """An image that cannot be used, with a machine-readable reason.

    reason_code: too_large, too_many_pixels, side_too_long, aspect_too_extreme,
    resized_too_large, unsupported_format, corrupt, truncated,
    not_found, unreadable, bad_url, private_address, dns_error, connect_error, tls_error,
    timeout, http_error, too_many_redirects; for stored files (catalog/stored_files.py)
    missing_file, not_stored_yet, storage_unavailable.
    transient: True when a retry may succeed (timeouts, connection errors, 5xx, a stored
    file not replicated yet, a media storage that did not answer).
    """

    def __init__(self, reason_code: str, message: str, transient: bool = False) -> None:
        super().__init__(f"{reason_code}: {message}")
        self.reason_code = reason_code
        self.message = message
        self.transient = transient

    def __reduce__(self) -> tuple[object, ...]:
        # Keeps the fields when the exception is copied or crosses a process boundary.
        return (type(self), (self.reason_code, self.message, self.transient))
