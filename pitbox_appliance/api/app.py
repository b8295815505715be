"""The API v1 application: factory, JSON error middleware, and starting it on the core's loop."""

from __future__ import annotations

import logging
import weakref

from aiohttp import web
from aiohttp.typedefs import Handler

from driver_pc.protocol.device_auth import DeviceVerifier
from pitbox_appliance.api import (
    commands,
    deadletters,
    driver,
    events,
    health,
    openapi,
    pairing,
    sessions,
    stream,
    video,
)
from pitbox_appliance.api.auth import require_scope, tokens_from_env
from pitbox_appliance.api.context import (
    DEVICES,
    READ_ENGINE,
    REGISTRATIONS,
    SERVICE,
    STREAMS,
    TOKENS,
    error_response,
)
from pitbox_appliance.core.service import CoreService
from pitbox_appliance.storage.database import default_db_url, make_engine

logger = logging.getLogger(__name__)


def create_app(
    service: CoreService, tokens: dict[str, frozenset[str]] | None = None
) -> web.Application:
    """The API application for ``service``; reads go through a read-only engine.

    ``tokens`` (token → scopes) default to ``PITBOX_API_TOKENS``; see ``auth.py``.
    """
    app = web.Application(middlewares=[json_errors, require_scope])
    app[TOKENS] = tokens_from_env() if tokens is None else tokens
    app[SERVICE] = service
    app[DEVICES] = DeviceVerifier(service.keyring)
    app[READ_ENGINE] = make_engine(
        service.config.core.db_url or default_db_url(), readonly=True
    )
    app[REGISTRATIONS] = {}
    app[STREAMS] = weakref.WeakSet()
    for module in (
        health,
        sessions,
        driver,
        stream,
        events,
        video,
        commands,
        deadletters,
        pairing,
        openapi,
    ):
        app.router.add_routes(module.routes)
    pairing.setup(app)
    app.on_shutdown.append(stream.close_streams)
    app.on_cleanup.append(_dispose_engine)
    return app


async def start_api(service: CoreService) -> web.AppRunner:
    """Serve the API on ``api_host:api_port``; the caller awaits ``runner.cleanup()``.

    With ``api_port: 0`` the OS picks the port: read it with :func:`bound_port`
    (``runner.addresses`` lists every bound socket address).
    """
    core = service.config.core
    runner = web.AppRunner(create_app(service))
    await runner.setup()
    site = web.TCPSite(runner, core.api_host, core.api_port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    logger.info("API v1 listening on %s", runner.addresses)
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The TCP port the runner's first site is bound to."""
    port: int = runner.addresses[0][1]
    return port


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn aiohttp's own errors (no route, wrong method, body too large) into JSON."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(exc.status, f"{request.path}: {exc.reason}")
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response


async def _dispose_engine(app: web.Application) -> None:
    app[READ_ENGINE].dispose()
