"""POST /api/v1/video/upload: driver POV video segments, streamed to disk and announced."""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import re
from pathlib import Path

from aiohttp import web

from driver_pc.protocol import data_dirs
from driver_pc.protocol.events import EventKind
from pitbox_appliance.api.auth import source_refusal
from pitbox_appliance.api.context import (
    SERVICE,
    error_response,
    json_response,
)
from pitbox_appliance.api.schemas import VideoOut
from pitbox_appliance.core.ingest import car_of_source

routes = web.RouteTableDef()

VIDEO_TYPES = frozenset(
    {"video/mp4", "video/x-matroska", "video/quicktime", "video/webm", "video/mp2t"}
)
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_SAFE_SOURCE = re.compile(r"[A-Za-z0-9_]+-[A-Za-z0-9_-]+")
CHUNK = 1 << 20


def video_dir(configured: str | None) -> Path:
    """The configured video directory, or ``video/`` under the user data dir."""
    if configured:
        return Path(configured)
    return data_dirs.video_dir()


@routes.post("/api/v1/video/upload")
async def upload_video(request: web.Request) -> web.Response:
    """Store one segment (the raw body) under its session and source; 201 with the record."""
    query = request.query
    source = query.get("source", "")
    name = query.get("name", "")
    if not _SAFE_SOURCE.fullmatch(source):
        return error_response(400, "source: give the driver PC id, e.g. car42-pc1")
    refused = source_refusal(request, source)
    if refused is not None:
        return refused
    if not _SAFE_NAME.fullmatch(name) or ".." in name:
        return error_response(
            400, "name: a plain file name of letters, digits, '.', '_' or '-'"
        )
    times: list[float] = []
    for field in ("start", "end"):
        try:
            value = float(query.get(field, ""))
        except ValueError:
            return error_response(400, f"{field}: a session time in seconds")
        if not math.isfinite(value) or value < 0:
            return error_response(400, f"{field}: a session time in seconds")
        times.append(value)
    start, end = times
    if end < start:
        return error_response(400, "end: before start")
    if request.content_type not in VIDEO_TYPES:
        return error_response(
            415,
            f"Content-Type: {request.content_type!r} is not one of {sorted(VIDEO_TYPES)}",
        )
    service = request.app[SERVICE]
    core = service.config.core
    declared = request.content_length
    if declared is not None and declared > core.video_max_bytes:
        return error_response(413, f"body: {declared} bytes > {core.video_max_bytes}")
    car = car_of_source(source)
    loop = asyncio.get_running_loop()
    # The core's lock is held while it ingests: never wait for it on the loop.
    session_id = await loop.run_in_executor(None, service.session_of, car)
    if session_id is None:
        return error_response(409, f"source: car {car!r} has no session here yet")
    folder = video_dir(core.video_dir) / str(session_id) / source
    target = folder / name
    if target.exists():
        return error_response(409, f"name: {name!r} was already uploaded")
    await loop.run_in_executor(None, lambda: folder.mkdir(parents=True, exist_ok=True))
    partial = folder / f".{name}.part"
    digest = hashlib.sha256()
    size = 0
    try:
        with partial.open("wb") as out:
            async for chunk in request.content.iter_chunked(CHUNK):
                size += len(chunk)
                if size > core.video_max_bytes:
                    return error_response(
                        413, f"body: more than {core.video_max_bytes} bytes"
                    )
                digest.update(chunk)
                await loop.run_in_executor(None, out.write, chunk)
            await loop.run_in_executor(None, os.fsync, out.fileno())
        if size == 0:
            return error_response(400, "body: empty")
        partial.rename(target)
    finally:
        partial.unlink(missing_ok=True)
    relative = str(target.relative_to(video_dir(core.video_dir)))
    payload = {
        "source": source,
        "path": relative,
        "start_time": start,
        "end_time": end,
        "bytes": size,
        "sha256": digest.hexdigest(),
    }
    try:
        session_id = await loop.run_in_executor(
            None,
            service.record_event,
            car,
            EventKind.VIDEO_SEGMENT_READY.value,
            end,
            payload,
        )
    except LookupError as exc:
        target.unlink(missing_ok=True)
        return error_response(409, f"source: {exc}")
    return json_response(
        VideoOut(session_id=session_id, **{k: v for k, v in payload.items()}),
        status=201,
    )
