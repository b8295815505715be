"""POST /api/v1/events: report, analytics, goal and badge events posted into a stored session.

The post-race pipeline (``pitbox report``, ``pitbox_appliance.postrace``) announces
what it built here instead of on MQTT, so the core stores each event in the
session's events (the database's one writer) and publishes it like its own: on
``pitbox/v1/live/<car>/events`` and ``/api/v1/events/stream``. Posting the same
event again stores nothing (a resumed pipeline may post twice).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from driver_pc.protocol.events import Event, EventError, EventKind
from pitbox_appliance.api.context import (
    READ_ENGINE,
    SERVICE,
    error_response,
    json_response,
    read_body,
)
from pitbox_appliance.core.service import StorageUnavailable
from pitbox_appliance.storage.reader import SessionReader

routes = web.RouteTableDef()

#: The kinds the pipeline may post; the core's own (laps, incidents...) stay its own.
POSTABLE = frozenset(
    {
        EventKind.SESSION_REPORT_READY,
        EventKind.TRAINING_GOAL_PROGRESS,
        EventKind.BADGE_EARNED,
        EventKind.SETUP_IMPACT_ANALYSIS,
    }
)
MAX_EVENTS = 200


class PostedEvent(BaseModel):
    """One event: its kind, its payload (the kind's schema) and when it applies."""

    model_config = ConfigDict(extra="forbid")
    kind: str = Field(description=f"one of {sorted(k.value for k in POSTABLE)}")
    payload: dict[str, Any] = Field(
        description="the kind's payload (driver_pc/protocol/events.py)"
    )
    session_time: float | None = Field(
        default=None,
        description="session time it applies at, s (default: the session's end)",
    )


class EventsIn(BaseModel):
    """Events about one stored session of one car."""

    model_config = ConfigDict(extra="forbid")
    car: str = Field(min_length=1, max_length=64, description="the team car")
    session_key: str = Field(
        min_length=1, max_length=128, description="the session's key (its manifest's)"
    )
    events: list[PostedEvent] = Field(min_length=1, max_length=MAX_EVENTS)


class EventsOut(BaseModel):
    """What was stored: new events, and those already there (not stored again)."""

    session_id: int
    stored: int
    already: int


@routes.post("/api/v1/events")
async def post_events(request: web.Request) -> web.Response:
    """Store and publish the events in their session; 201 with the counts."""
    body = await read_body(request, EventsIn)
    if isinstance(body, web.Response):
        return body
    typed: list[tuple[Event, float | None]] = []
    for i, posted in enumerate(body.events):
        if posted.kind not in POSTABLE:
            return error_response(
                400,
                f"events.{i}.kind: {posted.kind!r} is not one of "
                f"{sorted(k.value for k in POSTABLE)}",
                [f"events.{i}.kind"],
            )
        try:
            typed.append(
                (Event.of(body.car, posted.kind, posted.payload), posted.session_time)
            )
        except EventError as exc:
            return error_response(400, f"events.{i}.payload: {exc}", [f"events.{i}"])
    loop = asyncio.get_running_loop()
    reader = SessionReader(request.app[READ_ENGINE])
    race = await loop.run_in_executor(None, reader.session_by_key, body.session_key)
    if race is None or race.car != body.car:
        return error_response(
            404,
            f"session_key: no session {body.session_key!r} of car {body.car!r}",
            ["session_key"],
        )
    stored = await loop.run_in_executor(None, reader.events, race.id)
    seen = {(e.kind, _canonical(e.payload)) for e in stored}
    fresh: list[tuple[Event, float]] = []
    for event, at in typed:
        key = (event.kind.value, _canonical(event.payload.model_dump(mode="json")))
        if key in seen:
            continue
        seen.add(key)
        fresh.append((event, at if at is not None else race.last_time or 0.0))
    if fresh:
        try:
            await loop.run_in_executor(
                None, request.app[SERVICE].record_session_events, race.id, fresh
            )
        except StorageUnavailable as exc:
            return error_response(503, str(exc))
    return json_response(
        EventsOut(
            session_id=race.id, stored=len(fresh), already=len(typed) - len(fresh)
        ),
        status=201,
    )


def _canonical(payload: dict[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"))
