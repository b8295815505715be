"""Writes the field's state into telemetry rows: the player car's channels and the CarIdx arrays."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from driver_pc.adapters.race_sim import behaviour as bh
from driver_pc.adapters.race_sim.channels import (
    EMPTY_SLOT,
    WEAR_CHANNELS,
    EngineWarning,
    SessionFlag,
    SessionState,
    TrackSurface,
)
from driver_pc.adapters.race_sim.field import (
    CONTACT,
    IN_STALL,
    KG_PER_L,
    LIGHT_CONTACT,
    NONE,
    OFF_TRACK,
    PHASE_SURFACE,
    PIT_INBOUND,
    SAVE,
    SPIN,
    TANK_L,
    RaceField,
)
from driver_pc.adapters.race_sim.track import (
    METRES_PER_DEG_LAT,
    METRES_PER_DEG_LON,
    ORIGIN_LAT,
    ORIGIN_LON,
    TRACK_M,
    track_point,
)
from driver_pc.protocol.channels import ChannelSpec, frame_dtype

NOISE_BLOCK = 600
TWO_PI = 2.0 * math.pi
STEER_PER_CURVATURE = 24.0  # wheel angle (rad) per 1/m of turn curvature
WOBBLE_MARGIN_M = 30.0  # no LapDist wobble this close to the line
GLITCH_PER_TICK = 1.0 / (272.0 * 60)  # independent model: 1 seen in 272 s of real files


class FramePublisher:
    """Fills a reusable record buffer, one row per tick, from a :class:`RaceField`."""

    def __init__(
        self,
        field: RaceField,
        channels: tuple[ChannelSpec, ...],
        batch: int,
        rng: np.random.Generator,
    ) -> None:
        self.field = field
        self.rng = rng
        self.rows = np.zeros(batch, dtype=frame_dtype(channels))
        names = self.rows.dtype.names or ()
        self._v: dict[str, Any] = {name: self.rows[name] for name in names}
        self._race = "SessionFlags" in names
        self._cars = "CarIdxLap" in names
        n = field.n
        for name, empty in EMPTY_SLOT.items():
            if name in names:
                self._v[name][:, n:] = empty
        if self._cars:
            self._v["CarIdxClass"][:, :n] = field.class_ids
        self._v["PlayerCarIdx"][:] = field.p
        self._batch = batch
        self._version = -1
        self._runs: list[tuple[int, dict[str, Any]]] = []
        self._inv_class_pace = 1.0 / field.class_pace
        self._noise = np.zeros((0, 0))
        self._wander = np.zeros(field.n)
        self._ar = 0.0
        self._yaw_prev = 0.0
        self._inputs = _IndependentInputs(field.model) if field.model else None

    def write(self, k: int) -> None:
        """Write the field's current tick as row ``k``."""
        f = self.field
        j = f.tick % NOISE_BLOCK
        if j == 0 or len(self._noise) == 0:
            self._noise = self.rng.standard_normal((NOISE_BLOCK, 4 + f.n))
        noise = self._noise[j]
        v = self._v
        p = f.p
        s = float(f.s[p])
        speed = float(f.v[p])
        t = f.t
        lap = int(f.lap[p])
        phase = int(f.phase[p])
        pt = track_point(s)
        turn = math.isfinite(pt.radius)
        fatigue = float(f.fatigue[p]) if self._race else 0.0
        yaw_off = steer_off = lat_off = wobble = lat_extra = 0.0
        kind = int(f.inc_kind[p])
        shape = f.inc_shape.get(p) if self._inputs is not None else None
        if kind != NONE and shape is not None:
            yaw_off, steer_off, lat_off, wobble, lat_extra = _independent_shape(
                kind, float(f.inc_t[p]), float(f.inc_dur[p]), shape
            )
        elif kind != NONE:
            yaw_off, steer_off, lat_off, wobble, lat_extra = _incident_shape(
                kind, float(f.inc_t[p]), float(f.inc_dur[p])
            )
        if kind != NONE and not WOBBLE_MARGIN_M < s < TRACK_M - WOBBLE_MARGIN_M:
            wobble = 0.0
        v["SessionTime"][k] = t
        v["SessionTick"][k] = f.tick
        v["SessionState"][k] = (
            SessionState.CHECKERED
            if f.checkered and self._race
            else SessionState.RACING
        )
        v["Lap"][k] = lap
        v["LapCompleted"][k] = max(0, lap - 1)
        dist = s + wobble
        v["LapDist"][k] = dist
        v["LapDistPct"][k] = dist / TRACK_M
        start = float(f.lap_start[p])
        v["LapCurrentLapTime"][k] = t - start if start == start else t
        v["LapLastLapTime"][k] = f.last_lap[p]
        v["LapBestLapTime"][k] = f.best_lap[p]
        v["OnPitRoad"][k] = phase >= PIT_INBOUND
        v["Speed"][k] = speed
        moving = speed > 0.1
        v["Gear"][k] = 1 + min(3, int(speed / 14.0)) if moving else 0
        v["RPM"][k] = 2500 + (speed % 14.0) / 14.0 * 5000 if moving else 900
        throttle = float(f.throttle[p])
        brake = float(f.brake[p])
        long_extra = 0.0
        if self._inputs is not None:
            steer_noise, throttle, brake, kerb, long_extra = self._inputs.step(
                f, float(noise[0]), throttle, brake
            )
            lat_extra += kerb
        else:
            steer_noise = float(noise[0]) * 0.004 * (1.0 + 4.0 * fatigue)
        if self._race and self._inputs is None:
            self._ar = 0.98 * self._ar + 0.2 * float(noise[1])
            steer_noise += 0.02 * fatigue * self._ar
            pedal = 0.02 * (1.0 + 4.0 * fatigue)
            if throttle > 0:
                throttle = min(1.0, max(0.0, throttle + pedal * float(noise[2])))
            if brake > 0:
                brake = min(1.0, max(0.0, brake + pedal * float(noise[3])))
        v["Throttle"][k] = throttle
        v["Brake"][k] = brake
        base_steer = 2.4 / pt.radius * 10 if turn else 0.0
        v["SteeringWheelAngle"][k] = base_steer + steer_noise + steer_off
        fuel = float(f.fuel[p])
        v["FuelLevel"][k] = fuel
        v["FuelLevelPct"][k] = fuel / TANK_L
        v["LatAccel"][k] = (speed * speed / pt.radius if turn else 0.0) + lat_extra
        v["LongAccel"][k] = (speed - float(f.v_prev[p])) / f.dt + long_extra
        v["Yaw"][k] = (pt.heading + yaw_off + math.pi) % TWO_PI - math.pi
        x = pt.x + lat_off * math.sin(pt.heading)
        y = pt.y - lat_off * math.cos(pt.heading)
        v["Lat"][k] = ORIGIN_LAT + y / METRES_PER_DEG_LAT
        v["Lon"][k] = ORIGIN_LON + x / METRES_PER_DEG_LON
        if self._race:
            self._write_race(k, phase, kind, speed)
        if self._cars:
            self._write_cars(k, noise)

    def _write_race(self, k: int, phase: int, kind: int, speed: float) -> None:
        f = self.field
        v = self._v
        p = f.p
        v["SessionFlags"][k] = self._flags()
        v["SessionLapsRemainEx"][k] = 0 if f.checkered else f.laps_to_go()
        v["PlayerCarPosition"][k] = f.position[p]
        v["PlayerCarClassPosition"][k] = f.class_position[p]
        driver_count = int(f.incidents_driver[f.entries[p].driver_idx])
        v["PlayerCarMyIncidentCount"][k] = driver_count
        v["PlayerCarDriverIncidentCount"][k] = driver_count
        v["PlayerCarTeamIncidentCount"][k] = f.incidents_team
        if f.inc_off[p]:
            surface = int(TrackSurface.OFF_TRACK)
        else:
            surface = int(PHASE_SURFACE[phase])
        v["PlayerTrackSurface"][k] = surface
        in_stall = phase == IN_STALL and speed < 0.5
        v["PlayerCarInPitStall"][k] = in_stall
        v["PitstopActive"][k] = in_stall and f.stop_left[p] > 0
        repair = float(f.repair[p])
        opt = float(f.opt_repair[p])
        v["PitRepairLeft"][k] = repair
        v["PitOptRepairLeft"][k] = opt
        warnings = EngineWarning.PIT_SPEED_LIMITER if phase >= PIT_INBOUND else 0
        if repair > 0:
            warnings |= EngineWarning.MANDATORY_REPAIR_NEEDED
        if opt > 0:
            warnings |= EngineWarning.OPTIONAL_REPAIR_NEEDED
        v["EngineWarnings"][k] = warnings
        v["FuelUsePerHour"][k] = float(f.burn[p]) / f.dt * 3600.0 * KG_PER_L
        tread = f.published_tread
        for c, name in enumerate(WEAR_CHANNELS):
            v[name][k] = tread[c]

    def _flags(self) -> int:
        f = self.field
        flags = 0
        if f.t < f.green_until:
            flags |= SessionFlag.GREEN
        fcy = f.fcy
        if fcy is not None:
            flags |= SessionFlag.YELLOW | SessionFlag.CAUTION
            if f.t - fcy.started < 10.0:
                flags |= SessionFlag.CAUTION_WAVING
            if fcy.laps_left <= 1:
                flags |= SessionFlag.ONE_LAP_TO_GREEN
        if f.checkered:
            flags |= SessionFlag.CHECKERED
        elif f.laps_to_go() == 1:
            flags |= SessionFlag.WHITE
        if f.repair[f.p] > 0:
            flags |= SessionFlag.REPAIR
        return int(flags)

    def flush(self, end: int) -> None:
        """Fill rows ``0..end`` with the status arrays recorded when they changed."""
        runs = self._runs
        n = self.field.n
        v = self._v
        for j, (start, status) in enumerate(runs):
            stop = runs[j + 1][0] if j + 1 < len(runs) else end
            for name, values in status.items():
                v[name][start:stop, :n] = values
        runs.clear()

    def _status(self) -> dict[str, Any]:
        """The CarIdx arrays that change only at the line, in the pits or in incidents."""
        f = self.field
        lap = f.lap.copy()
        surface = PHASE_SURFACE[f.phase]
        if f.n_incidents:
            surface[f.inc_off] = TrackSurface.OFF_TRACK
        return {
            "CarIdxLap": lap,
            "CarIdxLapCompleted": np.maximum(lap - 1, 0),
            "CarIdxTrackSurface": surface,
            "CarIdxOnPitRoad": f.pit_road.copy(),
            "CarIdxPosition": f.position.copy(),
            "CarIdxClassPosition": f.class_position.copy(),
            "CarIdxLastLapTime": f.last_lap.copy(),
            "CarIdxBestLapTime": f.best_lap.copy(),
        }

    def _write_cars(self, k: int, noise: np.ndarray[Any, np.dtype[np.float64]]) -> None:
        f = self.field
        v = self._v
        n = f.n
        if f.version != self._version or (k == 0 and self._batch > 1):
            self._version = f.version
            self._runs.append((k, self._status()))
        s = f.s
        idx = s.astype(np.intp)
        pct = s * (1.0 / TRACK_M)
        if f.n_incidents:
            kind = f.inc_kind
            active = (kind != NONE) & (s > WOBBLE_MARGIN_M)
            active &= s < TRACK_M - WOBBLE_MARGIN_M
            if active.any():
                x = f.inc_t[active] / f.inc_dur[active]
                pct[active] += 1.5 * np.sin(TWO_PI * x) / TRACK_M
        v["CarIdxLapDistPct"][k, :n] = pct
        v["CarIdxF2Time"][k, :n] = f.f2_time
        est = np.take(f.tables.est_time, idx)
        est *= self._inv_class_pace
        v["CarIdxEstTime"][k, :n] = est
        if f.tick % 6 == 0:  # a slow wander: real wheels do not jitter at 60 Hz
            self._wander *= 0.9
            self._wander += 0.004 * noise[4:]
        steer = np.take(f.tables.curvature, idx)
        steer *= STEER_PER_CURVATURE
        steer += self._wander
        v["CarIdxSteer"][k, :n] = steer
        ratio = f.v * (1.0 / 14.0)
        whole = np.floor(ratio)
        ratio -= whole
        ratio *= 5000.0
        ratio += 2500.0
        np.minimum(whole, 3.0, out=whole)
        whole += 1.0
        if f.v.min() <= 0.1:
            moving = f.v > 0.1
            ratio[~moving] = 900.0
            whole[~moving] = 0.0
        v["CarIdxRPM"][k, :n] = ratio
        v["CarIdxGear"][k, :n] = whole


def _incident_shape(
    kind: int, tau: float, dur: float
) -> tuple[float, float, float, float, float]:
    """Yaw, steering, lateral offset (m), LapDist wobble (m), extra lateral g of a stage."""
    x = min(tau / dur, 1.0)
    if kind == OFF_TRACK:
        bump = math.sin(math.pi * x)
        return (
            0.18 * bump,
            0.25 * math.sin(TWO_PI * x),
            6.0 * bump,
            1.5 * math.sin(TWO_PI * tau / 1.2) * bump,
            3.0 * math.sin(TWO_PI * x),
        )
    if kind == SPIN:
        y = min(1.0, tau / (0.7 * dur))
        turn = TWO_PI * (3 * y * y - 2 * y * y * y)
        return (
            turn,
            -0.45 * math.sin(math.pi * y),
            3.0 * math.sin(math.pi * x),
            -2.0 * math.sin(math.pi * x),
            9.0 * math.sin(math.pi * y),
        )
    if kind == CONTACT:
        e = math.exp(-tau / 0.25)
        return (
            0.2 * e * math.sin(25.0 * tau),
            0.15 * e,
            0.0,
            0.3 * e * math.sin(25.0 * tau),
            15.0 * math.exp(-tau / 0.08),
        )
    return (0.0, 0.0, 0.0, 0.0, 0.0)


class _IndependentInputs:
    """The team car's inputs under the independent model: skill noise, fatigue-driven corrections, kerbs.

    Steering: the driver's own noise plus discrete corrections (half-sine bumps of 0.2-0.6 s)
    arriving as a Poisson process whose rate and size grow with fatigue by the driver's
    steering weight; throttle and brake: a slow pedal wobble that grows by the throttle
    and braking weights. Kerbs at corner exits (lateral spikes) and bumps (short
    longitudinal spikes) happen to everyone and are not incidents; their sizes keep the
    accelerations within what the real SK Modified recordings show in clean running
    (|LatAccel| ≤ 23.7, LongAccel ≥ −18.4 m/s² over 154 s). Glitches: one-sample spikes
    like the one real one seen (Langley, −64 / 90 m/s² at 39 m/s, nothing lost), at the
    rate seen (1 in the 272 s of real recordings).
    """

    def __init__(self, model: bh.TeamModel) -> None:
        self.model = model
        self.rng = model.pub_rng
        self.bump_t = 0.0
        self.bump_len = 0.0
        self.bump_amp = 0.0
        self.pedal = 0.0
        self.kerb_left = 0
        self.kerb_amp = 0.0
        self.hit_left = 0
        self.hit_amp = 0.0

    def step(
        self, f: RaceField, base: float, throttle: float, brake: float
    ) -> tuple[float, float, float, float, float]:
        """Steering noise, throttle, brake, extra lateral and longitudinal acceleration."""
        rng = self.rng
        p = f.p
        traits = self.model.traits[f.entries[p].driver_idx]
        fat = float(f.fatigue[p])
        dt = f.dt
        steer = traits.steer_base * base
        if self.bump_len > 0.0:
            self.bump_t += dt
            if self.bump_t >= self.bump_len:
                self.bump_len = 0.0
            else:
                steer += self.bump_amp * math.sin(math.pi * self.bump_t / self.bump_len)
        else:
            rate = traits.corr_rate * (1.0 + traits.corr_gain * traits.w_steer * fat)
            if rng.random() < rate * dt:
                self.bump_t = 0.0
                self.bump_len = float(rng.uniform(0.2, 0.6))
                size = traits.corr_amp * (1.0 + 2.0 * traits.w_steer * fat)
                self.bump_amp = float(rng.normal(0.0, size))
        self.pedal = 0.9 * self.pedal + 0.1 * float(rng.standard_normal())
        if throttle > 0:
            wobble = 0.03 * (1.0 + 3.0 * traits.w_throttle * fat) * self.pedal
            throttle = min(1.0, max(0.0, throttle + wobble))
        if brake > 0:
            wobble = 0.03 * (1.0 + 3.0 * traits.w_brake * fat) * self.pedal
            brake = min(1.0, max(0.0, brake + wobble))
        s0, s1 = float(f.s_prev[p]), float(f.s[p])
        if any(s0 < e <= s1 for e in self.model.exits) and rng.random() < 0.15:
            self.kerb_left = int(rng.integers(2, 6))
            self.kerb_amp = float(rng.uniform(3.0, 12.0)) * (
                1 if rng.random() < 0.5 else -1
            )
        kerb = 0.0
        if self.kerb_left > 0:
            self.kerb_left -= 1
            kerb = self.kerb_amp
        moving = f.v[p] > 10.0
        if moving and rng.random() < 0.0004:  # a bump: ~once in 40 s
            self.hit_left = int(rng.integers(1, 3))
            self.hit_amp = -float(rng.uniform(2.0, 8.0))
        hit = 0.0
        if self.hit_left > 0:
            self.hit_left -= 1
            hit = self.hit_amp
        if moving and rng.random() < GLITCH_PER_TICK:
            hit = -float(rng.uniform(20.0, 70.0))
            kerb += float(rng.uniform(20.0, 95.0)) * (1 if rng.random() < 0.5 else -1)
        return steer, throttle, brake, kerb, hit


def _independent_shape(
    kind: int, tau: float, dur: float, shape: bh.StageShape
) -> tuple[float, float, float, float, float]:
    """Yaw, steering, lateral offset, LapDist wobble and extra lateral g of a drawn stage."""
    x = min(tau / dur, 1.0)
    bump = math.sin(math.pi * x)
    if kind in (SAVE, OFF_TRACK):
        swing = math.sin(TWO_PI * tau / max(shape.yaw_period_s, 0.1))
        yaw = shape.yaw * swing * bump
        return (
            yaw,
            -1.1 * yaw,
            shape.lateral_m * bump,
            (0.8 if kind == OFF_TRACK else 0.0) * swing * bump,
            shape.lat_g * math.sin(TWO_PI * x),
        )
    if kind == SPIN:
        y = min(1.0, tau / (0.7 * dur))
        turn = shape.yaw * (3 * y * y - 2 * y * y * y)
        return (
            turn,
            -0.4 * math.sin(math.pi * y),
            shape.lateral_m * bump,
            -0.25 * shape.lateral_m * bump,
            shape.lat_g * math.sin(math.pi * y),
        )
    if kind in (CONTACT, LIGHT_CONTACT):
        e = math.exp(-tau / 0.25)
        return (
            shape.yaw * e * math.sin(25.0 * tau),
            0.15 * e,
            0.0,
            0.0,
            shape.lat_g * math.exp(-tau / 0.08),
        )
    return (0.0, 0.0, 0.0, 0.0, 0.0)
