"""Bad messages through the real broker: garbage is rejected and counted, poison is dead-lettered.

Garbage (not authentic, not decodable) is counted and never stored. An authentic
message that fails (a field out of bounds, analysis raising) is kept as a dead letter,
acknowledged, and never comes back; the other car loses nothing, health stays 200,
and ``pitbox deadletters retry`` stores it after the fix.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from driver_pc.pipeline import ShimPipeline
from driver_pc.protocol import topics
from driver_pc.protocol.codec import Codec
from driver_pc.protocol.messages import DriverChange, TelemetryBatch
from driver_pc.protocol.mqtt import BrokerAddress, MqttConnection
from pitbox_appliance.api.app import create_app
from pitbox_appliance.broker import free_port
from pitbox_appliance.cli import main as pitbox
from pitbox_appliance.core.car import CarTracker
from pitbox_appliance.core.service import CoreService
from pitbox_appliance.storage.database import make_engine
from pitbox_appliance.storage.models import TelemetryChunk
from pitbox_appliance.storage.reader import SessionReader
from tests.conftest import RunningAppliance, readonly_engine, wait_for


def chunk_count(db_url: str) -> int:
    engine = make_engine(db_url, readonly=True)
    with Session(engine) as db:
        count = db.scalar(select(func.count()).select_from(TelemetryChunk)) or 0
    engine.dispose()
    return int(count)


def test_bad_messages_rejected_counted_and_not_stored(
    appliance: RunningAppliance,
) -> None:
    broker = appliance.broker
    source = broker.driver_user
    codec = Codec(appliance.team_key)
    messages = list(
        ShimPipeline(RaceSimulatorAdapter(laps=1, speed=0, seed=4)).messages()
    )
    dictionary = messages[0]
    batch = next(m for m in messages if isinstance(m, TelemetryBatch))
    publisher = MqttConnection(
        "hostile",
        BrokerAddress(
            broker.host, broker.port, broker.driver_user, broker.driver_password
        ),
    )
    publisher.start()
    assert publisher.connected.wait(10)
    topic = topics.shim_data(source)
    try:
        good_dict = codec.encode(source, 10, dictionary)
        good_batch = codec.encode(source, 11, batch)
        tampered = bytearray(codec.encode(source, 12, batch))
        tampered[-3] ^= 0xFF
        hostile = [
            bytes(tampered),  # bad_auth
            good_batch[:40],  # truncated
            b"PBX" + os.urandom(3_000_000),  # oversized
            Codec(os.urandom(32)).encode(source, 13, batch),  # unknown key → bad_auth
            b"not a pitbox message at all",  # bad_magic
        ]
        for payload in hostile:
            publisher.publish(topic, payload)
        core = appliance.core
        assert wait_for(
            lambda: sum(core.ingestor.stats.rejected.values()) >= len(hostile), 15
        )
        assert chunk_count(appliance.db_url) == 0
        # A good message, then the same bytes replayed: stored once.
        publisher.publish(topic, good_dict)
        publisher.publish(topic, good_batch)
        publisher.publish(topic, good_batch)
        assert wait_for(lambda: core.ingestor.stats.duplicates >= 1, 15)
        assert wait_for(lambda: chunk_count(appliance.db_url) == 1, 15)
        time.sleep(0.3)
        assert chunk_count(appliance.db_url) == 1
        rejected = core.ingestor.stats.rejected
        assert rejected["bad_auth"] == 2
        assert rejected["truncated"] == 1
        assert rejected["bad_magic"] == 1
        assert rejected["oversized"] == 1
        assert core.health()["broker_connected"]
    finally:
        publisher.stop()


# ---- poison messages: dead-lettered, the other car untouched (issue 11 §1, §4) ----------
API_TOKEN = "deadletter-token-0123456789"
POISON_SEQ = 400  # car2's batch whose analysis raises until "the fix"


@contextmanager
def serve_api(core: CoreService) -> Iterator[str]:
    """The core's API on a free port, on a loop of its own; yields its base URL."""
    loop = asyncio.new_event_loop()
    port = free_port()
    runner = web.AppRunner(
        create_app(core, tokens={API_TOKEN: frozenset({"commands", "driver"})})
    )

    async def start() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def health_of(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"{url}/api/v1/health", timeout=5) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def stored(db_url: str) -> tuple[dict[str, int], list[tuple[str, int, str, int]]]:
    """Chunks per source, and the dead letters (source, seq, reason, attempts)."""
    path = db_url.removeprefix("sqlite:///")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
        chunks = dict(
            db.execute("SELECT source, COUNT(*) FROM telemetry_chunks GROUP BY source")
        )
        letters = list(
            db.execute("SELECT source, seq, reason, attempts FROM dead_letters")
        )
    return chunks, letters


def driver_change(key: str, **fields: Any) -> DriverChange:
    """A DriverChange as a broken shim would send it (unchecked until it is decoded)."""
    return DriverChange(
        **{**asdict(DriverChange(key, 10.0, 0, 9, "Bea Sim")), **fields}
    )


@pytest.mark.timeout(180)
def test_poison_messages_are_dead_lettered_and_never_come_back(
    appliance: RunningAppliance, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = appliance.broker
    broker.broker.add_user("car2-pc1", "car2-secret")
    codec = Codec(appliance.team_key)
    races = {
        car: list(
            ShimPipeline(
                RaceSimulatorAdapter(laps=2, speed=0, seed=seed, session_key=f"r-{car}")
            ).messages()
        )
        for car, seed in (("car1", 3), ("car2", 4))
    }
    batches = {
        car: sum(isinstance(m, TelemetryBatch) for m in msgs)
        for car, msgs in races.items()
    }
    # car2 also sends the two driver changes of the incident, mid-race.
    car2 = races["car2"]
    car2[300:300] = [
        driver_change("r-car2", session_time=float("nan")),
        driver_change("r-car2", user_id=2**70),
    ]
    fixed = threading.Event()
    original = CarTracker.telemetry

    def analysis(self: CarTracker, source: str, seq: int, *args: Any) -> None:
        original(self, source, seq, *args)
        if source == "car2-pc1" and seq == POISON_SEQ and not fixed.is_set():
            raise IndexError("index 0 is out of bounds for axis 0 with size 0")

    monkeypatch.setattr(CarTracker, "telemetry", analysis)
    assert isinstance(car2[POISON_SEQ - 1], TelemetryBatch)
    publishers = []
    for source, password in (
        ("car1-pc1", broker.driver_password),
        ("car2-pc1", "car2-secret"),
    ):
        connection = MqttConnection(
            f"{source}", BrokerAddress(broker.host, broker.port, source, password)
        )
        connection.start()
        assert connection.connected.wait(10)
        publishers.append(connection)
    statuses: list[int] = []
    reasons: list[str | None] = []
    done = threading.Event()
    with serve_api(appliance.core) as url:

        def watch() -> None:
            while not done.is_set():
                status, body = health_of(url)
                statuses.append(status)
                reasons.append(body.get("reason"))
                time.sleep(0.1)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            for source, connection in zip(
                ("car1-pc1", "car2-pc1"), publishers, strict=True
            ):
                car = source.split("-")[0]
                for seq, message in enumerate(races[car], 1):
                    connection.publish(
                        topics.shim_data(source), codec.encode(source, seq, message)
                    )

            def settled() -> bool:
                chunks, letters = stored(appliance.db_url)
                return (
                    chunks.get("car1-pc1") == batches["car1"]
                    and chunks.get("car2-pc1") == batches["car2"] - 1
                    and len(letters) == 3
                )

            assert wait_for(settled, 90), stored(appliance.db_url)
            status, body = health_of(url)
        finally:
            done.set()
            watcher.join(10)
            for connection in publishers:
                connection.stop()
    # Ingest never stalled: health said 200 all along.
    assert statuses
    assert set(statuses) == {200}, [r for r in reasons if r]
    assert status == 200
    assert body["ingest"]["dead_letters"] == {
        "invalid:DriverChange.session_time": 1,
        "invalid:DriverChange.user_id": 1,
        "IndexError": 1,
    }
    assert set(body["cars"]) == {"car1", "car2"}
    chunks, letters = stored(appliance.db_url)
    assert sorted(letters) == sorted(
        [
            ("car2-pc1", 301, "invalid:DriverChange.session_time", 1),
            ("car2-pc1", 302, "invalid:DriverChange.user_id", 1),
            ("car2-pc1", POISON_SEQ, "IndexError", 1),
        ]
    )
    laps = SessionReader(readonly_engine(appliance.db_url))
    by_car = {
        s.car: [lap.lap_number for lap in laps.laps(s.id)] for s in laps.sessions()
    }
    assert by_car["car1"] == [0, 1, 2]  # the other car lost nothing
    assert by_car["car2"] == [0, 1, 2]

    # A restart: every dead letter was acknowledged, so nothing comes back.
    config = appliance.core.config
    appliance.core.stop()
    appliance.core = CoreService(config, appliance.team_key)
    appliance.core.start()
    assert appliance.core.connection.connected.wait(10)
    time.sleep(3)
    stats = appliance.core.ingestor.stats
    assert (stats.accepted, stats.duplicates, dict(stats.dead_letters)) == (0, 0, {})
    assert stored(appliance.db_url) == (chunks, letters)

    # "The fix", then `pitbox deadletters retry --all` through the running core.
    fixed.set()
    with serve_api(appliance.core) as url:
        code = pitbox(
            [
                "deadletters",
                "--db",
                appliance.db_url,
                "retry",
                "--all",
                "--api",
                url,
                "--token",
                API_TOKEN,
            ]
        )
    assert code == 1  # the two invalid driver changes stay invalid
    chunks, letters = stored(appliance.db_url)
    assert chunks["car2-pc1"] == batches["car2"]  # the poisoned batch is stored now
    assert sorted((seq, reason, attempts) for _s, seq, reason, attempts in letters) == [
        (301, "invalid:DriverChange.session_time", 2),
        (302, "invalid:DriverChange.user_id", 2),
    ]


@pytest.mark.timeout(120)
def test_a_paired_device_cannot_hijack_another_cars_session(
    appliance: RunningAppliance,
) -> None:
    """Issue 11 §4: car7 sends a driver change and telemetry with car42's session key."""
    broker = appliance.broker
    codec = Codec(appliance.team_key)
    for user in ("car42-pc1", "car7-pc1"):
        broker.broker.add_user(user, f"{user}-secret")
    race = list(
        ShimPipeline(
            RaceSimulatorAdapter(laps=2, speed=0, seed=5, session_key="r-car42")
        ).messages()
    )
    own = list(
        ShimPipeline(
            RaceSimulatorAdapter(laps=1, speed=0, seed=6, session_key="r-car7")
        ).messages()
    )
    batches = sum(isinstance(m, TelemetryBatch) for m in race)
    # The attack: car42's session key in car7's messages, on car7's own topic and key.
    hijack = [
        driver_change("r-car42", user_name="HIJACKED-by-car7", user_id=777),
        *(
            TelemetryBatch("r-car42", m.dict_id, m.channels, m.frames)
            for m in own
            if isinstance(m, TelemetryBatch)
        ),
    ]
    publishers = {}
    for source in ("car42-pc1", "car7-pc1"):
        connection = MqttConnection(
            source,
            BrokerAddress(broker.host, broker.port, source, f"{source}-secret"),
        )
        connection.start()
        assert connection.connected.wait(10)
        publishers[source] = connection
    try:
        for seq, message in enumerate(race[:200], 1):
            publishers["car42-pc1"].publish(
                topics.shim_data("car42-pc1"), codec.encode("car42-pc1", seq, message)
            )
        # The attacker copies a session key it read on car42's live topic.
        assert wait_for(lambda: appliance.core.ingestor.source_of("car42"), 30)
        for seq, message in enumerate([*own[:3], *hijack], 1):
            publishers["car7-pc1"].publish(
                topics.shim_data("car7-pc1"), codec.encode("car7-pc1", seq, message)
            )
        for seq, message in enumerate(race[200:], 201):
            publishers["car42-pc1"].publish(
                topics.shim_data("car42-pc1"), codec.encode("car42-pc1", seq, message)
            )
        assert wait_for(
            lambda: stored(appliance.db_url)[0].get("car42-pc1") == batches, 60
        )
        core = appliance.core
        refused = core.health()["ingest"]["rejected"].get("foreign_session", 0)
        assert refused == len(hijack)
        # Every command for car42 goes to car42's PC, never to the latest sender.
        for _ in range(15):
            assert core.ingestor.source_of("car42") == "car42-pc1"
    finally:
        for connection in publishers.values():
            connection.stop()
    reader = SessionReader(readonly_engine(appliance.db_url))
    sessions = {s.session_key: s for s in reader.sessions()}
    assert sessions["r-car42"].car == "car42"
    stints = reader.stints(sessions["r-car42"].id)
    assert all(s.driver_name != "HIJACKED-by-car7" for s in stints)
    # No chunk of car7's lands in car42's session; car42's laps are all timed.
    path = appliance.db_url.removeprefix("sqlite:///")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        sources = {
            s
            for (s,) in db.execute(
                "SELECT DISTINCT source FROM telemetry_chunks WHERE session_id = ?",
                (sessions["r-car42"].id,),
            )
        }
    assert sources == {"car42-pc1"}
    laps = reader.laps(sessions["r-car42"].id)
    assert [lap.lap_time is not None for lap in laps if lap.lap_number >= 1] == [
        True
    ] * len([lap for lap in laps if lap.lap_number >= 1])
