"""Driver-PC resources: registration for the session and status updates."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp import web

from driver_pc.protocol.events import EventKind
from pitbox_appliance.api.auth import source_refusal
from pitbox_appliance.api.context import (
    REGISTRATIONS,
    SERVICE,
    error_response,
    json_response,
    read_body,
)
from pitbox_appliance.api.schemas import (
    DriverRegistration,
    RegistrationList,
    RegistrationOut,
    StatusOut,
    StatusUpdate,
)
from pitbox_appliance.core.ingest import car_of_source
from pitbox_appliance.core.service import CoreService

logger = logging.getLogger(__name__)

routes = web.RouteTableDef()


@routes.post("/api/v1/driver/register")
async def register_driver(request: web.Request) -> web.Response:
    """Register who sits at a driver PC; 201 with the record.

    ``GET /api/v1/driver/registrations`` lists the latest per PC. With a
    ``session_time`` the registration is also stored as a ``driver_registered``
    event of the car's current session (and published on its event stream).
    """
    body = await read_body(request, DriverRegistration)
    if isinstance(body, web.Response):
        return body
    car = car_of_source(body.source)
    if body.car is not None and body.car != car:
        # Ingest files a source's data under the car its id names; a disagreeing
        # registration would show the driver on a car that gets none of their laps.
        return error_response(
            400,
            f"car: {body.car!r} does not match source {body.source!r} "
            f"(source ids are <car>-<pc>)",
            ["car"],
        )
    refused = source_refusal(request, body.source)
    if refused is not None:
        return refused
    service = request.app[SERVICE]
    registered_at = time.time()
    loop = asyncio.get_running_loop()
    session_id = None
    if body.session_time is not None:
        payload = {
            "source": body.source,
            "driver_name": body.driver_name,
            "sim": body.sim,
            "user_id": body.user_id,
            "version": body.version,
        }
        try:
            session_id = await loop.run_in_executor(
                None,
                service.record_event,
                car,
                EventKind.DRIVER_REGISTERED.value,
                body.session_time,
                payload,
            )
        except LookupError:
            session_id = None  # no session of that car yet: registered all the same
    registration = RegistrationOut(
        **{**body.model_dump(), "car": car},
        registered_at=registered_at,
        session_id=session_id,
    )
    request.app[REGISTRATIONS][body.source] = registration
    logger.info(
        "driver PC %s registered: %s in %s (%s)",
        body.source,
        body.driver_name,
        car,
        body.sim,
    )
    return json_response(registration, status=201)


@routes.get("/api/v1/driver/registrations", allow_head=False)
async def list_registrations(request: web.Request) -> web.Response:
    """Who sits at each driver PC: the latest registration per source since the core started."""
    registrations = sorted(request.app[REGISTRATIONS].values(), key=lambda r: r.source)
    return json_response(RegistrationList(registrations=registrations))


@routes.post("/api/v1/status/update")
async def update_status(request: web.Request) -> web.Response:
    """Merge a driver PC's status into what the core reports for that source."""
    body = await read_body(request, StatusUpdate)
    if isinstance(body, web.Response):
        return body
    refused = source_refusal(request, body.source)
    if refused is not None:
        return refused
    service = request.app[SERVICE]
    merged = await asyncio.get_running_loop().run_in_executor(
        None, _merge_status, service, body
    )
    return json_response(StatusOut(source=body.source, status=merged))


def _merge_status(service: CoreService, update: StatusUpdate) -> dict[str, Any]:
    fields = update.model_dump(exclude={"source"}, exclude_unset=True)
    return service.merge_shim_status(update.source, fields)
