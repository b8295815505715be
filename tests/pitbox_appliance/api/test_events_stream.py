"""The API's event WebSocket carries exactly what the core publishes on MQTT, filtered by car."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from driver_pc.protocol import topics
from driver_pc.protocol.events import event_payload
from driver_pc.protocol.mqtt import BrokerAddress, MqttConnection
from pitbox_appliance.api.app import create_app
from tests.conftest import RunningAppliance, wait_for

READER = "event-reader-token-0123456789"


def test_events_reach_the_websocket_as_on_mqtt(appliance: RunningAppliance) -> None:
    broker = appliance.broker
    on_mqtt: list[dict[str, Any]] = []
    lock = threading.Lock()

    def keep(_topic: str, payload: bytes, _mid: int) -> None:
        with lock:
            on_mqtt.append(json.loads(payload))

    listener = MqttConnection(
        "events-listener",
        BrokerAddress(
            broker.host, broker.port, broker.appliance_user, broker.appliance_password
        ),
    )
    listener.subscribe(topics.ALL_EVENTS, 1, keep)
    listener.start()
    assert listener.connected.wait(10)
    core = appliance.core

    async def scenario() -> tuple[list[dict[str, Any]], list[str]]:
        app = create_app(core, tokens={READER: {"read"}})
        reader = {"Authorization": f"Bearer {READER}"}
        async with TestClient(TestServer(app), headers=reader) as client:
            # The stream tells command ids; reading it needs the read scope.
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await client.ws_connect(
                    "/api/v1/events/stream", headers={"Authorization": ""}
                )
            assert refused.value.status == 401
            mine = await client.ws_connect("/api/v1/events/stream?car=car1")
            other = await client.ws_connect("/api/v1/events/stream?car=car9")
            bad = await client.get("/api/v1/events/stream?car=")
            assert bad.status == 400
            assert "car" in (await bad.json())["error"]
            appliance.start_shim(RaceSimulatorAdapter(laps=3, speed=30.0, seed=4))
            received: list[dict[str, Any]] = []
            while not any(e["kind"] == "lap_completed" for e in received):
                frame = await asyncio.wait_for(mine.receive_json(), timeout=60)
                received.append(frame)
            command = core.send_command("car1", "message", {"text": "Box now"})
            while not any(e["kind"] == "command_result" for e in received):
                received.append(await asyncio.wait_for(mine.receive_json(), 30))
            assert received[-1]["command_id"] == command.command_id
            strays: list[str] = []
            try:
                strays.append(str(await asyncio.wait_for(other.receive(), 0.5)))
            except TimeoutError:
                pass
            await mine.close()
            await other.close()
            return received, strays

    received, strays = asyncio.run(scenario())
    try:
        assert strays == []
        for event in received:
            assert event["car"] == "car1"
            body = {k: v for k, v in event.items() if k not in ("kind", "car")}
            assert event_payload(event["kind"], body) == body
        assert wait_for(lambda: len(on_mqtt) >= len(received), timeout=10)
        with lock:
            assert received == on_mqtt[: len(received)]
        assert core.event_listeners == []
    finally:
        listener.stop()
