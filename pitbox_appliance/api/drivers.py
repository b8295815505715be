"""Driver profiles and live training mode: GET /api/v1/drivers[/{id}], driver settings, marking a session as training."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from pitbox_appliance.api import auth
from pitbox_appliance.api.context import (
    SERVICE,
    error_response,
    json_response,
    path_id,
    read_body,
)
from pitbox_appliance.coaching.live import Notice
from pitbox_appliance.coaching.profile import DriverSettings, ExtendedDriverProfile
from pitbox_appliance.coaching.service import CoachingService

logger = logging.getLogger(__name__)

COACHING = web.AppKey("coaching", CoachingService)
PUMP = web.AppKey("coaching_pump", asyncio.Task[None])
#: How often live training's measurements are stored and its notices sent.
PUMP_S = 0.5

routes = web.RouteTableDef()

# Who may call what (auth.py keeps the table; these routes are this module's).
_SCOPES = {
    ("POST", "/api/v1/drivers/{id}/settings"): "commands",
    ("POST", "/api/v1/sessions/{id}/training"): "commands",
}
if "read" in auth.SCOPES:
    _SCOPES |= {
        ("GET", "/api/v1/drivers"): "read",
        ("GET", "/api/v1/drivers/{id}"): "read",
    }
auth.REQUIRED_SCOPE.update(_SCOPES)


class DriverSummary(BaseModel):
    """One driver in the list: counts and settings."""

    driver: str
    goals: int
    goals_completed: int
    badges: list[str]
    settings: DriverSettings


class DriverList(BaseModel):
    drivers: list[DriverSummary]


class DriverDetail(BaseModel):
    """A driver's whole profile (seed §3.2, camelCase) and the next practice's plan."""

    profile: dict[str, Any]
    plan: dict[str, Any] | None


class TrainingIn(BaseModel):
    """Mark a session as training for a driver (``active: false`` ends it)."""

    model_config = ConfigDict(extra="forbid")

    driver: str = Field(min_length=1, max_length=128)
    active: bool = True
    reference_session_id: int | None = Field(None, ge=0, lt=2**63)
    reference_lap: int | None = Field(None, ge=-1, lt=2**31)


class TrainingOut(BaseModel):
    """The goals made, the reference lap and the plan (empty when ended)."""

    session_id: int
    driver: str
    active: bool
    car: str = ""
    track_id: str = ""
    corners: list[str] = Field(default_factory=list)
    goals: list[dict[str, Any]] = Field(default_factory=list)
    comparison: list[dict[str, Any]] = Field(default_factory=list)
    reference: dict[str, Any] | None = None
    plan: dict[str, Any] | None = None


def setup(app: web.Application) -> None:
    """Open the coaching service on the core's writer engine; run the pump."""
    service = app[SERVICE]
    app[COACHING] = CoachingService(service.engine)

    async def start(app: web.Application) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, app[COACHING].load)
        app[PUMP] = asyncio.create_task(_pump(app))

    async def stop(app: web.Application) -> None:
        task = app.get(PUMP)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app.on_startup.append(start)
    app.on_cleanup.append(stop)


@routes.get("/api/v1/drivers", allow_head=False)
async def list_drivers(request: web.Request) -> web.Response:
    """Every driver with a profile or a stored lap."""
    coaching = request.app[COACHING]
    loop = asyncio.get_running_loop()
    profiles = await loop.run_in_executor(None, _all_profiles, coaching)
    return json_response(
        DriverList(
            drivers=[
                DriverSummary(
                    driver=p.driver,
                    goals=len(p.training_goals),
                    goals_completed=sum(
                        1 for g in p.training_goals if g.completed_at is not None
                    ),
                    badges=[b.name for b in p.badges],
                    settings=p.settings,
                )
                for p in profiles
            ]
        )
    )


@routes.get("/api/v1/drivers/{id}", allow_head=False)
async def get_driver(request: web.Request) -> web.Response:
    """One driver's profile (by name) and their latest training plan."""
    coaching = request.app[COACHING]
    name = request.match_info["id"]
    loop = asyncio.get_running_loop()
    known = await loop.run_in_executor(None, coaching.store.drivers)
    if name not in known:
        return error_response(404, f"id: no driver {name!r}", ["id"])
    profile, plan = await loop.run_in_executor(
        None, lambda: (coaching.profile(name), coaching.plan_of(name))
    )
    return json_response(DriverDetail(profile=profile.as_json(), plan=plan))


@routes.post("/api/v1/drivers/{id}/settings")
async def set_settings(request: web.Request) -> web.Response:
    """Replace a driver's settings (units, shim alerts, message display)."""
    body = await read_body(request, DriverSettings)
    if isinstance(body, web.Response):
        return body
    coaching = request.app[COACHING]
    name = request.match_info["id"]
    if not 0 < len(name) <= 128:
        return error_response(400, "id: a driver name of 1-128 characters", ["id"])
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, coaching.save_settings, name, body)
    return json_response(body)


@routes.post("/api/v1/sessions/{id}/training")
async def mark_training(request: web.Request) -> web.Response:
    """Mark a practice session as training for a driver: goals, plan, live progress."""
    session_id = path_id(request)
    if isinstance(session_id, web.Response):
        return session_id
    body = await read_body(request, TrainingIn)
    if isinstance(body, web.Response):
        return body
    reference = None
    if (body.reference_session_id is None) != (body.reference_lap is None):
        return error_response(
            400,
            "reference_session_id and reference_lap go together",
            ["reference_session_id", "reference_lap"],
        )
    if body.reference_session_id is not None and body.reference_lap is not None:
        reference = (body.reference_session_id, body.reference_lap)
    coaching = request.app[COACHING]
    loop = asyncio.get_running_loop()
    try:
        if not body.active:
            await loop.run_in_executor(None, coaching.unmark_training, session_id)
            return json_response(
                TrainingOut(session_id=session_id, driver=body.driver, active=False)
            )
        made = await loop.run_in_executor(
            None, coaching.mark_training, session_id, body.driver, reference
        )
    except LookupError as exc:
        return error_response(404, str(exc).strip("'\""), ["id"])
    return json_response(TrainingOut(active=True, **made))


def _all_profiles(coaching: CoachingService) -> list[ExtendedDriverProfile]:
    return [coaching.profile(d) for d in coaching.store.drivers()]


async def _pump(app: web.Application) -> None:
    """Store what live training measured; send its notices to the driving PCs."""
    coaching = app[COACHING]
    service = app[SERVICE]
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(PUMP_S)
        try:
            notices = await loop.run_in_executor(None, coaching.pump)
        except Exception:
            logger.exception("live training results not stored")
            continue
        for notice in notices:
            await loop.run_in_executor(None, _send, service, notice)


def _send(service: Any, notice: Notice) -> None:
    try:
        service.send_command(notice.car, "message", {"text": notice.text})
    except LookupError as exc:
        logger.info("training notice for %s not sent: %s", notice.driver, exc)
