import math
from pathlib import Path

import numpy as np
import pytest

from driver_pc.adapters.ibt_file import IbtReader
from driver_pc.adapters.simulator import write_simulated_ibt
from pitbox_appliance.analysis import InputMetrics, input_metrics
from pitbox_appliance.analysis.lap_inputs import INPUT_CHANNELS, LapInputBuffer
from tests.conftest import real_file

RATE = 60


def corner_trace(
    seconds: float = 20.0, rate: int = RATE
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A clean, deliberate lap-like trace: sweeping steering, ramped pedals."""
    t = np.arange(int(seconds * rate)) / rate
    steering = 0.4 * np.sin(2 * np.pi * t / 5.0)
    throttle = np.clip(0.5 + 0.8 * np.sin(2 * np.pi * t / 5.0 + 0.5), 0.0, 1.0)
    brake = np.clip(0.9 * np.sin(2 * np.pi * t / 5.0 + np.pi), 0.0, 0.9)
    return throttle, brake, steering


def pedal_pulses(ramp_s: float, seconds: float = 20.0) -> np.ndarray:
    """Throttle on for 2 s, off for 2 s, repeatedly; ``ramp_s`` = 0 gives bang-bang."""
    t = np.arange(int(seconds * RATE)) / RATE
    phase = t % 4.0
    if ramp_s <= 0:
        return (phase < 2.0).astype(float)
    up = np.clip(phase / ramp_s, 0.0, 1.0)
    down = np.clip((4.0 - phase) / ramp_s, 0.0, 1.0)
    return np.minimum(up, down) * (phase < 4.0)


def assert_unit(m: InputMetrics) -> None:
    for value in (m.smoothness, m.aggression, m.precision):
        assert math.isfinite(value)
        assert 0.0 <= value <= 1.0


def lap_metrics(path: Path) -> dict[int, InputMetrics | None]:
    with IbtReader(path) as reader:
        lap = reader.column("Lap")
        thr, brk, steer = (
            reader.column(n) for n in ("Throttle", "Brake", "SteeringWheelAngle")
        )
        rate = reader.layout.tick_rate
    return {
        int(n): input_metrics(thr[lap == n], brk[lap == n], steer[lap == n], rate)
        for n in np.unique(lap)
    }


def test_noise_makes_a_trace_less_smooth_and_less_precise() -> None:
    throttle, brake, steering = corner_trace()
    rng = np.random.default_rng(3)
    clean = input_metrics(throttle, brake, steering)
    noisy = input_metrics(
        throttle + rng.normal(0, 0.02, throttle.size),
        brake + rng.normal(0, 0.02, brake.size),
        steering + rng.normal(0, 0.01, steering.size),
    )
    assert clean is not None
    assert noisy is not None
    assert clean.smoothness > 0.95
    assert clean.precision > 0.95
    assert clean.smoothness - noisy.smoothness > 0.4
    assert clean.precision - noisy.precision > 0.4


def test_sawing_at_the_wheel_lowers_precision() -> None:
    throttle, brake, steering = corner_trace()
    t = np.arange(steering.size) / RATE
    sawing = steering + 0.05 * np.sin(2 * np.pi * 4.0 * t)  # 4 Hz corrections
    clean = input_metrics(throttle, brake, steering)
    sawn = input_metrics(throttle, brake, sawing)
    assert clean is not None
    assert sawn is not None
    assert clean.precision - sawn.precision > 0.15


def test_bang_bang_throttle_is_more_aggressive_than_a_ramp() -> None:
    zeros = np.zeros(20 * RATE)
    bang = input_metrics(pedal_pulses(0.0), zeros, zeros)
    ramp = input_metrics(pedal_pulses(1.0), zeros, zeros)
    assert bang is not None
    assert ramp is not None
    assert bang.aggression > 0.99  # full travel inside one tick
    assert ramp.aggression == pytest.approx(0.13, abs=0.01)  # 1 - 2**-(1/5)
    assert bang.smoothness < 0.05  # pure steps
    assert ramp.smoothness > 0.95
    # a single on/off is deliberate, not a correction
    assert bang.precision > 0.95


def test_aggression_is_zero_without_pedal_application() -> None:
    _, _, steering = corner_trace()
    zeros = np.zeros_like(steering)
    m = input_metrics(zeros, zeros, steering)
    assert m is not None
    assert m.aggression == 0.0


@pytest.mark.parametrize("seed", range(8))
def test_values_stay_in_unit_interval(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2 * RATE, 60 * RATE))
    scale = 10.0 ** rng.uniform(-3, 2)
    m = input_metrics(
        rng.uniform(-0.5, 1.5, n) * rng.integers(0, 2),
        np.cumsum(rng.normal(0, scale, n)),  # out of range: clipped
        rng.normal(0, scale, n) * rng.integers(0, 2, n),
    )
    assert m is not None
    assert_unit(m)


def test_same_driving_at_360_hz_scores_like_60_hz() -> None:
    throttle, brake, steering = corner_trace(rate=RATE)
    f_throttle, f_brake, f_steering = corner_trace(rate=6 * RATE)
    slow = input_metrics(throttle, brake, steering, tick_rate=RATE)
    quick = input_metrics(f_throttle, f_brake, f_steering, tick_rate=6 * RATE)
    assert slow is not None
    assert quick is not None
    assert quick.smoothness == pytest.approx(slow.smoothness, abs=0.02)
    assert quick.aggression == pytest.approx(slow.aggression, abs=0.02)
    assert quick.precision == pytest.approx(slow.precision, abs=0.02)


def test_short_missing_or_idle_input_gives_none() -> None:
    throttle, brake, steering = corner_trace()
    short = slice(0, 2 * RATE - 1)  # just under two seconds
    assert input_metrics(throttle[short], brake[short], steering[short]) is None
    assert input_metrics(throttle, None, steering) is None
    broken = steering.copy()
    broken[100] = np.nan
    assert input_metrics(throttle, brake, broken) is None
    idle = np.zeros(10 * RATE)
    assert input_metrics(idle, idle, idle + 0.1) is None


def test_mismatched_or_bad_input_raises() -> None:
    throttle, brake, steering = corner_trace()
    with pytest.raises(ValueError, match="one length"):
        input_metrics(throttle, brake[:-1], steering)
    with pytest.raises(ValueError, match="tick_rate"):
        input_metrics(throttle, brake, steering, tick_rate=0)


def test_real_martinsville_laps_give_finite_metrics() -> None:
    path = real_file(
        "iracing", "ibt", "skmodified_martinsville_2015-05-30_20-32-44.ibt"
    )
    laps = lap_metrics(path)
    # laps 32 and 33 are complete (iRacing timed them 19.5 s and 20.2 s)
    for n in (31, 32, 33, 34):
        m = laps[n]
        assert m is not None, f"lap {n}"
        assert_unit(m)
    # a real driver is smoother and more deliberate than the same lap plus noise
    with IbtReader(path) as reader:
        sel = reader.column("Lap") == 32
        thr, brk, steer = (
            reader.column(n)[sel] for n in ("Throttle", "Brake", "SteeringWheelAngle")
        )
    rng = np.random.default_rng(0)
    noisy = input_metrics(
        thr + rng.normal(0, 0.02, thr.size),
        brk + rng.normal(0, 0.02, brk.size),
        steer + rng.normal(0, 0.01, steer.size),
    )
    clean = laps[32]
    assert clean is not None
    assert noisy is not None
    assert clean.smoothness > noisy.smoothness
    assert clean.precision > noisy.precision


def test_simulator_written_laps_give_finite_metrics(tmp_path: Path) -> None:
    path = write_simulated_ibt(tmp_path / "sim.ibt", laps=3)
    laps = lap_metrics(path)
    timed = [m for m in laps.values() if m is not None]
    assert len(timed) >= 3
    for m in timed:
        assert_unit(m)


def _frames(times: np.ndarray) -> np.ndarray:
    dtype = np.dtype([(name, "f8") for name in INPUT_CHANNELS])
    frames = np.zeros(len(times), dtype=dtype)
    frames["SessionTime"] = times
    frames["Throttle"] = np.linspace(0.0, 1.0, len(times))
    return frames


def test_a_lap_ending_on_the_last_buffered_frame_leaves_the_buffer_usable() -> None:
    """Issue 11: a lap end at or after the newest frame left an empty chunk behind,
    and the next append raised IndexError (found on a real Langley recording)."""
    buffer = LapInputBuffer()
    buffer.append(_frames(np.arange(0.0, 20.0, 1 / 60)))
    assert buffer.lap(0.0, 25.0) is not None  # ends after the newest sample
    buffer.append(_frames(np.empty(0)))  # an empty batch is ignored
    buffer.append(_frames(np.arange(25.0, 26.0, 1 / 60)))
    buffer.append(_frames(np.arange(26.0, 40.0, 1 / 60)))
    assert buffer.lap(25.0, 40.0) is not None


def test_real_langley_recording_with_a_reset_imports(tmp_path: Path) -> None:
    """The recording that ended `pitbox import` (and the core's ingest thread)."""
    from pitbox_appliance.cli import main as pitbox

    path = real_file("iracing", "ibt", "skmodified_langley_2015-05-28_14-47-39.ibt")
    db = f"sqlite:///{tmp_path / 'langley.db'}"
    assert pitbox(["import", str(path), "--db", db, "--quiet"]) == 0
