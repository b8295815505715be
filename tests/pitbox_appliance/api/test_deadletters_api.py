"""API v1: health says when ingest stalls (503); dead letters listed, shown and retried."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.exc import OperationalError

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from driver_pc.pipeline import ShimPipeline
from driver_pc.protocol.codec import Codec
from driver_pc.protocol.messages import DriverChange
from pitbox_appliance.api.app import create_app
from pitbox_appliance.api.schemas import DeadLetterDetail, DeadLetterList, HealthOut
from pitbox_appliance.config import ApplianceConfig, CoreConfig
from pitbox_appliance.core.car import CarTracker
from pitbox_appliance.core.service import CoreService

SOURCE = "car42-pc1"
TOKEN = "deadletters-token-0123456789"
DRIVER_TOKEN = "driver-only-token-0123456789"
TOKENS = {
    TOKEN: frozenset({"read", "commands", "driver"}),
    DRIVER_TOKEN: frozenset({"driver"}),
}
Client = TestClient[web.Request, web.Application]
KEY = os.urandom(32)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[CoreService]:
    core = CoreService(
        ApplianceConfig(core=CoreConfig(db_url=f"sqlite:///{tmp_path / 'p.db'}")),
        KEY,
    )
    yield core
    core.writer.close()
    core.engine.dispose()


@pytest.fixture
async def client(service: CoreService) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with TestClient(
        TestServer(create_app(service, tokens=TOKENS)), headers=headers
    ) as test_client:
        yield test_client


def frames(laps: int = 1) -> list[bytes]:
    codec = Codec(KEY)
    pipeline = ShimPipeline(RaceSimulatorAdapter(laps=laps, speed=0, seed=2))
    return [
        codec.encode(SOURCE, seq, m) for seq, m in enumerate(pipeline.messages(), 1)
    ]


async def stream(client: Client, payloads: list[bytes]) -> list[dict[str, Any]]:
    replies = []
    async with client.ws_connect("/api/v1/telemetry/stream") as ws:
        for payload in payloads:
            await ws.send_bytes(payload)
            replies.append(json.loads(await ws.receive_str(timeout=10)))
    return replies


# ---- health ---------------------------------------------------------------------------------
async def test_health_is_ok_and_reports_liveness(client: Client) -> None:
    response = await client.get("/api/v1/health")
    assert response.status == 200
    body = await response.json()
    HealthOut.model_validate(body)
    assert body["status"] == "ok"
    assert body["reason"] is None
    assert body["last_message_age_s"] is None
    assert body["cars"] == {}
    await stream(client, frames()[:30])
    body = await (await client.get("/api/v1/health")).json()
    assert body["cars"]["car42"]["lag_s"] < 5
    assert body["last_message_age_s"] < 5


async def test_health_is_503_with_the_reason_when_storage_fails(
    client: Client, service: CoreService
) -> None:
    service._held = OperationalError(
        "COMMIT", {}, Exception("database or disk is full")
    )
    service._held_since = time.monotonic() - 5
    response = await client.get("/api/v1/health")
    assert response.status == 503
    body = await response.json()
    HealthOut.model_validate(body)
    assert body["status"] == "stalled"
    assert "database or disk is full" in body["reason"]
    # Meanwhile a streamed message is not taken: the client sends it again later.
    assert await stream(client, frames()[:1]) == [
        {"seq_ok": False, "reason": "storage"}
    ]
    service._held = None
    assert (await client.get("/api/v1/health")).status == 200


async def test_health_is_503_when_messages_wait_and_none_is_handled(
    client: Client, service: CoreService
) -> None:
    service._inbox.put(("pitbox/v1/shim/car42-pc1/data", b"x", 1))
    service._progress = time.monotonic() - 3
    response = await client.get("/api/v1/health")
    assert response.status == 503
    assert "no message handled for" in (await response.json())["reason"]


async def test_health_is_503_when_the_ingest_thread_is_gone(
    client: Client, service: CoreService
) -> None:
    service._ingest_started = True  # started, and no longer alive
    response = await client.get("/api/v1/health")
    assert response.status == 503
    assert (await response.json())["reason"] == "the ingest thread is not running"


# ---- dead letters ---------------------------------------------------------------------------
def bad_driver_change(seq: int) -> bytes:
    change = DriverChange("sim-session", float("nan"), 0, 7, "Bad Shim")
    return Codec(KEY).encode(SOURCE, seq, DriverChange(**asdict(change)))


async def test_dead_letters_are_listed_shown_and_retried(
    client: Client, service: CoreService, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert await (await client.get("/api/v1/deadletters")).json() == {
        "dead_letters": []
    }
    good = frames()
    broken = {"on": True}
    original = CarTracker.session_info

    def session_info(self: CarTracker, msg: Any) -> None:
        if broken["on"]:
            raise KeyError("DriverInfo")
        original(self, msg)

    monkeypatch.setattr(CarTracker, "session_info", session_info)
    replies = await stream(client, [*good[:10], bad_driver_change(len(good) + 1)])
    reasons = [r.get("reason") for r in replies if not r["seq_ok"]]
    assert reasons == [
        "dead_letter:KeyError",
        "dead_letter:invalid:DriverChange.session_time",
    ]
    listed = DeadLetterList.model_validate(
        await (await client.get("/api/v1/deadletters")).json()
    ).dead_letters
    assert [(d.kind, d.reason, d.source) for d in listed] == [
        ("driver_change", "invalid:DriverChange.session_time", SOURCE),
        ("session_info", "KeyError", SOURCE),
    ]
    info_letter = listed[1]
    assert info_letter.topic == "api/v1/telemetry/stream"
    detail = DeadLetterDetail.model_validate(
        await (await client.get(f"/api/v1/deadletters/{info_letter.id}")).json()
    )
    assert "KeyError" in detail.traceback
    assert base64.b64decode(detail.payload_base64) in good
    # Retrying needs the commands scope.
    path = f"/api/v1/deadletters/{info_letter.id}/retry"
    anonymous = await client.post(path, headers={"Authorization": ""})
    assert anonymous.status == 401
    narrow = await client.post(
        path, headers={"Authorization": f"Bearer {DRIVER_TOKEN}"}
    )
    assert narrow.status == 403
    again = await (await client.post(path)).json()
    assert again == {
        "id": info_letter.id,
        "outcome": "dead_letter",
        "reason": "KeyError",
    }
    broken["on"] = False  # the fix
    assert await (await client.post(path)).json() == {
        "id": info_letter.id,
        "outcome": "stored",
        "reason": None,
    }
    assert (await client.get(f"/api/v1/deadletters/{info_letter.id}")).status == 404
    assert (await client.post(path)).status == 404
    (left,) = (await (await client.get("/api/v1/deadletters")).json())["dead_letters"]
    assert left["reason"] == "invalid:DriverChange.session_time"
    assert (await client.get("/api/v1/deadletters/notanumber")).status == 400
