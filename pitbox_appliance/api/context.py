"""What every API resource shares: typed application keys, JSON errors, body validation."""

from __future__ import annotations

import json
import weakref
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError
from sqlalchemy import Engine

from driver_pc.protocol.device_auth import DeviceVerifier
from pitbox_appliance.api.schemas import ErrorOut, RegistrationOut
from pitbox_appliance.core.service import CoreService

SERVICE = web.AppKey("service", CoreService)
READ_ENGINE = web.AppKey("read_engine", Engine)
REGISTRATIONS = web.AppKey("registrations", dict[str, RegistrationOut])
STREAMS = web.AppKey("streams", weakref.WeakSet[web.WebSocketResponse])
DEVICES = web.AppKey("devices", DeviceVerifier)
# The source a device-signed request came from (``PitBox-Device``; see auth.py).
DEVICE_SOURCE = web.RequestKey("device_source", str)
# Who made the request (``device:<source>``, ``user:<name>``, ``service:<name>``) and the
# scopes it holds; set by ``auth.require_scope`` on every route but the open ones.
PRINCIPAL = web.RequestKey("principal", str)
SCOPES_GRANTED = web.RequestKey("scopes_granted", frozenset[str])

Model = TypeVar("Model", bound=BaseModel)


def json_response(model: BaseModel, status: int = 200) -> web.Response:
    """A pydantic model as a JSON response."""
    return web.json_response(
        text=model.model_dump_json(), status=status, content_type="application/json"
    )


def error_response(
    status: int, error: str, fields: list[str] | None = None
) -> web.Response:
    """The one error shape of the API: ``{"error": "...", "fields": [...]}``."""
    return json_response(ErrorOut(error=error, fields=fields or []), status=status)


async def read_body(request: web.Request, model: type[Model]) -> Model | web.Response:
    """The request body validated as ``model``, or a 400 response naming the bad fields."""
    try:
        data: Any = await request.json(loads=json.loads)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return error_response(400, "body: not valid JSON", ["body"])
    except RecursionError:
        return error_response(400, "body: JSON nested too deeply", ["body"])
    if not isinstance(data, dict):
        return error_response(400, "body: must be a JSON object", ["body"])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields = [
            ".".join(str(p) for p in err["loc"]) or "body" for err in exc.errors()
        ]
        problems = [
            f"{name}: {err['msg']}"
            for name, err in zip(fields, exc.errors(), strict=True)
        ]
        return error_response(400, "; ".join(problems), fields)


def path_id(request: web.Request, name: str = "id") -> int | web.Response:
    """An integer path parameter, or a 400 response naming it."""
    raw = request.match_info[name]
    try:
        value = int(raw)
    except ValueError:
        return error_response(400, f"{name}: must be an integer, got {raw!r}", [name])
    if not 0 <= value < 2**63:  # SQLite's INTEGER; larger ones raised OverflowError
        return error_response(400, f"{name}: out of range, got {raw!r}", [name])
    return value
