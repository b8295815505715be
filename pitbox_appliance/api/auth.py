"""API tokens with scopes: who may change state through the API (reads stay open on the LAN).

Tokens come from ``PITBOX_API_TOKENS``: comma-separated ``token:scope+scope`` entries, e.g.
``PITBOX_API_TOKENS="3f9a…:commands+driver,77c1…:driver"``. Scopes: ``commands`` (send
commands to driver PCs, retry dead letters), ``driver`` (register a driver PC, report its status, stream
telemetry) and ``pipeline`` (the post-race pipeline posts report, goal and badge events). With no tokens configured every state-changing request is refused. Tokens are
compared in constant time and never logged.

A paired driver PC needs no token: it signs its request with its own message key
(``Authorization: PitBox-Device ...``, ``driver_pc/protocol/device_auth.py``). That
grants the ``driver`` scope for that PC's own source only (handlers read it from
``request[DEVICE_SOURCE]``); a revoked PC is refused.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Awaitable, Callable

from aiohttp import web

from driver_pc.protocol.device_auth import SCHEME, DeviceAuthError
from pitbox_appliance.api.context import DEVICE_SOURCE, DEVICES, TOKENS, error_response

SCOPES = frozenset({"commands", "driver", "pipeline"})
# (method, route pattern) → scope needed; routes not listed are open reads.
REQUIRED_SCOPE: dict[tuple[str, str], str] = {
    ("POST", "/api/v1/cars/{car}/commands"): "commands",
    ("POST", "/api/v1/deadletters/{id}/retry"): "commands",
    ("POST", "/api/v1/events"): "pipeline",
    ("POST", "/api/v1/driver/register"): "driver",
    ("POST", "/api/v1/status/update"): "driver",
    ("GET", "/api/v1/telemetry/stream"): "driver",
    ("POST", "/api/v1/video/upload"): "driver",
    ("POST", "/api/v1/devices/pairings"): "commands",
    ("POST", "/api/v1/devices/{id}/revoke"): "commands",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class TokenConfigError(ValueError):
    """``PITBOX_API_TOKENS`` is malformed; the message says which entry (never the token)."""


def parse_tokens(text: str) -> dict[str, frozenset[str]]:
    """``token:scope+scope,...`` → token → scopes."""
    tokens: dict[str, frozenset[str]] = {}
    for number, entry in enumerate(
        filter(None, (e.strip() for e in text.split(","))), 1
    ):
        token, _, scopes_text = entry.partition(":")
        scopes = frozenset(filter(None, scopes_text.split("+")))
        if len(token) < 16:
            raise TokenConfigError(
                f"PITBOX_API_TOKENS entry {number}: token shorter than 16"
            )
        if not scopes or not scopes <= SCOPES:
            raise TokenConfigError(
                f"PITBOX_API_TOKENS entry {number}: scopes must be among {sorted(SCOPES)}"
            )
        tokens[token] = scopes
    return tokens


def tokens_from_env() -> dict[str, frozenset[str]]:
    return parse_tokens(os.environ.get("PITBOX_API_TOKENS", ""))


@web.middleware
async def require_scope(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse a state-changing request without a token holding the route's scope."""
    route = request.match_info.route.resource
    pattern = route.canonical if route is not None else request.path
    scope = REQUIRED_SCOPE.get((request.method, pattern))
    if scope is None:
        return await handler(request)
    header = request.headers.get("Authorization", "")
    if header.startswith(SCHEME + " "):
        return await _device_signed(request, handler, header, scope)
    presented = header[7:] if header.startswith("Bearer ") else ""
    if not presented:
        return error_response(
            401,
            f"Authorization: a bearer token with scope {scope!r} is required",
            ["Authorization"],
        )
    for token, scopes in request.app[TOKENS].items():
        if hmac.compare_digest(token.encode(), presented.encode()):
            if scope in scopes:
                return await handler(request)
            return error_response(
                403,
                f"Authorization: the token lacks scope {scope!r}",
                ["Authorization"],
            )
    return error_response(401, "Authorization: unknown token", ["Authorization"])


async def _device_signed(
    request: web.Request, handler: Handler, header: str, scope: str
) -> web.StreamResponse:
    """A request signed by a paired PC: the ``driver`` scope, for its own source only."""
    # A JSON body is covered by the signature; a streamed upload's is not (see
    # device_auth.py), and reading it here would hold it all in memory.
    body = await request.read() if request.content_type == "application/json" else None
    try:
        source = request.app[DEVICES].verify(
            header, request.method, request.path, dict(request.query), body=body
        )
    except DeviceAuthError as exc:
        return error_response(401, str(exc), ["Authorization"])
    if scope != "driver":
        return error_response(
            403,
            f"Authorization: a driver PC's signature does not grant scope {scope!r}",
            ["Authorization"],
        )
    request[DEVICE_SOURCE] = source
    return await handler(request)
