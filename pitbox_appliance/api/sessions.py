"""Session resources: stored sessions, their laps and stints, read through a read-only engine."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel
from sqlalchemy import Engine

from pitbox_appliance.api.context import (
    READ_ENGINE,
    error_response,
    json_response,
    path_id,
)
from pitbox_appliance.api.schemas import (
    LapList,
    LapOut,
    SessionDetail,
    SessionList,
    SessionOut,
    StintList,
    StintOut,
)
from pitbox_appliance.storage.reader import SessionReader

routes = web.RouteTableDef()

Out = TypeVar("Out", bound=BaseModel)
T = TypeVar("T")


@routes.get("/api/v1/sessions", allow_head=False)
async def list_sessions(request: web.Request) -> web.Response:
    """Every stored session, newest first."""
    return json_response(await _read(request, _sessions))


@routes.get("/api/v1/sessions/{id}", allow_head=False)
async def get_session(request: web.Request) -> web.Response:
    """One session with lap count, best lap, drivers and session info; 404 if unknown."""
    return await _one(request, _session_detail)


@routes.get("/api/v1/sessions/{id}/laps", allow_head=False)
async def get_laps(request: web.Request) -> web.Response:
    """The laps of a session in the order driven; 404 if the session is unknown."""
    return await _one(request, _laps)


@routes.get("/api/v1/sessions/{id}/stints", allow_head=False)
async def get_stints(request: web.Request) -> web.Response:
    """The stints of a session in order; 404 if the session is unknown."""
    return await _one(request, _stints)


# ---- helpers --------------------------------------------------------------------------
async def _one(
    request: web.Request, query: Callable[[Engine, int], Out | None]
) -> web.Response:
    sid = path_id(request)
    if isinstance(sid, web.Response):
        return sid
    result = await _read(request, lambda engine: query(engine, sid))
    if result is None:
        return error_response(404, f"id: no session {sid}", ["id"])
    return json_response(result)


async def _read(request: web.Request, query: Callable[[Engine], T]) -> T:
    """Run a blocking query on the read-only engine in the default executor."""
    engine = request.app[READ_ENGINE]
    return await asyncio.get_running_loop().run_in_executor(None, query, engine)


def _sessions(engine: Engine) -> SessionList:
    rows = SessionReader(engine).sessions()
    return SessionList(
        sessions=[SessionOut.model_validate(r, from_attributes=True) for r in rows]
    )


def _session_detail(engine: Engine, session_id: int) -> SessionDetail | None:
    with SessionReader(engine).snapshot() as reader:
        row = reader.session(session_id)
        if row is None:
            return None
        totals = reader.lap_totals(session_id)
    summary = SessionOut.model_validate(row, from_attributes=True)
    return SessionDetail(
        **summary.model_dump(),
        lap_count=totals.count,
        best_lap_time=totals.best_lap_time,
        drivers=list(totals.drivers),
        session_info=row.session_info,
    )


def _laps(engine: Engine, session_id: int) -> LapList | None:
    with SessionReader(engine).snapshot() as reader:
        if reader.session(session_id) is None:
            return None
        rows = reader.laps(session_id)
    laps = [
        LapOut(
            id=lap.id,
            lap_number=lap.lap_number,
            stint_id=lap.stint_id,
            driver_id=lap.driver_id,
            driver_name=lap.driver_name,
            start_time=lap.start_time,
            end_time=lap.end_time,
            lap_time=lap.lap_time,
            fuel_used=lap.fuel_used,
            pit_lap=lap.pit_lap,
            max_speed=lap.max_speed,
        )
        for lap in rows
    ]
    return LapList(session_id=session_id, laps=laps)


def _stints(engine: Engine, session_id: int) -> StintList | None:
    with SessionReader(engine).snapshot() as reader:
        if reader.session(session_id) is None:
            return None
        rows = reader.stints(session_id)
    stints = [
        StintOut(
            id=stint.id,
            number=stint.number,
            driver_id=stint.driver_id,
            driver_name=stint.driver_name,
            start_time=stint.start_time,
            end_time=stint.end_time,
            lap_count=stint.lap_count,
        )
        for stint in rows
    ]
    return StintList(session_id=session_id, stints=stints)
