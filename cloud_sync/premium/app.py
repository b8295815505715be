"""PremiumDataAPI: the authenticated, read-only partner API (aiohttp) over the compacted sessions, with plan gate, rate limits and metering."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from cloud_sync.plans import Feature, TeamDirectory
from cloud_sync.premium.keys import ApiKey, KeyStore
from cloud_sync.premium.openapi import document
from cloud_sync.premium.ratelimit import RateLimiter
from cloud_sync.premium.store import NotFound, SessionStore

logger = logging.getLogger(__name__)

SLUG = re.compile(r"^[a-z0-9-]{1,64}$")
SEASON = re.compile(r"^[0-9]{4}$")
BASE = "/v1/teams/{team}/seasons/{season}"
#: Per-session resources: route name → SessionStore method.
RESOURCES = {
    "laps": "laps",
    "stints": "stints",
    "pit-cycles": "pit_cycles",
    "handoffs": "handoffs",
    "predictions": "predictions",
}
KEY = web.RequestKey("key", ApiKey)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf become null (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _json(status: int, body: dict[str, Any], **headers: str) -> web.Response:
    text = json.dumps(_clean(body), allow_nan=False, default=str)
    return web.Response(
        status=status, text=text, content_type="application/json", headers=headers
    )


def _error(status: int, message: str, **headers: str) -> web.Response:
    return _json(status, {"error": message}, **headers)


class PremiumDataAPI:
    """The partner API: read-only, one key per partner, scoped per team and season.

    Order of checks on every data request: key (401) → rate limit (429 with
    ``Retry-After``) → path values (400) → scope (403) → the team's plan includes
    the premium API (403) → the data (404 / 200). Every request made with a valid
    key is metered (route, status, rows, bytes), refused ones included.
    """

    def __init__(
        self,
        store: SessionStore,
        keys: KeyStore,
        teams: TeamDirectory,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.store = store
        self.keys = keys
        self.teams = teams
        self.limiter = limiter or RateLimiter()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/openapi.json", self._openapi)
        app.router.add_get("/v1/usage", self._usage)
        app.router.add_get(f"{BASE}/sessions", self._sessions)
        for name, method in RESOURCES.items():
            app.router.add_get(
                f"{BASE}/sessions/{{session}}/{name}", self._resource(method)
            )
        return app

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        if request.path == "/openapi.json":
            return await handler(request)
        auth = request.headers.get("Authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        key = self.keys.authenticate(token) if token else None
        if key is None:
            return _error(
                401,
                "a valid partner API key is required (Authorization: Bearer …)",
                **{"WWW-Authenticate": 'Bearer realm="pitbox"'},
            )
        route = request.match_info.route.resource
        template = route.canonical if route is not None else "(no such route)"
        ok, retry = self.limiter.take(key.id, key.rate_per_min)
        if not ok:
            response: web.StreamResponse = _error(
                429,
                f"over this key's limit of {key.rate_per_min} requests per minute",
                **{"Retry-After": str(retry)},
            )
        else:
            request[KEY] = key
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                response = _error(exc.status, exc.reason)
        rows = int(response.headers.get("X-Rows", "0"))
        size = response.body_length if isinstance(response, web.Response) else 0
        await asyncio.to_thread(
            self.keys.meter, key.id, template, response.status, rows, size or 0
        )
        return response

    async def _openapi(self, request: web.Request) -> web.Response:
        return _json(200, document())

    async def _usage(self, request: web.Request) -> web.Response:
        key: ApiKey = request[KEY]
        usage = await asyncio.to_thread(self.keys.usage, key.id)
        return _json(200, {"key": key.id, "usage": usage})

    def _scope(self, request: web.Request) -> tuple[str, int] | web.Response:
        """The team and season of the path, or the refusal to send."""
        key: ApiKey = request[KEY]
        team = request.match_info["team"]
        season_text = request.match_info["season"]
        if not SLUG.match(team):
            return _error(400, "team: a slug of a-z, 0-9 and - (at most 64)")
        if not SEASON.match(season_text):
            return _error(400, "season: a four-digit year")
        season = int(season_text)
        if not key.allows(team, season):
            return _error(403, f"this key has no scope for {team}:{season}")
        if not self.teams.allows(team, Feature.PREMIUM_API):
            plan = self.teams.get(team).plan.value
            return _error(
                403,
                f"team {team!r} is on the {plan} plan, which does not include "
                "the premium data API",
            )
        return team, season

    async def _sessions(self, request: web.Request) -> web.Response:
        scope = self._scope(request)
        if isinstance(scope, web.Response):
            return scope
        rows = await asyncio.to_thread(self.store.sessions, scope[0], scope[1])
        return _rows(rows, {"team": scope[0], "season": scope[1]})

    def _resource(self, method: str) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            scope = self._scope(request)
            if isinstance(scope, web.Response):
                return scope
            session = request.match_info["session"]
            if not SLUG.match(session):
                return _error(400, "session: a slug of a-z, 0-9 and - (at most 64)")
            try:
                query = getattr(self.store, method)
                rows = await asyncio.to_thread(query, scope[0], scope[1], session)
            except NotFound as exc:
                return _error(404, str(exc))
            return _rows(
                rows, {"team": scope[0], "season": scope[1], "session": session}
            )

        return handler


def _rows(rows: list[dict[str, Any]], where: dict[str, Any]) -> web.Response:
    return _json(
        200,
        {**where, "count": len(rows), "data": rows},
        **{"X-Rows": str(len(rows))},
    )
