"""The live state keeps moving while ingest is held (a long commit, a slow disk).

Real broker, real core, a simulated shim at real time. The test holds the core's
ingest lock for two seconds, as a commit or a checkpoint's fsync on a busy SD card
would: nothing is handled or stored meanwhile, yet the car's live state on the broker
goes on showing the driving PC's newest frame at 20 Hz, from the live thread.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from driver_pc.pipeline import ShimPipeline
from driver_pc.protocol.codec import Codec
from driver_pc.protocol.messages import ChannelDictionary, TelemetryBatch
from driver_pc.protocol.mqtt import BrokerAddress, MqttConnection
from pitbox_appliance.core.live_path import LivePeek
from tests.conftest import RunningAppliance, wait_for

HOLD_S = 2.0


def test_the_live_state_moves_while_ingest_is_held(
    appliance: RunningAppliance,
) -> None:
    broker = appliance.broker
    seen: list[tuple[float, float]] = []  # (arrival, SessionTime shown)
    lock = threading.Lock()

    def on_state(_topic: str, payload: bytes, _mid: int) -> None:
        with lock:
            seen.append(
                (time.monotonic(), json.loads(payload)["values"]["SessionTime"])
            )

    watcher = MqttConnection(
        "live-watcher",
        BrokerAddress(
            broker.host, broker.port, broker.appliance_user, broker.appliance_password
        ),
    )
    watcher.subscribe("pitbox/v1/live/+/state", 0, on_state)
    watcher.start()
    core = appliance.core
    try:
        appliance.start_shim(RaceSimulatorAdapter(laps=3, speed=1.0, seed=2))
        assert wait_for(lambda: len(seen) > 20 and seen[-1][1] > 2.0, timeout=30)
        stored_before = core.ingestor.stats.frames
        with core._lock:  # ingest can neither handle nor commit
            held = time.monotonic()
            time.sleep(HOLD_S)
            stored_during = core.ingestor.stats.frames
            released = time.monotonic()
        time.sleep(0.5)
    finally:
        watcher.stop()
    assert stored_during == stored_before  # ingest really was held
    with lock:
        during = [(at, t) for at, t in seen if held + 0.2 <= at <= released]
    # 20 states a second from the live thread, each newer than the one before.
    assert len(during) >= 0.5 * 20 * (HOLD_S - 0.2), len(during)
    times = [t for _, t in during]
    assert times == sorted(times)
    assert times[-1] - times[0] >= 0.6 * (HOLD_S - 0.2)
    assert core.live_peek.peeked > 0


def test_peek_reads_new_telemetry_and_skips_what_it_cannot_read() -> None:
    """Unreadable messages are counted and skipped, never raised; a known channel set
    gives the newest frame's live values; a duplicate gives nothing."""
    codec = Codec(bytes(32))
    messages = list(ShimPipeline(RaceSimulatorAdapter(laps=1, speed=0)).messages())
    channels = next(m for m in messages if isinstance(m, ChannelDictionary))
    batch = next(m for m in messages if isinstance(m, TelemetryBatch))
    peek = LivePeek(codec, {})
    assert peek.peek(b"\x00" * 40, "car1-pc1") is None
    # (A codec of its own: a shim's codec chains its batches, this one is not seen.)
    early = Codec(bytes(32)).encode("car1-pc1", 1, batch)
    assert peek.peek(early, "car1-pc1") is None
    assert peek.skipped["unknown_dictionary"] == 1
    assert sum(peek.skipped.values()) == 2
    assert peek.peek(codec.encode("car1-pc1", 2, channels), "car1-pc1") is None
    wire = codec.encode("car1-pc1", 3, batch)
    fresh = peek.peek(wire, "car1-pc1")
    assert fresh is not None
    assert fresh.source == "car1-pc1"
    assert fresh.session_key == batch.session_key
    # Decoded at each channel's stated quantum.
    last = batch.frames[-1]
    assert fresh.session_time == pytest.approx(float(last["SessionTime"]), abs=1e-6)
    assert fresh.values["Speed"] == pytest.approx(float(last["Speed"]), abs=0.01)
    assert peek.peek(wire, "car1-pc1") is None  # the same message again
    assert peek.peeked == 1


def test_peek_survives_a_fault_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug reading one message is counted; the live thread goes on, and its chain
    of deltas picks up again at the next keyframe (every 40 batches)."""
    codec = Codec(bytes(32))
    messages = list(ShimPipeline(RaceSimulatorAdapter(laps=1, speed=0)).messages())
    peek = LivePeek(codec, {})
    wires = [codec.encode("car1-pc1", seq, m) for seq, m in enumerate(messages[:130])]
    parse = peek._decoder.parse
    calls = iter(range(1000))

    def failing_once(opened: Any) -> Any:
        if next(calls) == 3:
            raise IndexError("a bug in a decoder")
        return parse(opened)

    monkeypatch.setattr(peek._decoder, "parse", failing_once)
    fresh = [peek.peek(wire, "car1-pc1") for wire in wires]
    assert peek.skipped["error"] == 1
    assert peek.skipped["missing_base"] > 0  # the rest of that chain
    assert sum(f is not None for f in fresh[60:]) >= 40  # from the next keyframe on


def test_a_pc_standing_by_is_not_decoded_and_is_read_from_its_keyframe_once_elected() -> (
    None
):
    """The live path decodes only the driving PC's telemetry (a car may have three).

    While ``wanted`` says no, a PC's batches are counted, not decoded; once it says
    yes (the PC was elected), its values show from its next keyframe on (every 40
    batches), never from a delta whose base the peek did not follow.
    """
    codec = Codec(bytes(32))
    messages = list(ShimPipeline(RaceSimulatorAdapter(laps=1, speed=0)).messages())
    wires = [codec.encode("car1-pc2", seq, m) for seq, m in enumerate(messages[:130])]
    batches = sum(isinstance(m, TelemetryBatch) for m in messages[:130])
    peek = LivePeek(codec, {})
    driving = False
    fresh = [peek.peek(w, "car1-pc2", lambda _source: driving) for w in wires[:50]]
    assert fresh == [None] * 50
    standing_by = sum(isinstance(m, TelemetryBatch) for m in messages[:50])
    assert peek.skipped["standing_by"] == standing_by > 0
    assert peek.peeked == 0
    driving = True
    after = [peek.peek(w, "car1-pc2", lambda _source: driving) for w in wires[50:]]
    read = [f for f in after if f is not None]
    assert peek.skipped["missing_base"] > 0  # up to its next keyframe
    assert len(read) >= batches - 50 - 45
    # Each value read is the batch's own newest frame (right, not built on a gap).
    by_time = {
        float(m.frames[-1]["SessionTime"]): m
        for m in messages[50:130]
        if isinstance(m, TelemetryBatch)
    }
    for f in read:
        last = by_time[min(by_time, key=lambda t: abs(t - f.session_time))].frames[-1]
        assert f.session_time == pytest.approx(float(last["SessionTime"]), abs=1e-6)
        assert f.values["Speed"] == pytest.approx(float(last["Speed"]), abs=0.01)
