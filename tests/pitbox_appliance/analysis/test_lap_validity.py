"""Resets, tows, iRacing's invalid laps and refuelling in the lap segmenter (synthetic frames)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from pitbox_appliance.analysis.segmentation import (
    VERDICT_WAIT_S,
    CompletedLap,
    LapSegmenter,
)

TRACK_M = 600.0
SPEED = 40.0  # m/s: a 15 s lap
BURN_PER_M = 0.2 / TRACK_M  # 0.2 l a lap
DT = 1 / 60
PIT_STALL_M = 60.0
DTYPE = np.dtype(
    [
        ("SessionTime", "f8"),
        ("Lap", "i4"),
        ("LapDistPct", "f4"),
        ("LapDist", "f4"),
        ("Speed", "f4"),
        ("FuelLevel", "f4"),
        ("OnPitRoad", "?"),
        ("LapLastLapTime", "f4"),
    ]
)


@dataclass
class Car:
    """A car driven tick by tick the way iRacing reports it (what the tests need of it)."""

    publish_delay_s: float = 1.0  # iRacing publishes LapLastLapTime after the line
    with_lap: bool = True
    t: float = 100.0
    pos: float = 300.0
    lap: int = 5
    fuel: float = 20.0
    speed: float = SPEED
    pit: bool = False
    last_lap_time: float = 15.0
    lap_start: float | None = None
    reset_this_lap: bool = False
    rows: list[tuple[float, int, float, float, float, float, bool, float]] = field(
        default_factory=list
    )
    crossings: list[float] = field(default_factory=list)
    _publish: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        # iRacing saw the lap start before the first frame we have.
        self.lap_start = self.t - self.pos / self.speed

    def drive(self, seconds: float) -> Car:
        for _ in range(round(seconds / DT)):
            before = self.t
            self.t += DT
            self.pos += self.speed * DT
            self.fuel -= self.speed * DT * BURN_PER_M
            if self.pos >= TRACK_M:
                self.pos -= TRACK_M
                crossing = before + (self.speed * DT - self.pos) / self.speed
                self.crossings.append(crossing)
                timed = self.lap_start is not None and not self.reset_this_lap
                verdict = crossing - self.lap_start if timed and self.lap_start else -1
                self._publish = (crossing + self.publish_delay_s, verdict)
                self.lap += 1
                self.lap_start = crossing
                self.reset_this_lap = False
            if self._publish is not None and self.t >= self._publish[0]:
                self.last_lap_time = self._publish[1]
                self._publish = None
            self._row()
        return self

    def reset_to_pits(self, fuel: float = 25.0) -> Car:
        """iRacing's reset: one all-zero tick (Lap 0), then the car in its pit stall."""
        self.t += DT
        self.rows.append((self.t, 0, 0.0, 0.0, 0.0, fuel, False, self.last_lap_time))
        self.fuel = fuel
        return self.tow(PIT_STALL_M)

    def tow(self, to_m: float) -> Car:
        """The car put down at ``to_m`` on pit road, standing (``Lap`` unchanged)."""
        self.reset_this_lap = True
        self.pos, self.speed, self.pit = to_m, 0.0, True
        self.t += DT
        self._row()
        return self

    def pull_away(self) -> Car:
        self.speed, self.pit = SPEED, False
        return self

    def _row(self) -> None:
        self.rows.append(
            (
                self.t,
                self.lap,
                self.pos / TRACK_M,
                self.pos,
                self.speed,
                self.fuel,
                self.pit,
                self.last_lap_time,
            )
        )

    def frames(self) -> np.ndarray:
        rows = np.array(self.rows, dtype=DTYPE)
        if not self.with_lap:
            names = [n for n in DTYPE.names or () if n not in ("Lap", "LapDist")]
            return rows[names]
        return rows


def segment(frames: np.ndarray, batch: int = 3) -> list[CompletedLap]:
    seg = LapSegmenter()
    laps = [
        lap
        for i in range(0, len(frames), batch)
        for lap in seg.feed(frames[i : i + batch])
    ]
    return laps + seg.flush()


def test_clean_laps_are_timed_and_valid() -> None:
    car = Car().drive(50.0)
    laps = segment(car.frames())
    assert [lap.lap_number for lap in laps] == [5, 6, 7]
    assert laps[0].lap_time is None
    assert not laps[0].invalid
    for lap in laps[1:]:
        assert lap.lap_time == pytest.approx(15.0, abs=DT)
        assert not lap.invalid
        assert not lap.refuelled
        assert lap.fuel_used == pytest.approx(0.2, abs=1e-3)


def test_reset_mid_lap_makes_that_lap_invalid_without_a_phantom_lap() -> None:
    # Lap 6 starts at the line, the car is reset to its stall 8 s in (Lap 0 for a
    # tick, fuel topped up), drives out and crosses the line: iRacing gives it -1.
    car = Car(pos=550.0).drive(3.0).drive(8.0).reset_to_pits().drive(2.0)
    car.pull_away().drive(30.0)
    laps = segment(car.frames())
    by_number = {lap.lap_number: lap for lap in laps}
    assert [lap.lap_number for lap in laps] == [5, 6, 7]  # no lap 0, no phantom lap
    reset_lap = by_number[6]
    assert reset_lap.invalid
    assert reset_lap.lap_time is None
    assert reset_lap.refuelled
    assert reset_lap.fuel_used is None
    assert reset_lap.pit_lap
    assert by_number[7].lap_time == pytest.approx(15.0, abs=DT)
    assert not by_number[7].invalid


def test_reset_is_invalid_without_lap_last_lap_time() -> None:
    car = Car(pos=550.0).drive(3.0).drive(8.0).reset_to_pits().pull_away().drive(30.0)
    frames = car.frames()
    names = [n for n in DTYPE.names or () if n != "LapLastLapTime"]
    laps = segment(frames[names])
    assert [(lap.lap_number, lap.invalid) for lap in laps] == [
        (5, False),
        (6, True),
        (7, False),
    ]
    assert laps[1].lap_time is None


def test_zero_record_on_the_line_is_no_crossing() -> None:
    # The reset comes at 97 % of the lap: the zero tick's LapDistPct 0 looks like a
    # line crossing, but Lap dropped to 0 and the car never reached the line.
    car = Car(pos=0.0).drive(14.5).reset_to_pits().pull_away().drive(30.0)
    laps = segment(car.frames())
    assert [lap.lap_number for lap in laps] == [5, 6]
    assert laps[0].invalid
    assert laps[0].lap_time is None
    assert laps[0].end_time == pytest.approx(car.crossings[0], abs=DT)
    assert laps[1].lap_time == pytest.approx(15.0, abs=DT)


def test_tow_across_the_line_makes_no_lap() -> None:
    # Towed from 96 % of the lap to a stall just past the line, Lap unchanged (no zero
    # tick): LapDistPct wraps as at the line, but the car moved 54 m in a tick.
    car = Car(pos=0.0).drive(14.4).tow(30.0).drive(1.0).pull_away().drive(31.0)
    laps = segment(car.frames())
    assert [lap.lap_number for lap in laps] == [5, 6]
    assert laps[0].invalid
    assert laps[0].lap_time is None
    assert laps[1].lap_time == pytest.approx(15.0, abs=DT)
    assert not laps[1].invalid


def test_tow_backwards_without_lap_or_lap_dist() -> None:
    # Only LapDistPct: a tow back along the track is still seen (it falls 43 %).
    car = Car(pos=0.0, with_lap=False).drive(8.0).tow(PIT_STALL_M)
    car.pull_away().drive(30.0)
    laps = segment(car.frames())
    assert [(lap.invalid, lap.lap_time is None) for lap in laps] == [
        (True, True),
        (False, False),
    ]
    assert laps[1].lap_time == pytest.approx(15.0, abs=DT)


def test_iracing_minus_one_makes_a_lap_invalid_and_waits_for_it() -> None:
    # No reset seen by us, but iRacing publishes -1 for lap 6 a second after the line.
    car = Car(pos=550.0).drive(3.0)
    car.reset_this_lap = True  # iRacing's own reason, invisible in the frames
    car.drive(15.5)
    frames = car.frames()
    seg = LapSegmenter()
    crossing = car.crossings[1]
    before = frames[frames["SessionTime"] < crossing + 0.5]
    after = frames[frames["SessionTime"] >= crossing + 0.5]
    early = seg.feed(before)
    assert [lap.lap_number for lap in early] == [5]  # lap 6 waits for the verdict
    late = seg.feed(after)
    assert [(lap.lap_number, lap.invalid, lap.lap_time) for lap in late] == [
        (6, True, None)
    ]


def test_a_published_time_releases_the_lap_with_our_time() -> None:
    car = Car(pos=550.0).drive(3.0).drive(16.5)
    laps = segment(car.frames())
    assert laps[1].lap_number == 6
    assert not laps[1].invalid
    assert laps[1].lap_time == pytest.approx(15.0, abs=DT)


def test_verdict_wait_ends_on_a_still_minus_one() -> None:
    # The lap before was invalid (-1) and so is this one: LapLastLapTime never changes.
    car = Car(pos=550.0, last_lap_time=-1.0)
    car.reset_this_lap = True  # iRacing's reason, invisible in the frames
    car.drive(1.3 + VERDICT_WAIT_S)
    laps = segment(car.frames())
    assert [(lap.lap_number, lap.invalid) for lap in laps] == [(5, True)]
    # A stream that ends while a lap waits hands it out on flush.
    short = Car(pos=590.0).drive(0.5)
    seg = LapSegmenter()
    assert seg.feed(short.frames()) == []
    assert [lap.lap_number for lap in seg.flush()] == [5]


def test_refuel_mid_lap_flags_the_lap_and_drops_its_fuel() -> None:
    car = Car(pos=550.0).drive(3.0).drive(5.0)
    car.speed, car.pit = 0.0, True
    for _ in range(120):  # 2 s at the pump: +1 l
        car.fuel += 1.0 / 120
        car.t += DT
        car._row()
    car.pull_away().drive(20.0)
    laps = segment(car.frames())
    refuelled = laps[1]
    assert refuelled.lap_number == 6
    assert refuelled.refuelled
    assert refuelled.fuel_used is None
    assert refuelled.lap_time == pytest.approx(17.0, abs=DT)  # a real pit stop
    assert not refuelled.invalid
    assert not laps[0].refuelled


def test_fuel_used_is_never_negative() -> None:
    # The level ends higher than it started, by less than a refuel: still no negative
    # fuel used.
    car = Car(pos=550.0).drive(3.0)
    rows = car.drive(15.5).frames()
    start = np.searchsorted(rows["SessionTime"], car.crossings[0])
    rows["FuelLevel"][start:] = rows["FuelLevel"][start] + np.linspace(
        0.0, 0.005, len(rows) - start
    )
    laps = segment(rows)
    assert laps[1].fuel_used is None
    assert laps[1].refuelled
    assert all(lap.fuel_used is None or lap.fuel_used >= 0 for lap in laps)
