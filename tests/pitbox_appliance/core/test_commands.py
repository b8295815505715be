"""Pit wall → shim commands over the real broker: camera switch and team message, confirmed back."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestClient, TestServer

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from pitbox_appliance.api.app import create_app
from tests.conftest import RunningAppliance, wait_for


def test_camera_command_reaches_shim_and_is_confirmed(
    appliance: RunningAppliance,
) -> None:
    sim = RaceSimulatorAdapter(laps=3, speed=4.0, seed=9)
    shim = appliance.start_shim(sim)
    core = appliance.core
    assert wait_for(lambda: core.ingestor.source_of("car1"), timeout=20)
    command = core.send_command(
        "car1", "camera", {"car": "42", "group": 3, "camera": 1}
    )
    assert wait_for(
        lambda: (core.command_status(command.command_id) or {}).get("result"), 20
    )
    status = core.command_status(command.command_id)
    assert status is not None
    assert status["result"]["ok"] is True
    assert "car #42" in status["result"]["detail"]
    assert sim.camera == ("42", 3, 1)
    message = core.send_command("car1", "message", {"text": "Box this lap"})
    assert wait_for(
        lambda: (core.command_status(message.command_id) or {}).get("result"), 20
    )
    assert shim.messages_shown == ["Box this lap"]


def test_command_to_unknown_car_is_refused(appliance: RunningAppliance) -> None:
    with pytest.raises(LookupError, match="car9"):
        appliance.core.send_command("car9", "camera", {"car": "1"})


def test_command_api_round_trip(appliance: RunningAppliance) -> None:
    appliance.start_shim(RaceSimulatorAdapter(laps=3, speed=4.0, seed=10))
    assert wait_for(lambda: appliance.core.ingestor.source_of("car1"), timeout=20)

    async def scenario() -> None:
        token = "commands-token-0123456789"
        app = create_app(
            appliance.core, tokens={token: frozenset({"commands", "read"})}
        )
        headers = {"Authorization": f"Bearer {token}"}
        async with TestClient(TestServer(app), headers=headers) as client:
            bad = await client.post(
                "/api/v1/cars/car1/commands", json={"kind": "camera"}
            )
            assert bad.status == 400
            assert "args.car" in (await bad.json())["error"]
            missing = await client.post(
                "/api/v1/cars/car7/commands",
                json={"kind": "message", "args": {"text": "hi"}},
            )
            assert missing.status == 404
            sent = await client.post(
                "/api/v1/cars/car1/commands",
                json={"kind": "camera", "args": {"car": "42", "group": 2}},
            )
            assert sent.status == 202
            command_id = (await sent.json())["command_id"]
            for _ in range(200):
                reply = await (
                    await client.get(f"/api/v1/commands/{command_id}")
                ).json()
                if reply["result"] is not None:
                    break
                await asyncio.sleep(0.05)
            assert reply["result"]["ok"] is True
            # A command's text and result are not for anyone on the LAN (issue 14).
            anonymous = await client.get(
                f"/api/v1/commands/{command_id}", headers={"Authorization": ""}
            )
            assert anonymous.status == 401
            assert command_id not in await anonymous.text()
            unknown = await client.get("/api/v1/commands/nope")
            assert unknown.status == 404

    asyncio.run(scenario())
