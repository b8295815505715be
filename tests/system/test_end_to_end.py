"""Shim → Mosquitto → core → SQLite, with real recordings and with the simulator's own files."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from driver_pc.adapters.ibt_file import IbtReader
from driver_pc.adapters.iracing_replay import IbtReplayAdapter
from driver_pc.adapters.simulator import RaceSimulatorAdapter
from pitbox_appliance.storage.database import make_engine
from pitbox_appliance.storage.models import Driver, Lap, TelemetryChunk
from tests.conftest import RunningAppliance, real_file, wait_for

TOLERANCE_S = 0.017


def stored_laps(db_url: str) -> list[Lap]:
    engine = make_engine(db_url, readonly=True)
    with Session(engine) as db:
        laps = list(db.scalars(select(Lap).order_by(Lap.end_time)))
    engine.dispose()
    return laps


def stored_frames(db_url: str) -> int:
    engine = make_engine(db_url, readonly=True)
    with Session(engine) as db:
        total = sum(c.frames for c in db.scalars(select(TelemetryChunk)))
    engine.dispose()
    return total


def iracing_laps(path: Path) -> list[float]:
    with IbtReader(path) as reader:
        llt = reader.column("LapLastLapTime")
    changes = np.flatnonzero(np.diff(llt) != 0) + 1
    return [float(llt[i]) for i in changes if llt[i] > 0]


def replay_and_wait(appliance: RunningAppliance, path: Path) -> list[Lap]:
    adapter = IbtReplayAdapter(str(path), speed=0)
    records = adapter.record_count
    shim = appliance.start_shim(adapter)
    assert wait_for(lambda: stored_frames(appliance.db_url) >= records, timeout=60)
    assert wait_for(lambda: shim.final_spool_depth is not None, timeout=20)
    assert shim.final_spool_depth == 0
    return stored_laps(appliance.db_url)


@pytest.mark.parametrize(
    "name",
    [
        "skmodified_martinsville_2015-05-30_20-32-44.ibt",
        "skmodified_langley_2015-05-28_14-49-50.ibt",
    ],
)
def test_real_recording_through_broker(appliance: RunningAppliance, name: str) -> None:
    path = real_file("iracing", "ibt", name)
    laps = replay_and_wait(appliance, path)
    timed = [lap.lap_time for lap in laps if lap.lap_time is not None]
    truth = iracing_laps(path)
    assert len(timed) == len(truth) > 0
    for got, want in zip(timed, truth, strict=True):
        assert abs(got - want) <= TOLERANCE_S
    assert appliance.core.ingestor.stats.rejected == {}


def test_simulated_file_through_broker(
    appliance: RunningAppliance, sim_ibt: Path
) -> None:
    laps = replay_and_wait(appliance, sim_ibt)
    timed = [lap.lap_time for lap in laps if lap.lap_time is not None]
    assert timed == pytest.approx(iracing_laps(sim_ibt), abs=TOLERANCE_S)
    engine = make_engine(appliance.db_url, readonly=True)
    with Session(engine) as db:
        drivers = {d.user_name for d in db.scalars(select(Driver))}
    engine.dispose()
    assert drivers == {"Alex Sim"}


def test_live_state_published(appliance: RunningAppliance) -> None:
    import json

    from driver_pc.protocol.mqtt import BrokerAddress, MqttConnection

    broker = appliance.broker
    received: list[dict[str, object]] = []
    watcher = MqttConnection(
        "watcher",
        BrokerAddress(
            broker.host, broker.port, broker.appliance_user, broker.appliance_password
        ),
    )
    watcher.subscribe(
        "pitbox/v1/live/+/state", 0, lambda _t, p, _m: received.append(json.loads(p))
    )
    watcher.start()
    try:
        appliance.start_shim(RaceSimulatorAdapter(laps=2, speed=8.0, seed=3))

        def speeds() -> set[float]:
            return {
                round(float(r["values"]["Speed"]), 1)  # type: ignore[index]
                for r in list(received)
                if r["values"]
            }

        # The race starts on the pit limiter: wait for the car to get going.
        assert wait_for(lambda: len(speeds()) > 5 and len(received) > 20, timeout=30), (
            speeds(),
            len(received),
        )
        assert received[-1]["car"] == "car1"
        assert received[-1]["driver"] == "Alex Sim"
    finally:
        watcher.stop()


@pytest.mark.timeout(240)
def test_broker_outage_loses_nothing(appliance: RunningAppliance) -> None:
    """Broker stopped for 30 s mid-race: every lap arrives, none twice."""
    sim = RaceSimulatorAdapter(laps=8, speed=6.0, seed=5)
    appliance.start_shim(sim)
    assert wait_for(lambda: len(stored_laps(appliance.db_url)) >= 2, timeout=30)
    appliance.broker.broker.stop()
    time.sleep(30.0)  # the shim keeps simulating into its spool meanwhile
    assert appliance.shims[0][0].spool.depth() > 100
    appliance.broker.broker.start()
    assert wait_for(lambda: len(stored_laps(appliance.db_url)) >= 9, timeout=60)
    shim = appliance.shims[0][0]
    assert wait_for(lambda: shim.final_spool_depth is not None, timeout=30)
    assert shim.final_spool_depth == 0
    laps = stored_laps(appliance.db_url)
    numbers = [lap.lap_number for lap in laps]
    assert numbers == sorted(set(numbers))
    assert numbers == list(range(0, 9))
    assert all(lap.lap_time is not None for lap in laps[1:])
