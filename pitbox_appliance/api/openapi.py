"""The OpenAPI 3.1 document of API v1, built from the pydantic schemas, and its route."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from driver_pc.protocol.events import PAYLOADS
from pitbox_appliance.api.auth import OPEN_ROUTES, ROUTE_SCOPES, SCOPES
from pitbox_appliance.api.drivers import (
    DriverDetail,
    DriverList,
    TrainingIn,
    TrainingOut,
)
from pitbox_appliance.api.pairing import PairIn, PairOut
from pitbox_appliance.api.schemas import (
    CommandIn,
    CommandOut,
    DeadLetterDetail,
    DeadLetterList,
    DeviceList,
    DeviceOut,
    DriverRegistration,
    ErrorOut,
    HealthOut,
    LapList,
    PairingIn,
    PairingOut,
    RegistrationList,
    RegistrationOut,
    RetryOut,
    SessionDetail,
    SessionList,
    StatusOut,
    StatusUpdate,
    StintList,
    StreamError,
    StreamReply,
    VideoOut,
)
from pitbox_appliance.api.session_events import EventsIn, EventsOut
from pitbox_appliance.api.video import VIDEO_TYPES
from pitbox_appliance.coaching.profile import DriverSettings

routes = web.RouteTableDef()

Method = Literal["GET", "POST"]


@dataclass(frozen=True, slots=True)
class Operation:
    """One documented route; a test holds this table and the router in step."""

    method: Method
    path: str
    summary: str
    response: type[BaseModel] | None
    status: int = 200
    body: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()
    description: str = ""
    # Optional query parameters: (name, description).
    query: tuple[tuple[str, str], ...] = ()
    # WebSockets (status 101): what the client sends, and the frames it receives.
    sends: str = ""
    receives: tuple[type[BaseModel], ...] = ()
    # A raw (non-JSON) request body: the media types accepted.
    raw_body: tuple[str, ...] = ()
    # Other answers with a body of their own: (status, model, meaning).
    alternatives: tuple[tuple[int, type[BaseModel], str], ...] = ()


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "GET",
        "/api/v1/health",
        "Core counters and ingest liveness",
        HealthOut,
        alternatives=(
            (503, HealthOut, "ingest stalled: the same body, `reason` says why"),
        ),
        description=(
            "200 while ingest keeps up; 503 with the same body when it stalls: the "
            "ingest thread is not running, storage has been failing for over 2 s, "
            "or messages wait and none was handled for over 2 s. `cars` gives each "
            "car's lag (seconds since its newest telemetry arrived)."
        ),
    ),
    Operation(
        "GET",
        "/api/v1/deadletters",
        "Messages the core could not ingest, kept as received, newest first",
        DeadLetterList,
    ),
    Operation(
        "GET",
        "/api/v1/deadletters/{id}",
        "One dead letter: reason, error, traceback, the message (base64)",
        DeadLetterDetail,
        errors=(400, 404),
    ),
    Operation(
        "POST",
        "/api/v1/deadletters/{id}/retry",
        "Ingest a dead letter again through the same path (after a fix)",
        RetryOut,
        errors=(400, 404, 503),
        description=(
            "Needs a token with scope `commands`. Done by the core, the database's "
            "only writer. `stored`: the letter is deleted; otherwise it stays with "
            "the new reason and one more attempt. 503 while storage is failing."
        ),
    ),
    Operation(
        "GET",
        "/api/v1/devices",
        "Paired driver PCs (role, shim state, spool) and the codes still waiting",
        DeviceList,
    ),
    Operation(
        "POST",
        "/api/v1/devices/pairings",
        "A one-time pairing code for a new driver PC (shown only in this answer)",
        PairingOut,
        status=201,
        body=PairingIn,
        errors=(400, 409),
        description="Needs a token with scope `commands` (the engineer).",
    ),
    Operation(
        "POST",
        "/api/v1/devices/{id}/revoke",
        "Revoke a driver PC by device id or source: login removed, key refused",
        DeviceOut,
        errors=(404,),
        description="Needs a token with scope `commands` (the engineer).",
    ),
    Operation("GET", "/api/v1/sessions", "Stored sessions, newest first", SessionList),
    Operation(
        "GET",
        "/api/v1/sessions/{id}",
        "One session with its summary figures",
        SessionDetail,
        errors=(400, 404),
    ),
    Operation(
        "GET",
        "/api/v1/sessions/{id}/laps",
        "Laps of a session in the order driven",
        LapList,
        errors=(400, 404),
    ),
    Operation(
        "GET",
        "/api/v1/sessions/{id}/stints",
        "Stints of a session in order",
        StintList,
        errors=(400, 404),
    ),
    Operation(
        "POST",
        "/api/v1/driver/register",
        "Register a driver PC for the current session",
        RegistrationOut,
        status=201,
        body=DriverRegistration,
        errors=(400, 403),
    ),
    Operation(
        "GET",
        "/api/v1/driver/registrations",
        "Who sits at each driver PC (the latest registration per source)",
        RegistrationList,
    ),
    Operation(
        "POST",
        "/api/v1/status/update",
        "Merge a driver PC's status into the core's shim status",
        StatusOut,
        body=StatusUpdate,
        errors=(400,),
    ),
    Operation(
        "POST",
        "/api/v1/cars/{car}/commands",
        "Send a camera switch or team message to the car's active driver PC",
        CommandOut,
        status=202,
        body=CommandIn,
        errors=(400, 404),
    ),
    Operation(
        "GET",
        "/api/v1/commands/{command_id}",
        "A command and the shim's confirmation (null while pending)",
        CommandOut,
        errors=(404,),
    ),
    Operation(
        "GET",
        "/api/v1/telemetry/stream",
        "WebSocket: stream wire messages",
        None,
        status=101,
        description=(
            "Upgrade to a WebSocket. Send each wire message (exactly the bytes sent "
            "over MQTT) as one binary frame; each is verified, stored and committed, "
            "then answered with a text frame holding `StreamReply`. A text frame or "
            "a frame over 2 MiB is answered with `StreamError`; a frame over 8 MiB "
            "closes the socket (1009)."
        ),
        sends="binary: one wire message (driver_pc.protocol.codec)",
        receives=(StreamReply, StreamError),
    ),
    Operation(
        "GET",
        "/api/v1/events/stream",
        "WebSocket: the appliance's typed events",
        None,
        status=101,
        query=(("car", "only this car's events"),),
        sends="nothing (frames sent by the client are ignored)",
        receives=tuple(PAYLOADS.values()),
        description=(
            "Upgrade to a WebSocket. Each event the appliance publishes on MQTT "
            "(`pitbox/v1/live/<car>/events`) arrives as one text frame: a JSON object "
            '`{"kind", "car", ...payload}`, the payload typed per kind in '
            "`driver_pc/protocol/events.py`. A client more than 1000 events behind "
            "is disconnected."
        ),
    ),
    Operation(
        "POST",
        "/api/v1/events",
        "Store and publish report, goal and badge events in a stored session",
        EventsOut,
        status=201,
        body=EventsIn,
        errors=(400, 404, 503),
        description=(
            "Needs a token with scope `pipeline` (the post-race pipeline, `pitbox "
            "report --api`). Kinds: `session_report_ready`, `training_goal_progress`, "
            "`badge_earned`, `setup_impact_analysis`, each payload as its schema in "
            "`driver_pc/protocol/events.py`. The core stores them in the session's "
            "events and publishes them like its own (MQTT and "
            "`/api/v1/events/stream`). An event already stored with the same kind "
            "and payload is not stored again (`already`)."
        ),
    ),
    Operation(
        "POST",
        "/api/v1/video/upload",
        "Upload a driver POV video segment (the raw file as the body)",
        VideoOut,
        status=201,
        query=(
            ("source", "the driver PC that recorded it, e.g. car42-pc1 (required)"),
            ("name", "file name to store it under (required)"),
            ("start", "session time the segment starts, s (required)"),
            ("end", "session time the segment ends, s (required)"),
        ),
        raw_body=tuple(sorted(VIDEO_TYPES)),
        errors=(400, 409, 413, 415),
        description=(
            "Streams the body to disk (never held in memory), stores it under the "
            "car's current session, and announces it with a `video_segment_ready` "
            "event. Needs a token with scope `driver`."
        ),
    ),
    Operation(
        "POST",
        "/api/v1/pair",
        "Redeem a pairing code for a driver PC's sealed credentials (no token)",
        PairOut,
        body=PairIn,
        errors=(400, 403, 429, 503),
        description=(
            "The code itself is never sent: see docs/security.md. Rate-limited per "
            "client address (failures) and overall (attempts)."
        ),
    ),
    Operation(
        "GET",
        "/api/v1/drivers",
        "Drivers with a profile or a stored lap: goals, badges, settings",
        DriverList,
    ),
    Operation(
        "GET",
        "/api/v1/drivers/{id}",
        "A driver's profile (ExtendedDriverProfile, camelCase) and latest plan",
        DriverDetail,
        errors=(404,),
        description="`id` is the driver's name as the sim gives it (URL-encoded).",
    ),
    Operation(
        "POST",
        "/api/v1/drivers/{id}/settings",
        "Replace a driver's settings: units, alerts sent to their shim, messages",
        DriverSettings,
        body=DriverSettings,
        errors=(400,),
        description="Needs a token with scope `commands`. Settings follow the "
        "driver to whichever PC drives.",
    ),
    Operation(
        "POST",
        "/api/v1/sessions/{id}/training",
        "Mark a practice session as training: goals, reference lap, plan",
        TrainingOut,
        body=TrainingIn,
        errors=(400, 404),
        description=(
            "Needs a token with scope `commands`. Goals come from the driver's "
            "weakest corners against the team's best driver in the same car and "
            "track (or the reference lap given); progress and badges are then "
            "measured live on every lap (docs/training.md). `active: false` ends it."
        ),
    ),
    Operation("GET", "/api/v1/openapi.json", "This document", None),
)


@routes.get("/api/v1/openapi.json", allow_head=False)
async def get_openapi(request: web.Request) -> web.Response:
    """The OpenAPI document of every route."""
    return web.json_response(openapi_document())


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document: OPERATIONS with the pydantic models as components."""
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorOut, "serialization")]
    for op in OPERATIONS:
        if op.body is not None:
            wanted.append((op.body, "validation"))
        if op.response is not None:
            wanted.append((op.response, "serialization"))
    wanted.extend((m, "serialization") for op in OPERATIONS for m in op.receives)
    wanted.extend(
        (model, "serialization") for op in OPERATIONS for _, model, _ in op.alternatives
    )
    refs, top = models_json_schema(
        list(dict.fromkeys(wanted)), ref_template="#/components/schemas/{model}"
    )
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "PitBox appliance API",
            "version": "1",
            "description": "Served by the core process; see docs/api.md.",
        },
        "paths": paths,
        "components": {
            "schemas": top.get("$defs", {}),
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


#: How callers authenticate (docs/security.md): a bearer token bound to a principal
#: with scopes, or a paired driver PC's signature (the ``driver`` scope only).
SECURITY_SCHEMES: dict[str, Any] = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": (
            "An API token bound to a principal (device:, user:, service:) with "
            f"scopes among {', '.join(sorted(SCOPES))}; see docs/api.md."
        ),
    },
    "pitboxDevice": {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": (
            "`PitBox-Device source=…,ts=…,nonce=…,sig=…`: a paired driver PC's "
            "request signed with its message key (driver_pc/protocol/device_auth.py); "
            "grants the `driver` scope for that PC only."
        ),
    },
}


def _operation(op: Operation, refs: Mapping[Any, dict[str, Any]]) -> dict[str, Any]:
    success: dict[str, Any] = {"description": op.summary}
    if op.response is not None:
        success["content"] = _json(refs[(op.response, "serialization")])
    elif op.status == 200:
        success["content"] = _json({"type": "object"})
    doc: dict[str, Any] = {
        "summary": op.summary,
        "operationId": _operation_id(op),
        "responses": {str(op.status): success},
    }
    if op.description:
        doc["description"] = op.description
    if (op.method, op.path) in OPEN_ROUTES:
        doc["security"] = []
    else:
        scope = ROUTE_SCOPES.get((op.method, op.path), "read")
        doc["security"] = [{"bearer": [scope]}]
        if scope == "driver":
            doc["security"].append({"pitboxDevice": [scope]})
        doc["x-required-scope"] = scope
    if op.status == 101:
        doc["x-websocket-frames"] = {
            "send": op.sends,
            "receive": [refs[(m, "serialization")] for m in op.receives],
        }
    params = [
        {"name": p, "in": "path", "required": True, "schema": _path_schema(p)}
        for p in re.findall(r"{(\w+)}", op.path)
    ]
    params += [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": text,
            "schema": {"type": "string"},
        }
        for name, text in op.query
    ]
    if params:
        doc["parameters"] = params
    if op.body is not None:
        doc["requestBody"] = {
            "required": True,
            "content": _json(refs[(op.body, "validation")]),
        }
    if op.raw_body:
        binary = {"schema": {"type": "string", "format": "binary"}}
        doc["requestBody"] = {
            "required": True,
            "content": {media: binary for media in op.raw_body},
        }
    for status, model, meaning in op.alternatives:
        doc["responses"][str(status)] = {
            "description": meaning,
            "content": _json(refs[(model, "serialization")]),
        }
    error_ref = refs[(ErrorOut, "serialization")]
    errors = op.errors
    if (op.method, op.path) not in OPEN_ROUTES:
        errors = tuple(sorted({*errors, 401, 403}))
    for status in errors:
        doc["responses"][str(status)] = {
            "description": ERROR_MEANINGS[status],
            "content": _json(error_ref),
        }
    return doc


ERROR_MEANINGS = {
    400: "bad request; names the field",
    401: "no token, or an unknown one (Authorization)",
    403: (
        "refused: the token lacks the route's scope, a driver PC's request names "
        "another PC, or the pairing code is wrong, used or expired"
    ),
    404: "unknown id",
    409: "conflicts with what is stored (no session yet, name taken)",
    413: "body too large",
    415: "media type not accepted",
    429: "too many attempts; see Retry-After",
    503: "not available now: not set up on this appliance, or storage failing",
}


def _json(schema: Any) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _operation_id(op: Operation) -> str:
    words = re.sub(r"[{}]", "", op.path.removeprefix("/api/v1/")).replace(".", "_")
    return op.method.lower() + "_" + re.sub(r"[/-]", "_", words)


def _path_schema(name: str) -> dict[str, Any]:
    """Row ids are SQLite INTEGERs (``context.path_id``); other parameters are text."""
    if name == "id" or name.endswith("_id"):
        return {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}
    return {"type": "string"}
