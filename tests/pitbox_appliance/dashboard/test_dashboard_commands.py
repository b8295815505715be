"""The dashboard's command client against the real core, broker and a simulated shim."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from driver_pc.protocol.mqtt import BrokerAddress
from driver_pc.service import ShimConfig, ShimService
from pitbox_appliance.api.app import create_app
from pitbox_appliance.dashboard.core_api import (
    CoreApi,
    Outcome,
    api_base_url,
    command_token,
)
from tests.conftest import RunningAppliance, wait_for

pytestmark = pytest.mark.timeout(60)


def test_camera_and_message_reach_the_shim_and_are_confirmed(
    appliance: RunningAppliance,
) -> None:
    sim = RaceSimulatorAdapter(laps=3, speed=4.0, seed=21)
    shim = appliance.start_shim(sim)
    assert wait_for(lambda: appliance.core.ingestor.source_of("car1"), timeout=20)

    token = "pitwall-token-0123456789"
    tokens = command_token(f"driver-token-0123456789:driver,{token}:read+commands")
    assert tokens == token
    blind = "commands-only-token-0123456789"  # may send, may not read the answer

    async def scenario() -> None:
        app = create_app(
            appliance.core,
            {token: frozenset({"commands", "read"}), blind: frozenset({"commands"})},
        )
        server = TestServer(app)
        await server.start_server()
        url = str(server.make_url("")).rstrip("/")
        api = CoreApi(url, token=token, confirm_timeout_s=15)
        anonymous = CoreApi(url)
        blind_api = CoreApi(url, token=blind, confirm_timeout_s=15)
        try:
            refused_without_token = await anonymous.send(
                "car1", "message", {"text": "x"}
            )
            assert refused_without_token.outcome is Outcome.REFUSED
            assert "bearer token" in refused_without_token.detail
            unread = await blind_api.send(
                "car1", "camera", {"car": "7", "group": 1, "camera": 1}
            )
            assert unread.outcome is Outcome.REFUSED, unread  # at once, not a timeout
            assert "confirmation cannot be read" in unread.detail
            assert unread.elapsed_s < 10
            camera = await api.send(
                "car1", "camera", {"car": "42", "group": 3, "camera": 1}
            )
            assert camera.outcome is Outcome.CONFIRMED, camera
            assert camera.source == "car1-pc1"
            assert "car #42, group 3, camera 1" in camera.detail
            message = await api.send("car1", "message", {"text": "Box this lap"})
            assert message.ok, message
            refused = await api.send("car7", "message", {"text": "hi"})
            assert refused.outcome is Outcome.REFUSED
            assert "car7" in refused.detail
            shims = await api.shims()
            assert shims is not None
            assert [s.source for s in shims] == ["car1-pc1"]
            assert shims[0].state in {"streaming", "waiting_for_sim"}
        finally:
            await api.close()
            await anonymous.close()
            await blind_api.close()
            await server.close()

    asyncio.run(scenario())
    assert sim.camera == ("42", 3, 1)
    assert shim.messages_shown == ["Box this lap"]
    # The driver's overlay/OBS reads the latest message from a file beside the spool.
    shown = (appliance.tmp / "pitbox-message.txt").read_text(encoding="utf-8")
    assert re.fullmatch(r"\d\d:\d\d:\d\d  Box this lap\n", shown), shown
    # The core logs the message with the car's session once the shim answered.

    def logged() -> list[tuple[str, str]]:
        with sqlite3.connect(appliance.db_url.removeprefix("sqlite:///")) as db:
            return db.execute(
                "SELECT kind, payload FROM events WHERE kind = 'team_message'"
            ).fetchall()

    assert wait_for(lambda: bool(logged()), 10)
    payload = json.loads(logged()[0][1])
    assert payload["text"] == "Box this lap"
    assert payload["ok"] is True
    assert payload["source"] == "car1-pc1"
    assert "pitbox-message.txt" in payload["detail"]


def test_message_file_failure_is_reported_not_raised(tmp_path: Path) -> None:
    config = ShimConfig(
        "car1-pc1",
        BrokerAddress("127.0.0.1", 1, "u", "p"),
        bytes(32),
        str(tmp_path / "s.spool"),
        message_file=str(tmp_path / "missing-dir" / "msg.txt"),
    )
    shim = ShimService(config, RaceSimulatorAdapter(laps=1))
    detail = shim.show_message("Box\nthis   lap")
    assert detail.startswith("shown on the console;")
    assert "msg.txt not written" in detail
    assert shim.messages_shown == ["Box this lap"]
    shim.spool.close()


def test_command_token_from_the_environment_value() -> None:
    assert command_token("") is None
    assert command_token("short:commands") is None  # malformed: logged, not raised
    assert command_token("driver-token-0123456789:driver") is None
    assert command_token("both-token-0123456789:driver+commands") == (
        "both-token-0123456789"
    )


@pytest.mark.parametrize(
    ("host", "port", "url"),
    [
        ("127.0.0.1", 8081, "http://127.0.0.1:8081"),
        ("0.0.0.0", 9000, "http://127.0.0.1:9000"),
        ("::1", 9000, "http://[::1]:9000"),
        ("127.0.0.1", 0, None),
    ],
)
def test_api_base_url(host: str, port: int, url: str | None) -> None:
    assert api_base_url(host, port) == url
