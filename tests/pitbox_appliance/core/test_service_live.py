"""The core's live thread sends each fresh frame once, the field apart, and reports its live lag.

Real broker, real core, a simulated shim at real time. ``health()["live"]`` gives the
lag of each stage of the live path (paho receive, live queue, peek, publish).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from typing import Any

import pytest

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from driver_pc.protocol import topics
from driver_pc.protocol.mqtt import BrokerAddress, MqttConnection
from pitbox_appliance.core.live import LiveStamp, LiveTimings
from pitbox_appliance.dashboard.live_state import LiveState
from tests.conftest import RunningAppliance, wait_for


def test_each_fresh_frame_goes_out_once_with_its_stage_times(
    appliance: RunningAppliance, monkeypatch: pytest.MonkeyPatch
) -> None:
    core = appliance.core
    publishers: Counter[str] = Counter()
    shown: dict[str, float] = {}
    repeats = 0  # states showing the same frame as the car's state before
    publish = core.connection.publish

    def recording(topic: Any, payload: bytes | str, **kw: Any) -> int:
        nonlocal repeats
        if topic.name.endswith("/state"):
            publishers[threading.current_thread().name] += 1
            t = json.loads(payload)["values"]["SessionTime"]
            repeats += shown.get(topic.name) == t
            shown[topic.name] = t
        return publish(topic, payload, **kw)

    monkeypatch.setattr(core.connection, "publish", recording)
    started = time.monotonic()
    appliance.start_shim(RaceSimulatorAdapter(laps=3, speed=1.0, seed=5))
    assert wait_for(lambda: core.health()["live"]["n"] >= 20, timeout=30)
    time.sleep(2.0)
    live = core.health()["live"]
    states = sum(publishers.values())
    seconds = time.monotonic() - started

    # Every stage of the frames the peek brought first was timed.
    for stage in ("receive_to_publish", "queue", "peek", "peek_to_publish"):
        assert live[stage]["p50"] is not None, stage
        assert 0 <= live[stage]["p50"] <= live[stage]["max"], stage
    assert live["peeked"] >= live["n"]
    # The live thread sends every state, each frame once: ingest's mark on every
    # batch sent the same frame a second time before (about one state in two);
    # the once-a-second heartbeat repeats one.
    assert set(publishers) == {"live"}, publishers
    assert states > 20
    assert repeats <= seconds + 2, (repeats, states)


def test_live_timings_summarise_each_stage() -> None:
    timings = LiveTimings(kept=100)
    for i in range(200):  # only the newest 100 count
        base = float(i)
        lag = 0.001 * (i % 100)  # 0 .. 99 ms
        timings.add(LiveStamp("car1", base, base, base, base, published=base + lag))
    summary = timings.summary()
    assert summary["n"] == 100
    assert summary["receive_to_publish"] == {"p50": 50.0, "p99": 99.0, "max": 99.0}
    assert summary["queue"]["max"] == 0.0
    assert timings.all is None  # kept only when tracing


def test_the_field_goes_apart_and_the_dashboard_lays_it_over_the_state(
    appliance: RunningAppliance,
) -> None:
    """Real core, broker and dashboard reader: the others travel once per refresh.

    The state carries no others on the wire (it was ~14 KB of ~16 with 63 cars); the
    field goes on its own topic at most every refresh (≤ 4 Hz) and every 2 s, and the
    dashboard's ``LiveState`` shows the car with the field's others.
    """
    broker = appliance.broker
    address = BrokerAddress(
        broker.host, broker.port, broker.appliance_user, broker.appliance_password
    )
    reader = MqttConnection("dashboard-test", address)
    counter = MqttConnection("counter-test", address)
    wire: Counter[str] = Counter()
    first: list[float] = []
    others_in_states = 0
    lock = threading.Lock()

    def count(topic: str, payload: bytes, _mid: int) -> None:
        nonlocal others_in_states
        with lock:
            first[:] = first or [time.monotonic()]
            wire[topic.rsplit("/", 1)[1]] += 1
            if topic.endswith("/state"):
                others_in_states += bool(json.loads(payload)["others"])

    live = LiveState()
    reader.start()
    counter.start()
    try:
        assert reader.connected.wait(10)
        assert counter.connected.wait(10)
        live.attach(reader)
        counter.subscribe(topics.ALL_LIVE_STATE, 0, count)
        counter.subscribe(topics.ALL_LIVE_FIELD, 0, count)
        time.sleep(0.3)  # subscriptions in place
        appliance.start_shim(
            RaceSimulatorAdapter(laps=3, speed=1.0, seed=5, opponents=8)
        )

        def shown() -> bool:
            car = live.car("car1")
            return car is not None and len(car.others) == 8

        assert wait_for(shown, timeout=30), live.car("car1")
        time.sleep(3.0)
        with lock:
            counted = dict(wire)
            seconds = time.monotonic() - first[0]
        car = live.car("car1")
        assert car is not None
        assert len(car.others) == 8
        assert {o.number for o in car.others}
        assert all(0.0 <= o.lap_dist_pct <= 1.0 for o in car.others)
        assert others_in_states == 0
        # A state per fresh batch; the field at most 4 times a second.
        assert counted["state"] > 2 * counted["field"], counted
        assert 0 < counted["field"] <= 4 * seconds + 2, (counted, seconds)
        assert not live.rejected, live.rejected
    finally:
        reader.stop()
        counter.stop()
