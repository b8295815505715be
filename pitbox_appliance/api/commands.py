"""Commands to driver PCs (camera switch, team messages) and their confirmed results."""

from __future__ import annotations

import asyncio
import functools
import logging
import re

from aiohttp import web

from pitbox_appliance.api.auth import acting_user
from pitbox_appliance.api.context import (
    PRINCIPAL,
    SERVICE,
    error_response,
    json_response,
    read_body,
)
from pitbox_appliance.api.schemas import CommandIn, CommandKind, CommandOut

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()
_CAR = re.compile(r"^[A-Za-z0-9_.]{1,64}$")


@routes.post("/api/v1/cars/{car}/commands")
async def send_command(request: web.Request) -> web.Response:
    """Send a command to the car's active shim; 202 with the id to poll."""
    car = request.match_info["car"]
    if not _CAR.match(car):
        return error_response(400, f"car: invalid car id {car!r}", ["car"])
    body = await read_body(request, CommandIn)
    if isinstance(body, web.Response):
        return body
    problem = _check_args(body)
    if problem is not None:
        return error_response(400, problem, ["args"])
    by = acting_user(request, body.by)
    if isinstance(by, web.Response):
        return by
    service = request.app[SERVICE]
    loop = asyncio.get_running_loop()
    try:
        command = await loop.run_in_executor(
            None,
            functools.partial(
                service.send_command,
                car,
                body.kind.value,
                dict(body.args),
                by=by or None,
            ),
        )
    except LookupError as exc:
        return error_response(404, str(exc), ["car"])
    # The audit line: who asked for what (never a message's text: it may be private).
    logger.info(
        "command %s (%s) to %s by %s (token of %s)",
        command.command_id,
        body.kind.value,
        car,
        by or "nobody named",
        request.get(PRINCIPAL, "?"),
    )
    status = await loop.run_in_executor(
        None, service.command_status, command.command_id
    )
    assert status is not None
    return json_response(
        CommandOut(command_id=command.command_id, **status), status=202
    )


@routes.get("/api/v1/commands/{command_id}", allow_head=False)
async def command_status(request: web.Request) -> web.Response:
    """A command's state: ``result`` stays null until the shim confirmed it."""
    command_id = request.match_info["command_id"]
    service = request.app[SERVICE]
    status = await asyncio.get_running_loop().run_in_executor(
        None, service.command_status, command_id
    )
    if status is None:
        return error_response(
            404, f"command_id: no command {command_id!r}", ["command_id"]
        )
    return json_response(CommandOut(command_id=command_id, **status))


def _check_args(body: CommandIn) -> str | None:
    args = body.args
    if body.kind is CommandKind.CAMERA:
        if not str(args.get("car", "")).strip():
            return "args.car: the car number to show is required"
        for key in ("group", "camera"):
            if key in args and not isinstance(args[key], int):
                return f"args.{key}: must be an integer"
    elif body.kind is CommandKind.MESSAGE:
        text = args.get("text")
        if not isinstance(text, str) or not 0 < len(text) <= 200:
            return "args.text: 1-200 characters of text are required"
    return None
