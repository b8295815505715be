"""End to end: a practice marked as training through the API while a shim streams it; goal progress reaches that shim as team messages."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestClient, TestServer

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from driver_pc.pipeline import ShimPipeline
from driver_pc.protocol.codec import Codec
from pitbox_appliance.api.app import create_app
from pitbox_appliance.coaching.live import BOARD
from pitbox_appliance.storage.reader import SessionReader
from tests.conftest import RunningAppliance, wait_for

pytestmark = pytest.mark.timeout(600)

TOKEN = "coach-token-0123456789abcdef"


def test_training_messages_reach_the_driving_pc(appliance: RunningAppliance) -> None:
    BOARD.reset()
    core = appliance.core
    codec = Codec(appliance.team_key)
    # Earlier practices of the same car (another PC of car1): Alex, then Bea.
    seq = 1
    for driver, seed in (("Alex Sim", 3), ("Bea Sim", 4)):
        sim = RaceSimulatorAdapter(
            laps=8, speed=0, seed=seed, drivers=(driver,), session_key=f"s-{seed}"
        )
        for message in ShimPipeline(sim).messages():
            assert core.ingest_frame(codec.encode("car1-pc9", seq, message)).stored
            seq += 1
    shim = appliance.start_shim(
        RaceSimulatorAdapter(
            laps=14, speed=6.0, seed=5, drivers=("Bea Sim",), session_key="s-live"
        )
    )
    reader = SessionReader(core.engine)
    assert wait_for(lambda: reader.session_by_key("s-live") is not None, 30)
    live = reader.session_by_key("s-live")
    assert live is not None

    async def scenario() -> list[dict[str, object]]:
        app = create_app(core, tokens={TOKEN: frozenset({"read", "commands"})})
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with TestClient(TestServer(app), headers=headers) as client:
            reply = await client.post(
                f"/api/v1/sessions/{live.id}/training", json={"driver": "Bea Sim"}
            )
            assert reply.status == 200, await reply.text()
            made: dict[str, object] = await reply.json()
            for _ in range(240):  # the rest of the practice
                if _training(shim.messages_shown):
                    break
                await asyncio.sleep(0.5)
            return [made]

    [made] = asyncio.run(scenario())
    goals = made["goals"]
    assert isinstance(goals, list)
    corners = {c for g in goals for c in g["cornerIds"]}
    shown = _training(shim.messages_shown)
    assert shown, f"no training message reached the shim: {shim.messages_shown}"
    # Short, and about a goal's corner ("T2 min spd 17%: 95.1/96.1") or a badge
    # ("Badge: Gold consistency"), as the trainee's default settings let through.
    assert all(len(m) <= 60 for m in shown)
    for m in shown:
        assert m.startswith("Badge: ") or m.split()[0] in corners
    # The core logged each as a team message of the live session.
    assert wait_for(
        lambda: any(
            e.payload.get("text") in shown
            for e in reader.events(live.id, "team_message")
        ),
        20,
    )
    BOARD.reset()


def _training(messages: list[str]) -> list[str]:
    """The messages live training sent: goal progress and badges."""
    return [m for m in messages if m.startswith("Badge: ") or "%" in m or "done" in m]
