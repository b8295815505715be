"""The core's live thread sends each fresh frame once, and reports its live lag.

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
from pitbox_appliance.core.live import LiveStamp, LiveTimings
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
