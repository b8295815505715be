"""Dead letters: the messages the core kept aside, and retrying one through ingest again.

Reads go through the read-only engine. A retry is done by the core itself (the only
writer of the database), so it works while the core runs; it needs a token with the
``commands`` scope.
"""

from __future__ import annotations

import asyncio
import base64

from aiohttp import web

from pitbox_appliance.api.context import (
    READ_ENGINE,
    SERVICE,
    error_response,
    json_response,
    path_id,
)
from pitbox_appliance.api.schemas import (
    DeadLetterDetail,
    DeadLetterList,
    DeadLetterOut,
    RetryOut,
    RetryOutcome,
)
from pitbox_appliance.core.service import StorageUnavailable
from pitbox_appliance.storage.dead_letters import (
    DeadLetterInfo,
    get_dead_letter,
    list_dead_letters,
)

routes = web.RouteTableDef()


@routes.get("/api/v1/deadletters", allow_head=False)
async def list_letters(request: web.Request) -> web.Response:
    """Every dead letter, newest first (without payloads)."""
    engine = request.app[READ_ENGINE]
    infos = await asyncio.get_running_loop().run_in_executor(
        None, list_dead_letters, engine
    )
    return json_response(DeadLetterList(dead_letters=[_out(i) for i in infos]))


@routes.get("/api/v1/deadletters/{id}", allow_head=False)
async def get_letter(request: web.Request) -> web.Response:
    """One dead letter in full: reason, error, traceback and the message (base64)."""
    letter_id = path_id(request)
    if isinstance(letter_id, web.Response):
        return letter_id
    engine = request.app[READ_ENGINE]
    record = await asyncio.get_running_loop().run_in_executor(
        None, get_dead_letter, engine, letter_id
    )
    if record is None:
        return error_response(404, f"id: no dead letter {letter_id}", ["id"])
    return json_response(
        DeadLetterDetail(
            **_out(record.info).model_dump(),
            detail=record.detail,
            traceback=record.traceback,
            payload_base64=base64.b64encode(record.payload).decode(),
        )
    )


@routes.post("/api/v1/deadletters/{id}/retry")
async def retry_letter(request: web.Request) -> web.Response:
    """Ingest a dead letter again (after a fix); stored: it is deleted."""
    letter_id = path_id(request)
    if isinstance(letter_id, web.Response):
        return letter_id
    service = request.app[SERVICE]
    try:
        handled = await asyncio.get_running_loop().run_in_executor(
            None, service.retry_dead_letter, letter_id
        )
    except LookupError:
        return error_response(404, f"id: no dead letter {letter_id}", ["id"])
    except StorageUnavailable as exc:
        return error_response(503, f"{exc}; retry later")
    return json_response(
        RetryOut(
            id=letter_id,
            outcome=RetryOutcome(handled.outcome.value),
            reason=None if handled.stored else handled.reason,
        )
    )


def _out(info: DeadLetterInfo) -> DeadLetterOut:
    return DeadLetterOut(
        id=info.id,
        received_at=info.received_at,
        topic=info.topic,
        source=info.source,
        seq=info.seq,
        kind=info.kind,
        reason=info.reason,
        attempts=info.attempts,
        last_attempt_at=info.last_attempt_at,
        bytes=info.size,
    )
