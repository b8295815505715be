"""GET /api/v1/health: the core's counters and ingest liveness; 503 when ingest stalls."""

from __future__ import annotations

import asyncio

from aiohttp import web

from pitbox_appliance.api.context import SERVICE

routes = web.RouteTableDef()


@routes.get("/api/v1/health", allow_head=False)
async def get_health(request: web.Request) -> web.Response:
    """``CoreService.health()`` as JSON (see ``HealthOut``): 200, or 503 when stalled."""
    service = request.app[SERVICE]
    # health() may wait briefly for the ingest lock: not on the loop.
    health = await asyncio.get_running_loop().run_in_executor(None, service.health)
    return web.json_response(health, status=503 if health["reason"] else 200)
