"""GET /api/v1/telemetry/stream: wire messages over a WebSocket, ingested like MQTT ones."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import WSCloseCode, WSMsgType, web

from driver_pc.protocol.codec import MAX_MESSAGE_BYTES
from pitbox_appliance.api.context import PRINCIPAL, SERVICE, STREAMS
from pitbox_appliance.api.schemas import StreamError, StreamReply
from pitbox_appliance.core.ingest import Outcome
from pitbox_appliance.core.service import CoreService, StorageUnavailable

logger = logging.getLogger(__name__)

# Frames up to this size are read and answered with a JSON error when they are over
# MAX_MESSAGE_BYTES; beyond it aiohttp closes the socket (1009) without reading them.
WS_READ_LIMIT = 4 * MAX_MESSAGE_BYTES
# Where the source id starts in a wire message (after magic, version, type, length).
_SOURCE_AT = 6

routes = web.RouteTableDef()


@routes.get("/api/v1/telemetry/stream", allow_head=False)
async def telemetry_stream(request: web.Request) -> web.WebSocketResponse:
    """One binary frame = one wire message; each is answered with a JSON text frame."""
    service = request.app[SERVICE]
    # A driver PC's own token (or signature) streams its own source only; another
    # principal's frames are trusted for their seal alone (each source's key).
    principal: str = request.get(PRINCIPAL, "")
    device = (
        principal.removeprefix("device:") if principal.startswith("device:") else None
    )
    ws = web.WebSocketResponse(max_msg_size=WS_READ_LIMIT, heartbeat=30)
    await ws.prepare(request)
    request.app[STREAMS].add(ws)
    loop = asyncio.get_running_loop()
    try:
        async for msg in ws:
            reply: StreamReply | StreamError
            if msg.type is WSMsgType.BINARY:
                frame: bytes = msg.data
                if len(frame) > MAX_MESSAGE_BYTES:
                    reply = StreamError(
                        error=f"frame: {len(frame)} bytes > {MAX_MESSAGE_BYTES}"
                    )
                elif device is not None and frame_source(frame) not in (None, device):
                    # (An unreadable header is left to ingest, which names the fault.)
                    reply = StreamReply(seq_ok=False, reason="foreign_source")
                else:
                    reply = await loop.run_in_executor(
                        None, ingest_frame, service, frame
                    )
            elif msg.type is WSMsgType.TEXT:
                reply = StreamError(
                    error="frame: text frames are not accepted; "
                    "send each wire message as one binary frame"
                )
            else:
                logger.warning("telemetry stream error: %s", ws.exception())
                break
            await ws.send_str(reply.model_dump_json(exclude_none=True))
    except ConnectionResetError:
        logger.info("telemetry stream client went away")
    finally:
        request.app[STREAMS].discard(ws)
    return ws


def frame_source(frame: bytes) -> str | None:
    """The source id a wire message's header names (unverified), or None if unreadable.

    The header is ``magic(3) version(1) type(1) source_len(1) source`` (the start of
    ``driver_pc.protocol.codec``'s envelope); the seal is checked later, by ingest.
    """
    if len(frame) < _SOURCE_AT:
        return None
    end = _SOURCE_AT + frame[_SOURCE_AT - 1]
    try:
        return frame[_SOURCE_AT:end].decode() if len(frame) >= end else None
    except UnicodeDecodeError:
        return None


def ingest_frame(service: CoreService, frame: bytes) -> StreamReply:
    """Ingest and commit one wire message (blocking: run it in an executor)."""
    try:
        handled = service.ingest_frame(frame)
    except StorageUnavailable as exc:
        logger.warning("streamed message not stored: %s", exc)
        return StreamReply(seq_ok=False, reason="storage")
    if handled.stored:
        return StreamReply(seq_ok=True)
    if handled.outcome is Outcome.DEAD_LETTER:
        return StreamReply(seq_ok=False, reason=f"dead_letter:{handled.reason}")
    return StreamReply(seq_ok=False, reason=handled.reason or "rejected")


async def close_streams(app: web.Application) -> None:
    """On shutdown: close every open stream so its handler returns."""
    streams = app[STREAMS]
    for ws in list(streams):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"appliance shutting down")
