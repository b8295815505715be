"""PitBox's own race simulator (v1): one car on Martinsville's paperclip, laps, fuel, pit stops, driver swaps.

Every value it produces is simulated, not recorded. The track is built from Martinsville
Speedway's published dimensions (0.526 mi: two ~240 m straights joined by two tight
half-circle turns), placed at its real latitude/longitude so GPS-based maps work. The car
follows a speed profile limited by lateral grip in the turns and by acceleration and
braking on the straights, with per-lap driver variation; fuel burns with throttle; the
car pits when it cannot do another two laps and the team swaps drivers at each stop.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from driver_pc.adapters.base import Frames, SimAdapter, register_adapter
from driver_pc.protocol.channels import ChannelKind, ChannelSpec, frame_dtype

K = ChannelKind
SIM_CHANNELS: tuple[ChannelSpec, ...] = (
    ChannelSpec("SessionTime", K.DOUBLE, 1, "s", "Seconds since session start"),
    ChannelSpec("SessionTick", K.INT, 1, "", "Current update number"),
    ChannelSpec("SessionNum", K.INT, 1, "", "Session number"),
    ChannelSpec("SessionState", K.INT, 1, "irsdk_SessionState", "Session state"),
    ChannelSpec("PlayerCarIdx", K.INT, 1, "", "Player car index"),
    ChannelSpec("PlayerCarMyIncidentCount", K.INT, 1, "", "Incidents of this driver"),
    ChannelSpec("Lap", K.INT, 1, "", "Laps started count"),
    ChannelSpec("LapCompleted", K.INT, 1, "", "Laps completed count"),
    ChannelSpec("LapDist", K.FLOAT, 1, "m", "Meters traveled from S/F this lap"),
    ChannelSpec("LapDistPct", K.FLOAT, 1, "%", "Percentage distance around lap"),
    ChannelSpec("LapCurrentLapTime", K.FLOAT, 1, "s", "Estimate of current lap time"),
    ChannelSpec("LapLastLapTime", K.FLOAT, 1, "s", "Last lap time"),
    ChannelSpec("LapBestLapTime", K.FLOAT, 1, "s", "Best lap time"),
    ChannelSpec("OnPitRoad", K.BOOL, 1, "", "Is the player car on pit road"),
    ChannelSpec("Speed", K.FLOAT, 1, "m/s", "GPS vehicle speed"),
    ChannelSpec("RPM", K.FLOAT, 1, "revs/min", "Engine rpm"),
    ChannelSpec("Gear", K.INT, 1, "", "Gear"),
    ChannelSpec("Throttle", K.FLOAT, 1, "%", "0=off throttle to 1=full throttle"),
    ChannelSpec("Brake", K.FLOAT, 1, "%", "0=brake released to 1=max pedal force"),
    ChannelSpec("SteeringWheelAngle", K.FLOAT, 1, "rad", "Steering wheel angle"),
    ChannelSpec("FuelLevel", K.FLOAT, 1, "l", "Liters of fuel remaining"),
    ChannelSpec("FuelLevelPct", K.FLOAT, 1, "%", "Percent fuel remaining"),
    ChannelSpec("LatAccel", K.FLOAT, 1, "m/s^2", "Lateral acceleration"),
    ChannelSpec("LongAccel", K.FLOAT, 1, "m/s^2", "Longitudinal acceleration"),
    ChannelSpec("Yaw", K.FLOAT, 1, "rad", "Yaw orientation"),
    ChannelSpec("Lat", K.DOUBLE, 1, "deg", "Latitude"),
    ChannelSpec("Lon", K.DOUBLE, 1, "deg", "Longitude"),
)

STRAIGHT_M = 240.0
TURN_RADIUS_M = 58.0
TRACK_M = 2 * STRAIGHT_M + 2 * math.pi * TURN_RADIUS_M
ORIGIN_LAT, ORIGIN_LON = 36.6339, -79.8519
TANK_L = 30.0
PIT_SPEED = 13.4  # 30 mph pit limiter
PIT_ENTRY_M = TRACK_M - 120.0
PIT_EXIT_M = 100.0
DEFAULT_DRIVERS = ("Alex Sim", "Bea Sim", "Chris Sim")


@dataclass(frozen=True, slots=True)
class TrackPoint:
    x: float
    y: float
    heading: float
    radius: float  # inf on straights


def track_point(s: float) -> TrackPoint:
    """Position on the paperclip at distance ``s`` from the start/finish line."""
    s %= TRACK_M
    half = STRAIGHT_M / 2
    arc = math.pi * TURN_RADIUS_M
    r = TURN_RADIUS_M
    if s < half:
        return TrackPoint(s, -r, 0.0, math.inf)
    s -= half
    if s < arc:
        a = s / r
        return TrackPoint(half + r * math.sin(a), -r * math.cos(a), a, r)
    s -= arc
    if s < STRAIGHT_M:
        return TrackPoint(half - s, r, math.pi, math.inf)
    s -= STRAIGHT_M
    if s < arc:
        a = s / r
        return TrackPoint(-half - r * math.sin(a), r * math.cos(a), math.pi + a, r)
    s -= arc
    return TrackPoint(-half + s, -r, 2 * math.pi, math.inf)


def speed_profile(
    step_m: float = 1.0,
    grip: float = 12.0,
    accel: float = 5.5,
    brake: float = 11.0,
    vmax: float = 52.0,
) -> np.ndarray:
    """Fastest speed at each metre: grip-limited in turns, accel/brake-limited between."""
    n = int(TRACK_M / step_m) + 1
    limit = np.array(
        [min(vmax, math.sqrt(grip * track_point(i * step_m).radius)) for i in range(n)]
    )
    v = limit.copy()
    for _ in range(2):  # twice round so the lap wraps smoothly
        for i in range(1, n):
            v[i] = min(v[i], math.sqrt(v[i - 1] ** 2 + 2 * accel * step_m))
        v[0] = min(v[0], math.sqrt(v[-1] ** 2 + 2 * accel * step_m))
        for i in range(n - 2, -1, -1):
            v[i] = min(v[i], math.sqrt(v[i + 1] ** 2 + 2 * brake * step_m))
        v[-1] = min(v[-1], math.sqrt(v[0] ** 2 + 2 * brake * step_m))
    return v


@register_adapter("simulator")
class RaceSimulatorAdapter(SimAdapter):
    """Simulated session of one team car; ``speed`` × real time (0 = as fast as possible)."""

    def __init__(
        self,
        laps: int = 30,
        speed: float = 1.0,
        seed: int = 1,
        session_key: str | None = None,
        drivers: tuple[str, ...] = DEFAULT_DRIVERS,
        start_fuel: float = 12.0,
        car_number: str = "42",
        team_name: str = "PitBox Racing",
    ) -> None:
        self.laps = laps
        self.speed = speed
        self._rng = np.random.default_rng(seed)
        self._key = session_key or f"sim-{seed}-{laps}"
        self._drivers = drivers
        self._driver_idx = 0
        self._info_update = 1
        self._start_fuel = start_fuel
        self._car_number = car_number
        self._team = team_name
        self._profile = speed_profile()
        self._dtype = frame_dtype(list(SIM_CHANNELS))
        self._yaml_cache = (-1, "")
        self.camera: tuple[str, int, int] | None = None

    @property
    def channels(self) -> tuple[ChannelSpec, ...]:
        return SIM_CHANNELS

    @property
    def session_key(self) -> str:
        return self._key

    @property
    def session_info_update(self) -> int:
        return self._info_update

    def session_info_text(self) -> str:
        if self._yaml_cache[0] != self._info_update:
            self._yaml_cache = (self._info_update, self._yaml())
        return self._yaml_cache[1]

    def _yaml(self) -> str:
        drivers = []
        for idx, name in enumerate(self._drivers):
            user_id = 900001 + idx
            if idx == self._driver_idx:
                drivers.append(
                    f"  - CarIdx: 0\n    UserName: {name}\n    UserID: {user_id}\n"
                    f'    TeamName: {self._team}\n    CarNumber: "{self._car_number}"\n'
                    f"    CarScreenName: SK Modified (simulated)\n"
                )
        return (
            "---\nWeekendInfo:\n TrackName: martinsville\n TrackDisplayName: "
            "Martinsville Speedway (simulated)\n TrackLength: "
            f"{TRACK_M / 1000:.4f} km\n TrackLatitude: {ORIGIN_LAT} m\n"
            f" TrackLongitude: {ORIGIN_LON} m\n SubSessionID: 0\n SessionID: 0\n"
            " TeamRacing: 1\n SimMode: simulator\n"
            "DriverInfo:\n DriverCarIdx: 0\n Drivers:\n" + "".join(drivers) + "\n"
            "SessionInfo:\n Sessions:\n - SessionNum: 0\n   SessionType: Race\n"
            f"   SessionLaps: {self.laps}\n\n"
        )

    def ticks(self) -> Iterator[Frames]:
        rate = self.tick_rate
        dt = 1.0 / rate
        rng = self._rng
        t = 0.0
        tick = 0
        s = PIT_EXIT_M + 5.0  # start just after pit exit, rolling
        lap = 0
        lap_start: float | None = None
        last_lap, best_lap = -1.0, -1.0
        fuel = self._start_fuel
        v = 20.0
        pace = 1.0
        pitting = False
        stop_left = 0.0
        on_pit = False
        wall0 = time.monotonic()
        yaw_prev = track_point(s).heading
        batch = 1 if self.speed > 0 else 600
        rows = np.zeros(batch, dtype=self._dtype)
        k = 0
        while lap <= self.laps:
            s_prev, v_prev = s, v
            idx = int(s) % len(self._profile)
            target = self._profile[idx] * pace
            if on_pit:
                target = 0.0 if stop_left > 0 else PIT_SPEED
            throttle = (
                float(np.clip((target - v) / 3.0 + 0.6, 0.0, 1.0))
                if target > v
                else 0.0
            )
            brake = (
                float(np.clip((v - target) / 4.0, 0.0, 1.0))
                if v > target + 0.5
                else 0.0
            )
            acc = 5.5 * throttle - 11.0 * brake - 0.002 * v * v * 0.2
            v = max(0.0, v + acc * dt)
            if on_pit and stop_left > 0 and v < 0.5:
                v = 0.0
                stop_left -= dt
                fuel = min(TANK_L, fuel + 2.0 * dt)  # 2 l/s refuelling rig
                if stop_left <= 0:
                    self._swap_driver()
            s += v * dt
            fuel = max(0.0, fuel - (0.00012 + 0.0009 * throttle) * v * dt / 10.0 * 10)
            t += dt
            tick += 1
            if s >= TRACK_M:  # crossed the line: exact time by linear interpolation
                frac = (TRACK_M - s_prev) / max(s - s_prev, 1e-9)
                crossing = t - dt + frac * dt
                if lap_start is not None and lap >= 1:
                    last_lap = crossing - lap_start
                    best_lap = last_lap if best_lap < 0 else min(best_lap, last_lap)
                lap_start = crossing
                s -= TRACK_M
                lap += 1
                pace = float(np.clip(rng.normal(1.0, 0.006), 0.97, 1.02))
                laps_left_in_tank = fuel / 0.5
                if laps_left_in_tank < 2.5 and lap < self.laps:
                    pitting = True
            if pitting and not on_pit and PIT_ENTRY_M <= s < PIT_ENTRY_M + 60:
                on_pit, stop_left = True, 0.0
            if on_pit and stop_left == 0.0 and pitting and s < PIT_EXIT_M and s > 20.0:
                stop_left = (TANK_L - fuel) / 2.0 + 4.0
                pitting = False
            if on_pit and not pitting and stop_left <= 0 and s >= PIT_EXIT_M:
                on_pit = False
            pt = track_point(s)
            yaw = pt.heading
            lat_acc = (v * v / pt.radius) if math.isfinite(pt.radius) else 0.0
            r = rows[k]
            r["SessionTime"] = t
            r["SessionTick"] = tick
            r["SessionState"] = 4
            r["Lap"] = lap
            r["LapCompleted"] = max(0, lap - 1)
            r["LapDist"] = s
            r["LapDistPct"] = s / TRACK_M
            r["LapCurrentLapTime"] = t - lap_start if lap_start is not None else t
            r["LapLastLapTime"] = last_lap
            r["LapBestLapTime"] = best_lap
            r["OnPitRoad"] = on_pit
            r["Speed"] = v
            gear = 1 + min(3, int(v / 14.0))
            r["Gear"] = gear if v > 0.1 else 0
            r["RPM"] = 2500 + (v % 14.0) / 14.0 * 5000 if v > 0.1 else 900
            r["Throttle"] = throttle
            r["Brake"] = brake
            r["SteeringWheelAngle"] = (
                0.0 if not math.isfinite(pt.radius) else 2.4 / pt.radius * 10
            ) + float(rng.normal(0, 0.004))
            r["FuelLevel"] = fuel
            r["FuelLevelPct"] = fuel / TANK_L
            r["LatAccel"] = lat_acc
            r["LongAccel"] = (v - v_prev) / dt
            r["Yaw"] = (yaw + math.pi) % (2 * math.pi) - math.pi
            r["Lat"] = ORIGIN_LAT + pt.y / 111_320.0
            r["Lon"] = ORIGIN_LON + pt.x / (
                111_320.0 * math.cos(math.radians(ORIGIN_LAT))
            )
            yaw_prev = yaw
            k += 1
            if k == batch:
                if self.speed > 0:
                    delay = wall0 + t / self.speed - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                yield rows.copy()
                k = 0
        del yaw_prev
        if k:
            yield rows[:k].copy()

    def camera_switch(self, car_number: str, group: int, camera: int) -> str:
        """Simulated broadcast camera: remembers the choice, as the sim would show it."""
        if not car_number:
            raise ValueError("camera: car number missing")
        self.camera = (car_number, group, camera)
        return f"simulator camera: car #{car_number}, group {group}, camera {camera}"

    def _swap_driver(self) -> None:
        if len(self._drivers) > 1:
            self._driver_idx = (self._driver_idx + 1) % len(self._drivers)
            self._info_update += 1


def write_simulated_ibt(
    path: str | Path, laps: int = 5, seed: int = 1, **options: object
) -> Path:
    """Run the simulator as fast as possible and write the session as an ``.ibt`` file."""
    from driver_pc.adapters.ibt_file import IbtWriter

    sim = RaceSimulatorAdapter(laps=laps, speed=0, seed=seed, **options)  # type: ignore[arg-type]
    writer = IbtWriter(path, list(sim.channels), sim.session_info_text(), sim.tick_rate)
    for rows in sim.ticks():
        writer.write(rows)
    writer.close()
    return Path(path)
