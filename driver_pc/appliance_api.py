"""The driver PC's client of the appliance's HTTP API: where it is, and how a request is signed.

A paired PC signs each request with its message key (``driver_pc/protocol/device_auth.py``);
a legacy set-up without pairing presents a bearer token with the ``driver`` scope that
belongs to this very PC (``device:<source>`` on the appliance): the appliance refuses a
request naming any other source (403).
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from driver_pc.protocol.device_auth import sign_request


class ApiError(RuntimeError):
    """The appliance refused a request (``status``) or could not be reached (None)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class ApplianceApi:
    """The appliance API's address and this PC's identity (its key, or a token)."""

    api_url: str
    source: str
    token: str = field(default="", repr=False)
    key: bytes | None = field(default=None, repr=False)
    timeout_s: float = 60.0
    #: The appliance CA received at pairing: an ``https`` API must present a
    #: certificate it signed (None: the system's CAs).
    ca_file: str | None = None

    def authorization(
        self,
        method: str,
        route: str,
        query: dict[str, str],
        body: bytes | None = None,
    ) -> str:
        """The ``Authorization`` header for ``method route?query`` (with a JSON ``body``)."""
        if self.key is None:
            return f"Bearer {self.token}"
        path = urllib.parse.urlsplit(self.api_url).path.rstrip("/") + route
        return sign_request(self.key, self.source, method, path, query, body=body)

    def url(self, route: str, query: dict[str, str] | None = None) -> str:
        base = self.api_url.rstrip("/") + route
        return f"{base}?{urllib.parse.urlencode(query)}" if query else base

    def post_json(self, route: str, document: dict[str, Any]) -> dict[str, Any]:
        """POST ``document`` as JSON; the appliance's JSON answer, or ApiError."""
        body = json.dumps(document).encode()
        request = urllib.request.Request(
            self.url(route),
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Authorization": self.authorization("POST", route, {}, body),
            },
        )
        return self.send(request)

    def send(self, request: urllib.request.Request) -> dict[str, Any]:
        """Send a prepared request; its JSON answer, or ApiError (HTTP status and detail)."""
        try:
            with urllib.request.urlopen(
                request, timeout=self.timeout_s, context=self._tls()
            ) as reply:
                answer: dict[str, Any] = json.load(reply)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            raise ApiError(f"HTTP {exc.code}: {detail}", exc.code) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ApiError(str(exc)) from None
        return answer

    def _tls(self) -> ssl.SSLContext | None:
        if not self.api_url.startswith("https:"):
            return None
        return ssl.create_default_context(cafile=self.ca_file)
