"""/api/v1/drivers and training mode over HTTP on the real core: profiles, settings, marking a session with a chosen reference lap."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from driver_pc.pipeline import ShimPipeline
from driver_pc.protocol.codec import Codec
from pitbox_appliance.api.app import create_app
from pitbox_appliance.coaching.live import BOARD
from pitbox_appliance.config import ApplianceConfig, CoreConfig
from pitbox_appliance.core.service import CoreService
from pitbox_appliance.storage.reader import SessionReader

pytestmark = pytest.mark.timeout(600)

TOKEN = "coach-token-0123456789abcdef"
Client = TestClient[Any, Any]


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, bytes]:
    """A database with a practice of Alex and one of Bea (same car and track)."""
    key = os.urandom(32)
    db_url = f"sqlite:///{tmp_path_factory.mktemp('drivers') / 'p.sqlite3'}"
    core = CoreService(ApplianceConfig(core=CoreConfig(db_url=db_url)), key)
    codec = Codec(key)
    seq = 1
    try:
        for driver, seed in (("Alex Sim", 3), ("Bea Sim", 4)):
            sim = RaceSimulatorAdapter(
                laps=6, speed=0, seed=seed, drivers=(driver,), session_key=f"s-{seed}"
            )
            for message in ShimPipeline(sim).messages():
                assert core.ingest_frame(codec.encode("car42-pc1", seq, message)).stored
                seq += 1
    finally:
        core.writer.close()
        core.engine.dispose()
    return db_url, key


@pytest.fixture
def service(stored: tuple[str, bytes]) -> Iterator[CoreService]:
    BOARD.reset()
    db_url, key = stored
    core = CoreService(ApplianceConfig(core=CoreConfig(db_url=db_url)), key)
    yield core
    core.writer.close()
    core.engine.dispose()
    BOARD.reset()


@pytest.fixture
async def client(service: CoreService) -> AsyncIterator[Client]:
    app = create_app(service, tokens={TOKEN: frozenset({"read", "commands"})})
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with TestClient(TestServer(app), headers=headers) as test_client:
        yield test_client


async def _json(client: Client, method: str, path: str, status: int, **kw: Any) -> Any:
    response = await client.request(method, path, **kw)
    assert response.status == status, await response.text()
    return await response.json()


async def test_profiles_are_listed_and_read(client: Client) -> None:
    listed = await _json(client, "GET", "/api/v1/drivers", 200)
    assert [d["driver"] for d in listed["drivers"]] == ["Alex Sim", "Bea Sim"]
    detail = await _json(client, "GET", "/api/v1/drivers/Bea%20Sim", 200)
    profile = detail["profile"]
    assert {
        "trainingGoals",
        "badges",
        "fatigueModel",
        "preferredSetups",
        "settings",
    } <= set(profile)
    assert set(profile["fatigueModel"]) >= {
        "baseline",
        "currentLevel",
        "riskThreshold",
        "recoveryRate",
        "lastUpdate",
    }
    missing = await _json(client, "GET", "/api/v1/drivers/Nobody", 404)
    assert missing["fields"] == ["id"]


async def test_settings_follow_the_driver(client: Client) -> None:
    unauthorised = await client.post(
        "/api/v1/drivers/Bea%20Sim/settings",
        json={"units": "imperial"},
        headers={"Authorization": ""},
    )
    assert unauthorised.status == 401
    bad = await _json(
        client, "POST", "/api/v1/drivers/Bea%20Sim/settings", 400, json={"units": "x"}
    )
    assert bad["fields"] == ["units"]
    body = {"units": "imperial", "shimAlerts": ["badge_earned"], "messageMaxChars": 40}
    await _json(client, "POST", "/api/v1/drivers/Bea%20Sim/settings", 200, json=body)
    detail = await _json(client, "GET", "/api/v1/drivers/Bea%20Sim", 200)
    assert detail["profile"]["settings"]["units"] == "imperial"
    assert detail["profile"]["settings"]["shimAlerts"] == ["badge_earned"]
    # The live board (what decides the shim notices) has them too.
    assert BOARD.settings_of("Bea Sim").message_max_chars == 40


async def test_mark_training_with_a_chosen_reference_lap(
    client: Client, service: CoreService
) -> None:
    reader = SessionReader(service.engine)
    alex_session = reader.session_by_key("s-3")
    bea_session = reader.session_by_key("s-4")
    assert alex_session is not None
    assert bea_session is not None
    alex_laps = [lap for lap in reader.laps(alex_session.id, pit=False) if lap.lap_time]
    chosen = alex_laps[len(alex_laps) // 2]
    path = f"/api/v1/sessions/{bea_session.id}/training"
    half = await _json(
        client,
        "POST",
        path,
        400,
        json={"driver": "Bea Sim", "reference_lap": chosen.lap_number},
    )
    assert "go together" in half["error"]
    await _json(
        client, "POST", "/api/v1/sessions/999/training", 404, json={"driver": "Bea Sim"}
    )
    made = await _json(
        client,
        "POST",
        path,
        200,
        json={
            "driver": "Bea Sim",
            "reference_session_id": alex_session.id,
            "reference_lap": chosen.lap_number,
        },
    )
    assert made["reference"]["lapNumber"] == chosen.lap_number
    assert made["reference"]["sessionId"] == alex_session.id
    assert made["reference"]["driver"] == "Alex Sim"
    assert made["corners"]
    assert made["plan"]["referenceLap"]["lapNumber"] == chosen.lap_number
    plan = BOARD.plan_for("car42")
    assert plan is not None
    assert plan.session_id == bea_session.id
    detail = await _json(client, "GET", "/api/v1/drivers/Bea%20Sim", 200)
    assert [g["id"] for g in detail["profile"]["trainingGoals"]] == [
        g["id"] for g in made["goals"]
    ]
    ended = await _json(
        client, "POST", path, 200, json={"driver": "Bea Sim", "active": False}
    )
    assert ended["active"] is False
    assert BOARD.plan_for("car42") is None
