"""The API v1 application: factory, JSON error middleware, and starting it on the core's loop."""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import weakref
from collections.abc import Iterable, Mapping

from aiohttp import web
from aiohttp.typedefs import Handler

from driver_pc.protocol.device_auth import DeviceVerifier
from driver_pc.protocol.discovery import Advertisement, local_addresses
from pitbox_appliance.api import (
    commands,
    deadletters,
    devices,
    driver,
    drivers,
    events,
    health,
    openapi,
    pairing,
    session_events,
    sessions,
    stream,
    video,
)
from pitbox_appliance.api.access_log import PathOnlyAccessLogger
from pitbox_appliance.api.auth import (
    TOKENS,
    TokenStore,
    require_scope,
    token_file,
    tokens_from_env,
)
from pitbox_appliance.api.context import (
    DEVICES,
    READ_ENGINE,
    REGISTRATIONS,
    SERVICE,
    STREAMS,
    error_response,
)
from pitbox_appliance.core.service import CoreService
from pitbox_appliance.security.web_tls import (
    CA_PATH,
    WebTls,
    ca_download_app,
    tls_hosts,
    web_tls,
)
from pitbox_appliance.storage.database import default_db_url, make_engine

logger = logging.getLogger(__name__)


def create_app(
    service: CoreService,
    tokens: TokenStore | Mapping[str, Iterable[str]] | None = None,
) -> web.Application:
    """The API application for ``service``; reads go through a read-only engine.

    ``tokens``: a :class:`TokenStore`, or ``{secret: scopes}`` (each then its own
    ``service:token-<n>``); default ``PITBOX_API_TOKENS``. See ``auth.py``.
    """
    app = web.Application(middlewares=[json_errors, require_scope])
    if tokens is None:
        # The environment's tokens, and those minted with `pitbox tokens` (re-read
        # when that file changes).
        tokens = tokens_from_env()
        tokens.file = token_file(service.devices.path.parent)
    elif not isinstance(tokens, TokenStore):
        tokens = TokenStore.from_secrets(tokens)
    app[TOKENS] = tokens
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
        session_events,
        video,
        commands,
        deadletters,
        devices,
        drivers,
        pairing,
        openapi,
    ):
        app.router.add_routes(module.routes)
    pairing.setup(app)
    drivers.setup(app)
    app.on_shutdown.append(stream.close_streams)
    app.on_cleanup.append(_dispose_engine)
    return app


async def start_api(service: CoreService) -> web.AppRunner:
    """Serve the API on ``api_host:api_port``; the caller awaits ``runner.cleanup()``.

    With ``api_port: 0`` the OS picks the port: read it with :func:`bound_port`
    (``runner.addresses`` lists every bound socket address).
    """
    core = service.config.core
    app = create_app(service)
    adverts: list[Advertisement] = []
    app.on_cleanup.append(functools.partial(_withdraw, adverts))
    side_runners: list[web.AppRunner] = []  # the CA download page's
    app.on_cleanup.append(functools.partial(_cleanup_runners, side_runners))
    runner = make_runner(app)
    await runner.setup()
    # HTTPS on the LAN once the appliance has its CA; plain HTTP on 127.0.0.1 for
    # the appliance's own programs (security/web_tls.py).
    loop = asyncio.get_running_loop()
    tls = await loop.run_in_executor(
        None, web_tls, service.config.security, core.api_host
    )
    try:
        if tls is None:
            await web.TCPSite(runner, core.api_host, core.api_port).start()
        else:
            await _start_tls_sites(runner, tls, core.api_host, core.api_port)
            side_runners.extend(await _serve_ca(tls, service))
    except OSError:
        await runner.cleanup()
        raise
    logger.info(
        "API v1 listening on %s%s",
        runner.addresses,
        " (HTTPS on the LAN, HTTP on 127.0.0.1)" if tls else "",
    )
    if core.advertise and not _loopback(core.api_host):
        advert = await _advertise(runner, service, "https" if tls else "http")
        adverts.extend([advert] if advert is not None else [])
    return runner


async def _start_tls_sites(
    runner: web.AppRunner, tls: WebTls, host: str, port: int
) -> None:
    """HTTPS on each of ``tls_hosts(host)``, plain HTTP on 127.0.0.1, one port."""
    plain = web.TCPSite(runner, "127.0.0.1", port)
    await plain.start()
    port = port or bound_port(runner)  # OS-chosen: the same one everywhere
    context = tls.server_context()
    for address in tls_hosts(host):
        await web.TCPSite(runner, address, port, ssl_context=context).start()


async def _serve_ca(tls: WebTls, service: CoreService) -> list[web.AppRunner]:
    """The plain-HTTP CA download page on ``security.ca_http_port`` (0: none)."""
    security, core = service.config.security, service.config.core
    if not security.ca_http_port:
        return []
    ca_runner = web.AppRunner(ca_download_app(tls.pki))
    await ca_runner.setup()
    try:
        for address in ["127.0.0.1", *tls_hosts(core.api_host)]:
            await web.TCPSite(ca_runner, address, security.ca_http_port).start()
    except OSError as exc:  # the API itself works without it
        logger.warning("CA download page not served: %s", exc)
    logger.info(
        "CA certificate for tablets on http://<appliance>:%s%s",
        security.ca_http_port,
        CA_PATH,
    )
    return [ca_runner]


async def _cleanup_runners(runners: list[web.AppRunner], _app: web.Application) -> None:
    for runner in runners:
        await runner.cleanup()


def make_runner(app: web.Application) -> web.AppRunner:
    """A runner whose access log records paths only, never query strings."""
    return web.AppRunner(app, access_log_class=PathOnlyAccessLogger)


def _loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


async def _advertise(
    runner: web.AppRunner, service: CoreService, scheme: str = "http"
) -> Advertisement | None:
    """Answer mDNS for ``_pitbox._tcp`` (until the API stops); a failure only logs."""
    core = service.config.core
    addresses = (
        local_addresses() if core.api_host in ("", "0.0.0.0") else [core.api_host]
    )
    name = core.advertise_name or f"PitBox {socket.gethostname().split('.')[0]}"
    loop = asyncio.get_running_loop()
    try:
        advert = await loop.run_in_executor(
            None, Advertisement, name, bound_port(runner), addresses, scheme
        )
    except (OSError, ValueError) as exc:
        logger.warning("not advertised on the LAN (mDNS): %s", exc)
        return None
    logger.info("advertised as %r on %s", advert.name, ", ".join(addresses))
    return advert


async def _withdraw(adverts: list[Advertisement], _app: web.Application) -> None:
    loop = asyncio.get_running_loop()
    for advert in adverts:
        await loop.run_in_executor(None, advert.close)


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
