"""GET /api/v1/events/stream: the appliance's typed events, as published on MQTT, over a WebSocket."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from pitbox_appliance.api.context import SERVICE, STREAMS, error_response

logger = logging.getLogger(__name__)

# Events a client may fall behind by before it is disconnected (it reconnects and
# reads what it missed from /api/v1/sessions/... instead of growing our memory).
MAX_BACKLOG = 1000

routes = web.RouteTableDef()


@routes.get("/api/v1/events/stream", allow_head=False)
async def events_stream(request: web.Request) -> web.StreamResponse:
    """One JSON text frame per event (``{"kind", "car", ...payload}``); ``?car=`` filters."""
    car = request.query.get("car")
    if car is not None and not car:
        return error_response(400, "car: give a car id or leave the parameter out")
    service = request.app[SERVICE]
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    request.app[STREAMS].add(ws)
    loop = asyncio.get_running_loop()
    backlog: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(MAX_BACKLOG)

    def deliver(message: dict[str, Any]) -> None:
        if car is None or message.get("car") == car:
            loop.call_soon_threadsafe(_offer, backlog, message)

    service.event_listeners.append(deliver)
    reader = asyncio.create_task(_until_closed(ws, backlog))
    try:
        while True:
            message = await backlog.get()
            if message is None:
                break
            await ws.send_str(json.dumps(message))
    except ConnectionResetError:
        logger.info("event stream client went away")
    finally:
        service.event_listeners.remove(deliver)
        request.app[STREAMS].discard(ws)
        reader.cancel()
        if not ws.closed:
            await ws.close()
    return ws


def _offer(
    backlog: asyncio.Queue[dict[str, Any] | None], message: dict[str, Any]
) -> None:
    try:
        backlog.put_nowait(message)
    except asyncio.QueueFull:
        logger.warning("event stream client is %d events behind; closing", MAX_BACKLOG)
        _end(backlog)


def _end(backlog: asyncio.Queue[dict[str, Any] | None]) -> None:
    """Make the sender stop at once: drop what is queued and queue the end marker."""
    while not backlog.empty():
        backlog.get_nowait()
    backlog.put_nowait(None)


async def _until_closed(
    ws: web.WebSocketResponse, backlog: asyncio.Queue[dict[str, Any] | None]
) -> None:
    """Read (and ignore) client frames; end the stream when the client closes."""
    async for msg in ws:
        if msg.type is WSMsgType.ERROR:
            break
    if not ws.closed:
        await ws.close(code=WSCloseCode.OK)
    _end(backlog)
