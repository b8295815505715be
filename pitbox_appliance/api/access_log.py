"""The API's access log: method, path, status, size and time, never the query string.

aiohttp's default format logs the request line (``%r``), query string included; a query
could carry a secret (a pairing URI pasted into a browser, a token a client put in the
wrong place), and ``/api/v1/video/upload`` takes its parameters there. This logger
writes ``request.path`` only, through the ``aiohttp.access`` logger as before.
"""

from __future__ import annotations

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse


class PathOnlyAccessLogger(AbstractAccessLogger):
    """``<remote> "<METHOD> <path>" <status> <bytes> <ms> ms``: no query, no headers."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        """Log one finished request (``time`` in seconds)."""
        self.logger.info(
            '%s "%s %s" %s %s %.1f ms',
            request.remote or "-",
            request.method,
            request.path,
            response.status,
            response.body_length,
            time * 1000,
        )
