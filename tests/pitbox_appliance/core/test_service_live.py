"""The core publishes a car's fresh state on paho's thread, and reports its live lag.

Real broker, real core, a simulated shim at real time. A fresh frame goes from the
broker to the pit wall with no hand-off to another thread (each hand-off waits for a
wake-up and the GIL); ``health()["live"]`` gives the lag of each stage.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from driver_pc.protocol import topics
from pitbox_appliance.core.live import LiveStamp, LiveTimings
from tests.conftest import RunningAppliance, wait_for


def test_fresh_states_go_out_from_paho_thread_with_their_stage_times(
    appliance: RunningAppliance, monkeypatch: pytest.MonkeyPatch
) -> None:
    core = appliance.core
    publishers: Counter[str] = Counter()
    publish = core.connection.publish

    def recording(topic: Any, payload: bytes | str, **kw: Any) -> int:
        if topic.name.endswith("/state"):
            publishers[threading.current_thread().name] += 1
        return publish(topic, payload, **kw)

    monkeypatch.setattr(core.connection, "publish", recording)
    appliance.start_shim(RaceSimulatorAdapter(laps=3, speed=1.0, seed=5))
    assert wait_for(lambda: core.health()["live"]["n"] >= 40, timeout=30)

    live = core.health()["live"]
    # Every stage was timed, and the stages add up to the whole.
    for stage in ("receive_to_publish", "queue", "peek", "peek_to_publish"):
        assert live[stage]["p50"] is not None, stage
        assert 0 <= live[stage]["p50"] <= live[stage]["max"], stage
    assert live["errors"] == 0
    assert live["peeked"] >= live["n"]
    # States go out from paho's own thread, as the frame arrives; the live thread
    # sends what the rate limit held back (frames that came bunched, more of them
    # on a busy machine), ingest's news and the once-a-second states.
    paho = sum(n for name, n in publishers.items() if name.startswith("paho"))
    assert paho >= 10, publishers
    assert topics.live_state("car1").name.endswith("/state")


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
