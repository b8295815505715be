"""The shim registers each new driver of its PC with the appliance, signed with its key."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from driver_pc.appliance_api import ApplianceApi
from driver_pc.protocol.messages import DriverChange
from driver_pc.registration import DriverRegistrar
from pitbox_appliance.api.app import create_app
from tests.conftest import RunningAppliance, wait_for

READER = "registrations-reader-0123456789"


def _change(user_id: int, name: str, at: float) -> DriverChange:
    return DriverChange("s1", at, 0, user_id, name)


def test_each_new_driver_is_registered_once_and_stored_in_the_session(
    appliance: RunningAppliance,
) -> None:
    core = appliance.core
    appliance.start_shim(RaceSimulatorAdapter(laps=2, speed=20.0, seed=8))
    assert wait_for(lambda: "car1" in core.ingestor.live, timeout=20)
    events: list[dict[str, Any]] = []
    core.event_listeners.append(events.append)

    async def scenario() -> tuple[DriverRegistrar, list[dict[str, Any]]]:
        # The PC signs with its key (no token); the list is read with a read token.
        app = create_app(core, tokens={READER: {"read"}})
        async with TestClient(TestServer(app)) as client:
            api = ApplianceApi(
                str(client.make_url("/")), "car1-pc2", key=appliance.team_key
            )
            registrar = DriverRegistrar(api, sim="iracing", version="0.1.0")
            stop = threading.Event()
            thread = threading.Thread(target=registrar.run, args=(stop,))
            thread.start()
            loop = asyncio.get_running_loop()
            try:
                registrar.note(_change(7, "Bea Quick", 10.0))
                registrar.note(_change(7, "Bea Quick", 40.0))  # a re-announcement
                await loop.run_in_executor(
                    None, wait_for, lambda: len(registrar.registered) >= 1, 10
                )
                registrar.note(_change(9, "Cy Late", 50.0))  # the seat changed
                await loop.run_in_executor(
                    None, wait_for, lambda: len(registrar.registered) >= 2, 10
                )
                await asyncio.sleep(0.5)  # nothing more is sent
            finally:
                stop.set()
                await loop.run_in_executor(None, thread.join, 5)
            listed = await client.get(
                "/api/v1/driver/registrations",
                headers={"Authorization": f"Bearer {READER}"},
            )
            return registrar, (await listed.json())["registrations"]

    registrar, listed = asyncio.run(scenario())
    assert [r["driver_name"] for r in registrar.registered] == ["Bea Quick", "Cy Late"]
    session_id = core.ingestor.live["car1"].session_id
    assert [r["session_id"] for r in registrar.registered] == [session_id] * 2
    [latest] = listed
    assert (latest["source"], latest["driver_name"], latest["user_id"]) == (
        "car1-pc2",
        "Cy Late",
        9,
    )
    assert wait_for(
        lambda: len([e for e in events if e["kind"] == "driver_registered"]) == 2, 5
    )
    db = sqlite3.connect(appliance.db_url.removeprefix("sqlite:///"))
    rows = db.execute(
        "SELECT session_id FROM events WHERE kind = 'driver_registered'"
    ).fetchall()
    assert rows == [(session_id,), (session_id,)]


def test_an_unreachable_appliance_is_tried_again() -> None:
    api = ApplianceApi("http://127.0.0.1:9", "car1-pc1", key=b"k" * 32, timeout_s=1)
    registrar = DriverRegistrar(api, sim="iracing")
    stop = threading.Event()
    thread = threading.Thread(target=registrar.run, args=(stop,))
    thread.start()
    try:
        registrar.note(_change(1, "Alex", 0.0))
        # Port 9 refuses: after a 2 s pause it is posted again, not dropped.
        assert wait_for(lambda: registrar.posts >= 2, 8)
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
    assert registrar.registered == []


def test_a_registration_before_the_session_opened_is_sent_again() -> None:
    """The PC registers as it starts streaming, often before the appliance opened
    the car's session; it registers again (1 s later) until the answer has one."""

    class Appliance:
        source = "car1-pc1"

        def __init__(self) -> None:
            self.answers: list[dict[str, Any]] = [
                {"session_id": None},
                {"session_id": None},
                {"session_id": 3},
            ]
            self.bodies: list[dict[str, object]] = []

        def post_json(self, route: str, document: dict[str, Any]) -> dict[str, Any]:
            self.bodies.append(document)
            return self.answers.pop(0) if self.answers else {"session_id": 3}

    api = Appliance()
    registrar = DriverRegistrar(api, sim="iracing")  # type: ignore[arg-type]
    stop = threading.Event()
    thread = threading.Thread(target=registrar.run, args=(stop,))
    thread.start()
    try:
        registrar.note(_change(1, "Alex", 5.0))
        assert wait_for(lambda: len(registrar.registered) >= 3, 10)
        time.sleep(1.5)  # answered with a session: nothing more is sent
    finally:
        stop.set()
        thread.join(5)
    assert [r["session_id"] for r in registrar.registered] == [None, None, 3]
    assert len(api.bodies) == 3
    assert {b["driver_name"] for b in api.bodies} == {"Alex"}
