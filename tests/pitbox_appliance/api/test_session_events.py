"""POST /api/v1/events: the pipeline's events are stored in their session and streamed, once."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select
from sqlalchemy.orm import Session

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from pitbox_appliance.api.app import create_app
from pitbox_appliance.storage.models import Event, RaceSession
from tests.conftest import RunningAppliance, readonly_engine, wait_for

PIPELINE = "p" * 32
COMMANDS = "c" * 32
READER = "r" * 32
TOKENS = {
    PIPELINE: frozenset({"pipeline"}),
    COMMANDS: frozenset({"commands"}),
    READER: frozenset({"read"}),
}


def stored(db_url: str, kind: str) -> list[Event]:
    engine = readonly_engine(db_url)
    with Session(engine) as db:
        rows = list(db.scalars(select(Event).where(Event.kind == kind)))
    engine.dispose()
    return rows


def test_posted_events_are_stored_streamed_and_not_repeated(
    appliance: RunningAppliance,
) -> None:
    shim = appliance.start_shim(RaceSimulatorAdapter(laps=2, speed=0, seed=5))
    assert wait_for(lambda: shim.final_spool_depth == 0, timeout=60)
    engine = readonly_engine(appliance.db_url)
    with Session(engine) as db:
        race = db.scalars(select(RaceSession)).one()
        key, last = race.session_key, race.last_time
    engine.dispose()
    ready = {"session_key": key, "url": "s3://b/x/report.html", "pdf_url": None}
    badge = {"driver": "Alex Sim", "badge_id": "b1", "badge": "Clean", "reason": "0x"}
    body: dict[str, Any] = {
        "car": "car1",
        "session_key": key,
        "events": [
            {"kind": "session_report_ready", "payload": ready},
            {"kind": "badge_earned", "payload": badge, "session_time": 12.5},
        ],
    }
    bearer = {"Authorization": f"Bearer {PIPELINE}"}

    async def scenario() -> tuple[list[int], list[dict[str, Any]], list[Any]]:
        app = create_app(appliance.core, tokens=TOKENS)
        async with TestClient(TestServer(app)) as client:
            stream = await client.ws_connect(
                "/api/v1/events/stream?car=car1",
                headers={"Authorization": f"Bearer {READER}"},
            )
            statuses = []
            answers = []
            for headers in ({}, {"Authorization": f"Bearer {COMMANDS}"}):
                response = await client.post(
                    "/api/v1/events", json=body, headers=headers
                )
                statuses.append(response.status)
            for payload in (
                {**body, "session_key": "nope"},
                {**body, "car": "car2"},
                {**body, "events": [{"kind": "lap_completed", "payload": {}}]},
                {**body, "events": [{"kind": "badge_earned", "payload": {"x": 1}}]},
            ):
                response = await client.post(
                    "/api/v1/events", json=payload, headers=bearer
                )
                statuses.append(response.status)
            for _ in range(2):
                response = await client.post(
                    "/api/v1/events", json=body, headers=bearer
                )
                statuses.append(response.status)
                answers.append(await response.json())
            frames: list[dict[str, Any]] = []
            while not any(f["kind"] == "badge_earned" for f in frames):
                frames.append(await asyncio.wait_for(stream.receive_json(), 10))
            await stream.close()
            return statuses, frames, answers

    statuses, frames, answers = asyncio.run(scenario())
    assert statuses == [401, 403, 404, 404, 400, 400, 201, 201]
    assert answers[0]["stored"] == 2
    assert answers[0]["already"] == 0
    assert answers[1] == {**answers[0], "stored": 0, "already": 2}
    kinds = [f["kind"] for f in frames if f["kind"] != "lap_completed"]
    assert kinds[-2:] == ["session_report_ready", "badge_earned"]
    assert next(f for f in frames if f["kind"] == "session_report_ready") == {
        "kind": "session_report_ready",
        "car": "car1",
        **ready,
    }
    (report,) = stored(appliance.db_url, "session_report_ready")
    assert report.payload == ready
    assert report.session_time == last
    (earned,) = stored(appliance.db_url, "badge_earned")
    assert earned.session_time == 12.5
