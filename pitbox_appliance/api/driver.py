"""Driver-PC resources: registration for the session and status updates."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp import web

from pitbox_appliance.api.context import (
    REGISTRATIONS,
    SERVICE,
    error_response,
    json_response,
    read_body,
)
from pitbox_appliance.api.schemas import (
    DriverRegistration,
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
    """Register a driver PC (kept in memory, keyed by source); 201 with the record."""
    body = await read_body(request, DriverRegistration)
    if isinstance(body, web.Response):
        return body
    if car_of_source(body.source) != body.car:
        # Ingest files a source's data under the car its id names; a disagreeing
        # registration would show the driver on a car that gets none of their laps.
        return error_response(
            400,
            f"car: {body.car!r} does not match source {body.source!r} "
            f"(source ids are <car>-<pc>)",
            ["car"],
        )
    registration = RegistrationOut(**body.model_dump(), registered_at=time.time())
    request.app[REGISTRATIONS][body.source] = registration
    logger.info(
        "driver PC %s registered: %s in %s (%s)",
        body.source,
        body.driver_name,
        body.car,
        body.sim,
    )
    return json_response(registration, status=201)


@routes.post("/api/v1/status/update")
async def update_status(request: web.Request) -> web.Response:
    """Merge a driver PC's status into what the core reports for that source."""
    body = await read_body(request, StatusUpdate)
    if isinstance(body, web.Response):
        return body
    service = request.app[SERVICE]
    merged = await asyncio.get_running_loop().run_in_executor(
        None, _merge_status, service, body
    )
    return json_response(StatusOut(source=body.source, status=merged))


def _merge_status(service: CoreService, update: StatusUpdate) -> dict[str, Any]:
    fields = update.model_dump(exclude={"source"}, exclude_unset=True)
    return service.merge_shim_status(update.source, fields)
