"""Resource caps, the HTTP error type and small safety helpers of ``facegan serve``."""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

__all__ = ["ServeLimits", "HTTPError", "is_loopback", "one_line"]


@dataclass(frozen=True)
class ServeLimits:
    """Resource caps of one server.

    Attributes:
        max_upload_bytes: Largest request body accepted (checked from Content-Length).
        max_pixels: Largest image (width * height) decoded (checked from the header).
        max_sessions: Uploaded faces kept (least recently used ones are dropped).
        max_session_bytes: Total bytes of kept full photos (for paste-back) before
            least recently used sessions are dropped.
        request_timeout: Socket timeout per connection, seconds (slow clients).
    """

    max_upload_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 25_000_000
    max_sessions: int = 64
    max_session_bytes: int = 256 * 1024 * 1024
    request_timeout: float = 30.0


class HTTPError(Exception):
    """An error answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = int(status)
        self.message = " ".join(str(message).split())


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) only accepts local connections."""
    h = host.strip().strip("[]").lower()
    if h in ("localhost", "localhost.", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def one_line(exc: BaseException) -> str:
    """A user-facing message for an input error, without file-system paths."""
    detail = getattr(exc, "detail", None)  # ImageReadError: the message minus its path
    text = " ".join(str(detail if detail is not None else exc).split())
    # belt and braces: drop anything that looks like an absolute path
    return re.sub(r"(?:[A-Za-z]:)?[/\\][^\s:'\"]*[/\\][^\s:'\"]*", "<path>", text) or type(exc).__name__

