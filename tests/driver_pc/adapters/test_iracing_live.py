"""The live iRacing adapter on Linux: the memory-map emulator, real recordings, the simulator."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import irsdk
import numpy as np
import pytest

from driver_pc.adapters.base import create_adapter
from driver_pc.adapters.iracing_live import IRacingLiveAdapter
from driver_pc.adapters.irsdk_emulator import IbtSource, IRacingMemoryEmulator
from driver_pc.adapters.simulator import RaceSimulatorAdapter
from driver_pc.pipeline import ShimPipeline
from driver_pc.protocol import topics
from driver_pc.protocol.codec import Codec
from driver_pc.protocol.messages import (
    ChannelDictionary,
    DriverChange,
    Message,
    SessionInfo,
    ShimState,
    ShimStatus,
    TelemetryBatch,
)
from driver_pc.protocol.mqtt import BrokerAddress, MqttConnection
from driver_pc.protocol.session_info import current_driver, parse_session_info
from pitbox_appliance.analysis.segmentation import LapSegmenter
from tests.conftest import BrokerHandle, driver_shim, real_file, wait_for

LAP_TOLERANCE_S = 0.002
LANGLEY = "skmodified_langley_2015-05-28_14-49-50.ibt"


@pytest.fixture
def mem_path(tmp_path: Path) -> Path:
    return tmp_path / "irsdk.mem"


def test_the_map_has_the_layout_of_a_recorded_live_dump(mem_path: Path) -> None:
    dump = real_file("iracing", "live", "teamjorge_live_dump.bin").read_bytes()
    source = IbtSource(real_file("iracing", "ibt", LANGLEY), duration_s=2)
    with IRacingMemoryEmulator(mem_path, source) as emulator:
        assert emulator.wait_ticks(5, timeout=5)
        ours = mem_path.read_bytes()
        # version, status, tick rate, session-info length and offset, var-header
        # offset, buffer count; then the three buffers' offsets.
        fields = [0, 1, 2, 4, 5, 7, 8]
        assert [struct.unpack_from("<10i", ours)[i] for i in fields] == [
            struct.unpack_from("<10i", dump)[i] for i in fields
        ]
        offsets = [struct.unpack_from("<i", ours, 52 + 16 * i)[0] for i in range(4)]
        assert offsets == [
            struct.unpack_from("<i", dump, 52 + 16 * i)[0] for i in range(4)
        ]
        assert len(ours) == len(dump)

        ir = irsdk.IRSDK()
        assert ir.startup(test_file=str(mem_path))
        try:
            assert ir.is_connected
            assert ir["WeekendInfo"]["TrackName"] == "langley"
            ticks = sorted(b.tick_count for b in ir._header.var_buf)
            assert ticks == list(range(ticks[0], ticks[0] + 3))  # consecutive
            ir.freeze_var_buffer_latest()
            assert ir["SessionTime"] in source.rows()["SessionTime"]
        finally:
            ir.shutdown()


def test_a_real_recording_is_read_live_at_60_hz(mem_path: Path) -> None:
    """20 s of a real Langley lap: every tick, byte-equal values, iRacing's lap time."""
    path = real_file("iracing", "ibt", LANGLEY)
    played = IbtSource(path, start_s=16.0, duration_s=20.0).rows()
    with _EmulatorProcess(
        mem_path, "--ibt", str(path), "--start-s", "16", "--duration-s", "20"
    ) as emulator:
        frames, decoded, stats = _read_all(mem_path)
    written = emulator.stats["ticks_written"]
    assert written == len(played) == 1200

    assert stats.missed_ticks == stats.dropped_ticks == 0
    first = _index_of(played, frames)
    # Every tick from the first one read to the last one written, in order.
    assert len(frames) == written - first
    assert stats.last_tick == written
    np.testing.assert_array_equal(frames, _packed(played[first:], frames.dtype))

    truth = _iracing_lap_times(played)
    assert len(truth) == 1  # 15.1677 s
    laps = _lap_times(decoded)
    assert len(laps) == 1
    assert abs(laps[0] - truth[0]) <= LAP_TOLERANCE_S


def test_the_simulator_is_read_live_with_its_opponents(mem_path: Path) -> None:
    """10 s of a simulated field at 60 Hz (``CarIdx*`` arrays): every tick, the values
    of a twin run of the same race.
    """
    window = (20.0, 10.0)
    with _EmulatorProcess(
        mem_path,
        "--simulator",
        *("--laps", "3", "--opponents", "5", "--seed", "7"),
        *("--start-s", str(window[0]), "--duration-s", str(window[1])),
    ) as emulator:
        frames, decoded, stats = _read_all(mem_path)
    written = emulator.stats["ticks_written"]
    assert stats.session_key == "ir-0-car42"

    twin = np.concatenate(
        list(RaceSimulatorAdapter(laps=3, speed=0, seed=7, opponents=5).ticks())
    )
    times = twin["SessionTime"] - twin["SessionTime"][0]
    played = twin[(times >= window[0] - 1e-9) & (times < sum(window) - 1e-9)]
    assert len(played) == written == 600
    assert stats.missed_ticks == 0
    first = _index_of(played, frames)
    assert len(frames) == written - first
    np.testing.assert_array_equal(frames, played[first:])
    assert frames["CarIdxLapDistPct"].shape[1:] == (64,)
    # Through the codec: the opponents' positions at their wire quantum (1e-4).
    np.testing.assert_allclose(
        decoded["CarIdxLapDistPct"], frames["CarIdxLapDistPct"], atol=1e-4
    )


def test_sim_restart_session_change_and_info_update(mem_path: Path) -> None:
    """The adapter alone: each event ends or feeds the session as the pipeline needs."""
    source = IbtSource(real_file("iracing", "ibt", LANGLEY), loop=True)
    with IRacingMemoryEmulator(mem_path, source) as emulator:
        adapter = IRacingLiveAdapter(memory_map=str(mem_path))
        try:
            ticks = adapter.ticks()
            unique = int(next(ticks)["SessionUniqueID"][-1])
            key = adapter.session_key
            assert key == "ir-0-car82"

            # Session info changes mid-session: same stream, new text and counter.
            text = _swap_driver(emulator.session_info_text(), "Bea Relief")
            update = emulator.update_session_info(text)
            _next_until(ticks, lambda: adapter.session_info_update == update)
            assert "Bea Relief" in adapter.session_info_text()
            assert adapter.session_key == key

            # A new session: the stream ends, the next one starts with a new key.
            emulator.change_session(4242)
            # Ticks the sim wrote before the change (a busy machine reads them late)
            # are the old session's last; none of the new one is in this stream.
            rest = list(ticks)
            assert len(rest) <= 60
            assert all((rows["SessionUniqueID"] == unique).all() for rows in rest)
            assert adapter.session_key == "ir-4242-car82"
            assert adapter.wait_for_session(0.0)
            ticks = adapter.ticks()
            next(ticks)
            assert adapter.stats.session_changes == 1

            # The sim goes away: the stream ends; it comes back: a new mapping.
            emulator.stop_sim()
            # Ticks written before it went (read late on a busy machine) may still
            # come; then the stream ends.
            assert len(list(ticks)) <= 60
            assert not adapter.wait_for_session(0.3)
            emulator.start_sim()
            assert adapter.wait_for_session(5.0)
            ticks = adapter.ticks()
            next(ticks)
            assert adapter.stats.connects == 2
            assert adapter.stats.sim_gone == 1
            # The same session rejoined: the same key, so the appliance goes on.
            assert adapter.session_key == "ir-4242-car82"
            assert adapter.stats.missed_ticks == 0
        finally:
            adapter.close()


def test_a_stalled_sim_counts_as_gone(mem_path: Path) -> None:
    source = IbtSource(real_file("iracing", "ibt", LANGLEY), duration_s=1.0)
    with IRacingMemoryEmulator(mem_path, source, on_end="hold"):
        adapter = IRacingLiveAdapter(memory_map=str(mem_path), stall_s=0.3)
        try:
            rows = list(adapter.ticks())  # ends 0.3 s after the last tick
            assert 0 < len(rows) <= 60
            assert adapter.stats.sim_gone == 1
            # The map is still there, status connected, but nothing ticks.
            assert mem_path.exists()
            assert not adapter.wait_for_session(0.0)
        finally:
            adapter.close()


def test_the_shim_follows_the_sim_through_a_broker(
    broker: BrokerHandle, mem_path: Path, tmp_path: Path
) -> None:
    """pitbox-shim's service over the emulator: what the appliance receives."""
    key = os.urandom(32)
    received = _Subscriber(broker, key)
    source = IbtSource(real_file("iracing", "ibt", LANGLEY), loop=True)
    with IRacingMemoryEmulator(mem_path, source) as emulator:
        adapter = create_adapter("iracing", memory_map=str(mem_path))
        assert isinstance(adapter, IRacingLiveAdapter)
        shim = driver_shim(broker, key, tmp_path / "shim.spool", adapter)
        stop = threading.Event()
        thread = threading.Thread(target=shim.run, args=(stop,), daemon=True)
        thread.start()
        try:
            assert wait_for(lambda: received.batches("ir-0-car82") >= 5, timeout=15)

            text = _swap_driver(emulator.session_info_text(), "Bea Relief")
            update = emulator.update_session_info(text)
            assert wait_for(lambda: received.driver("ir-0-car82") == "Bea Relief")
            infos = received.of(SessionInfo)
            assert infos[-1].update == update
            assert infos[-1].session_key == "ir-0-car82"

            emulator.change_session(4242)
            assert wait_for(lambda: received.batches("ir-4242-car82") >= 5)
            assert received.of(ChannelDictionary)[-1].session_key == "ir-4242-car82"
            assert received.of(SessionInfo)[-1].session_key == "ir-4242-car82"

            emulator.stop_sim()
            assert wait_for(
                lambda: any(
                    s.state is ShimState.WAITING_FOR_SIM
                    for s in received.of(ShimStatus)
                ),
                timeout=10,
            )
            before = received.batches("ir-4242-car82")
            dictionaries = len(received.of(ChannelDictionary))
            emulator.start_sim()  # the sim is back in the same session
            assert wait_for(lambda: received.batches("ir-4242-car82") >= before + 5)
            # The new mapping is announced again: channels, session info, driver.
            assert len(received.of(ChannelDictionary)) == dictionaries + 1
            assert received.of(ChannelDictionary)[-1].session_key == "ir-4242-car82"
            assert received.of(SessionInfo)[-1].session_key == "ir-4242-car82"
            assert received.of(SessionInfo)[-1].update == 1
        finally:
            stop.set()
            thread.join(timeout=15)
            received.stop()
    assert not thread.is_alive()
    assert adapter.stats.connects == 2
    assert adapter.stats.session_changes == 1
    assert adapter.stats.missed_ticks == 0


def test_a_missing_map_means_the_sim_is_not_running(mem_path: Path) -> None:
    from driver_pc.adapters.base import AdapterUnavailableError

    with pytest.raises(AdapterUnavailableError, match="not running"):
        create_adapter("iracing", memory_map=str(mem_path))


# ---- helpers ---------------------------------------------------------------------------
class _EmulatorProcess:
    """The emulator as its own process, as iRacing is: its work does not share the
    shim's interpreter (the timing tests run it so; the others in-process).
    """

    def __init__(self, mem_path: Path, *args: str) -> None:
        self.stats_path = mem_path.with_suffix(".json")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "driver_pc.adapters.irsdk_emulator",
                *args,
                *("--out", str(mem_path), "--stats", str(self.stats_path)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.stats: dict[str, float] = {}

    def __enter__(self) -> _EmulatorProcess:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        try:
            _out, err = self.process.communicate(timeout=60)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        if exc_type is None:
            assert self.process.returncode == 0, err.decode()
            self.stats = json.loads(self.stats_path.read_text())


@dataclass
class _Read:
    session_key: str
    missed_ticks: int
    dropped_ticks: int
    last_tick: int


def _read_all(mem_path: Path) -> tuple[np.ndarray, np.ndarray, _Read]:
    """Connect to the map and stream one session through the pipeline and codec."""
    adapter = IRacingLiveAdapter(memory_map=str(mem_path), wait_s=30)
    try:
        key = adapter.session_key
        frames, decoded = _stream(adapter)
    finally:
        adapter.close()
    stats = adapter.stats
    return (
        frames,
        decoded,
        _Read(key, stats.missed_ticks, stats.dropped_ticks, stats.last_tick),
    )


def _stream(adapter: IRacingLiveAdapter) -> tuple[np.ndarray, np.ndarray]:
    """Run the shim pipeline and codec over one session.

    Returns the frames the pipeline batched and the same after encode → decode.
    """
    codec = Codec(os.urandom(32))
    dictionaries: dict[int, ChannelDictionary] = {}
    frames: list[np.ndarray] = []
    decoded: list[np.ndarray] = []
    for seq, message in enumerate(ShimPipeline(adapter).messages(), 1):
        back = codec.decode(codec.encode("car1-pc1", seq, message), dictionaries)
        if isinstance(back.message, ChannelDictionary):
            dictionaries[back.message.dict_id] = back.message
        if isinstance(message, TelemetryBatch):
            assert isinstance(back.message, TelemetryBatch)
            frames.append(message.frames)
            decoded.append(back.message.frames)
    return np.concatenate(frames), np.concatenate(decoded)


def _index_of(rows: np.ndarray, frames: np.ndarray) -> int:
    """Where the first frame read sits among the rows played."""
    (where,) = np.flatnonzero(rows["SessionTime"] == frames["SessionTime"][0])
    return int(where)


def _packed(rows: np.ndarray, dtype: np.dtype[np.void]) -> np.ndarray:
    out = np.empty(len(rows), dtype=dtype)
    for name in dtype.names or ():
        out[name] = rows[name]
    return out


def _iracing_lap_times(rows: np.ndarray) -> list[float]:
    """The lap times iRacing itself published (LapLastLapTime changes to > 0)."""
    llt = rows["LapLastLapTime"]
    changes = np.flatnonzero(np.diff(llt) != 0) + 1
    return [float(llt[i]) for i in changes if llt[i] > 0]


def _lap_times(frames: np.ndarray) -> list[float]:
    segmenter = LapSegmenter(tick_rate=60)
    return [lap.lap_time for lap in segmenter.feed(frames) if lap.lap_time is not None]


def _next_until(ticks: Iterator[np.ndarray], condition: object) -> None:
    assert callable(condition)
    for _ in range(600):
        next(ticks)
        if condition():
            return
    raise AssertionError("condition not reached within 10 s of ticks")


class _Subscriber:
    """The appliance's side of the broker: every message of the shim, decoded."""

    def __init__(self, broker: BrokerHandle, key: bytes) -> None:
        self.codec = Codec(key)
        self.dictionaries: dict[int, ChannelDictionary] = {}
        self.messages: list[Message] = []
        self._lock = threading.Lock()
        self.conn = MqttConnection(
            "test-appliance",
            BrokerAddress(
                broker.host,
                broker.port,
                broker.appliance_user,
                broker.appliance_password,
            ),
        )
        self.conn.subscribe(topics.shim_data(broker.driver_user).name, 1, self._on)
        self.conn.start()
        assert self.conn.connected.wait(10)

    def _on(self, _topic: str, payload: bytes, _mid: int) -> None:
        message = self.codec.decode(payload, self.dictionaries).message
        if isinstance(message, ChannelDictionary):
            self.dictionaries[message.dict_id] = message
        with self._lock:
            self.messages.append(message)

    def of(self, kind: type) -> list:  # type: ignore[type-arg]
        with self._lock:
            return [m for m in self.messages if isinstance(m, kind)]

    def batches(self, session_key: str) -> int:
        return sum(b.session_key == session_key for b in self.of(TelemetryBatch))

    def driver(self, session_key: str) -> str | None:
        changes = [d for d in self.of(DriverChange) if d.session_key == session_key]
        return changes[-1].user_name if changes else None

    def stop(self) -> None:
        self.conn.stop()


def _swap_driver(text: str, name: str) -> str:
    """The session info with another driver in our car (a driver swap)."""
    driver = current_driver(parse_session_info(text))
    assert driver is not None
    swapped = text.replace(f"UserName: {driver.user_name}\n", f"UserName: {name}\n")
    assert swapped != text
    return swapped
