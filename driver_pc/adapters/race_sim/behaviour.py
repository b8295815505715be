"""The independent truth model: per-race driver fatigue processes and physical causes of the team car's incidents.

The classic model (field.py alone) draws incidents from a hazard clock and shows fatigue
as steering noise with a fixed 90-minute time constant, the same shapes the detectors
assume. This model draws everything per race from the seed, with constants and noise
models the detectors never see (docs/simulator.md, *Independent truth model*):

* fatigue: each driver has a time constant, a curve shape, an own recovery time and a
  slow random fluctuation; it moves braking points, throttle on corner exit and
  steering corrections, weighted differently for each driver;
* incidents: caused at corner entry by a late braking point (an overshoot in metres),
  more likely when tired, on worn tyres and in traffic; how far past the braking point
  the car is decides whether the driver saves it (0x), runs wide or off (0x/1x), spins
  (2x) or hits the car ahead (light 0x, heavy 4x); every shape has its own magnitude.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]

# Stage kinds this model adds to field.py's NONE/OFF_TRACK/SPIN/CONTACT (1..3).
SAVE = 4  # a slide or a wide moment caught by the driver: no points
LIGHT_CONTACT = 5  # car-to-car contact below iRacing's heavy threshold: 0x


@dataclass(frozen=True, slots=True)
class DriverTraits:
    """One team driver's fatigue and error character, drawn per race."""

    tau_s: float  # stint time to reach ~63 % of full fatigue (before the shape)
    shape: float  # Weibull-like shape of the curve: < 1 early, > 1 late tiring
    rest_tau_s: float  # recovery time constant while not driving
    pace_loss: float  # lap-time fraction lost at full fatigue (besides inputs)
    w_brake: float  # share of fatigue going into braking points
    w_throttle: float  # ... into hesitant throttle on corner exit
    w_steer: float  # ... into steering corrections
    steer_base: float  # rad, fresh steering noise (skill)
    corr_rate: float  # steering corrections per second when fresh
    corr_gain: float  # corrections multiply by (1 + corr_gain × w_steer × F)
    corr_amp: float  # rad, size of a correction
    error_gain: float  # corner-entry error rate multiplies by (1 + this × F)
    early_brake_m: float  # metres of early braking at full fatigue (× w_brake)


@dataclass(frozen=True, slots=True)
class RaceTraits:
    """The race's own constants (the car's grip margin, iRacing-ish counting)."""

    error_rate: float  # late-braking errors per corner entry, fresh, clear air
    overshoot_mu: float  # log-mean of the overshoot, metres
    overshoot_sigma: float
    wide_m: float  # overshoot at which the car leaves the racing line
    wheels_off_m: float  # lateral excursion beyond which all four wheels are off (1x)
    spin_m: float  # overshoot at which the rear lets go
    sequence_s: float  # a new stage within this of the last one joins its sequence
    counter_delay: tuple[float, float]  # the counter moves this long after the cause
    heavy_dv: float  # m/s closing speed from which a contact is heavy (4x)
    contact_gap_m: float  # a late braker this close behind a car hits it
    opponent_tau_s: float  # the opponents' fatigue time constant this race


def draw_race(rng: np.random.Generator) -> RaceTraits:
    """The race's constants."""
    return RaceTraits(
        error_rate=float(rng.uniform(0.012, 0.03)),
        overshoot_mu=math.log(float(rng.uniform(3.5, 6.5))),
        overshoot_sigma=float(rng.uniform(0.5, 0.9)),
        wide_m=float(rng.uniform(2.5, 4.5)),
        wheels_off_m=float(rng.uniform(2.2, 3.8)),
        spin_m=float(rng.uniform(8.0, 13.0)),
        sequence_s=float(rng.uniform(1.2, 4.5)),
        counter_delay=(0.05, float(rng.uniform(0.3, 1.2))),
        heavy_dv=float(rng.uniform(1.5, 3.0)),
        contact_gap_m=float(rng.uniform(8.0, 16.0)),
        opponent_tau_s=float(rng.uniform(50.0, 160.0)) * 60.0,
    )


def draw_driver(rng: np.random.Generator) -> DriverTraits:
    """One driver's character."""
    w = rng.dirichlet((1.2, 1.2, 1.2))
    return DriverTraits(
        tau_s=float(np.clip(rng.lognormal(math.log(70.0), 0.45), 25.0, 240.0)) * 60.0,
        shape=float(rng.uniform(0.7, 2.0)),
        rest_tau_s=float(rng.uniform(8.0, 45.0)) * 60.0,
        pace_loss=float(rng.uniform(0.002, 0.02)),
        w_brake=float(w[0]),
        w_throttle=float(w[1]),
        w_steer=float(w[2]),
        steer_base=float(rng.uniform(0.0015, 0.007)),
        corr_rate=float(rng.uniform(0.15, 0.8)),
        corr_gain=float(rng.uniform(1.0, 6.0)),
        corr_amp=float(rng.uniform(0.006, 0.03)),
        error_gain=float(rng.uniform(0.5, 4.0)),
        early_brake_m=float(rng.uniform(4.0, 18.0)),
    )


class DriverFatigue:
    """A driver's fatigue level: a per-driver curve of stint time plus a slow fluctuation.

    While driving, the stint load ``L`` (seconds, recovered while resting) gives a base
    level ``1 − exp(−(L/τ)^k)``; an Ornstein-Uhlenbeck term (σ 0.04, 6 min) makes good and
    bad spells. Resting, ``L`` decays with the driver's own recovery time.
    """

    def __init__(self, traits: DriverTraits, rng: np.random.Generator) -> None:
        self.traits = traits
        self.rng = rng
        self.load_s = 0.0
        self.wobble = 0.0
        self.level = 0.0

    def step(self, dt: float, driving: bool, rate: float) -> float:
        """Advance ``dt`` seconds (``rate`` scales how fast fatigue builds); the new level."""
        tr = self.traits
        if driving:
            self.load_s += dt * rate
        else:
            self.load_s *= math.exp(-dt / tr.rest_tau_s)
        a = math.exp(-dt / 360.0)
        self.wobble = a * self.wobble + 0.04 * math.sqrt(1 - a * a) * float(
            self.rng.standard_normal()
        )
        base = 1.0 - math.exp(-((self.load_s / tr.tau_s) ** tr.shape))
        self.level = min(1.0, max(0.0, base + self.wobble * min(1.0, 4.0 * base)))
        return self.level


@dataclass(frozen=True, slots=True)
class CornerError:
    """What a late braking point leads to at one corner entry."""

    kind: int  # SAVE, OFF_TRACK (field's 1), SPIN (2), LIGHT_CONTACT, CONTACT (3)
    then: int  # a second stage it escalates to (0 = none)
    overshoot_m: float
    cause: str


def corner_error(
    race: RaceTraits,
    rng: np.random.Generator,
    probability: float,
    gap_ahead_m: float,
) -> CornerError | None:
    """Roll one corner entry: None, or the error and what it becomes."""
    if rng.random() >= probability:
        return None
    over = float(rng.lognormal(race.overshoot_mu, race.overshoot_sigma))
    if gap_ahead_m < race.contact_gap_m:
        return CornerError(0, 0, over, "late_brake_in_traffic")
    if over < race.wide_m:
        return CornerError(SAVE, 0, over, "late_brake")
    if over < race.spin_m:
        # The longer the overshoot, the likelier the car also loses the rear.
        spins = rng.random() < 0.25 * (over - race.wide_m) / (race.spin_m - race.wide_m)
        return CornerError(1, 2 if spins else 0, over, "late_brake")
    return CornerError(2, 0, over, "late_brake")


@dataclass(slots=True)
class StageShape:
    """The magnitudes of one stage, drawn when it starts (publish.py draws it)."""

    duration_s: float
    speed_factor: float  # target speed × this (off-track, save)
    decel: float  # extra deceleration while spinning or at impact, m/s²
    impact_s: float  # how long an impact's deceleration lasts
    yaw: float  # rad: peak yaw deviation (save/off) or the full rotation (spin)
    yaw_period_s: float  # a save's yaw oscillation period
    lateral_m: float  # how far off the line
    lat_g: float  # extra lateral acceleration, m/s²
    surface_off: bool  # PlayerTrackSurface reads OffTrack during it
    points: int  # what iRacing would add for this stage alone


def stage_shape(
    kind: int, overshoot_m: float, race: RaceTraits, rng: np.random.Generator
) -> StageShape:
    """Draw one stage's shape; the overshoot sets its size."""
    u = rng.uniform
    if kind == SAVE:
        return StageShape(
            float(u(0.5, 1.6)),
            float(u(0.82, 0.97)),
            0.0,
            0.0,
            float(u(0.04, 0.3)),
            float(u(0.6, 1.6)),
            float(u(0.3, 2.0)),
            float(u(1.0, 6.0)),
            False,
            0,
        )
    if kind == 1:  # off-track
        lateral = 1.2 + 0.55 * overshoot_m * float(u(0.6, 1.4))
        off = lateral > race.wheels_off_m
        return StageShape(
            float(np.clip(0.8 + 0.28 * overshoot_m * u(0.6, 1.4), 0.9, 6.5)),
            float(np.clip(0.97 - 0.035 * overshoot_m, 0.35, 0.93)),
            0.0,
            0.0,
            float(u(0.05, 0.35)),
            float(u(0.8, 2.0)),
            lateral,
            float(u(1.0, 7.0)),
            off,
            1 if off else 0,
        )
    if kind == 2:  # spin (loss of control)
        rotation = float(
            np.clip(u(1.0, 3.8) * (1 + max(0.0, overshoot_m - 9) / 12), 0.9, 9.5)
        )
        return StageShape(
            float(u(2.0, 5.0)),
            0.0,
            float(u(1.5, 9.0)),
            0.0,
            rotation,
            0.0,
            float(u(1.0, 8.0)),
            float(u(3.0, 14.0)),
            bool(rng.random() < 0.65),
            2,
        )
    # contact: closing speed from the overshoot
    dv = float(np.clip(0.25 * overshoot_m * u(0.5, 1.5), 0.2, 8.0))
    impact = float(u(0.06, 0.2))
    heavy = dv >= race.heavy_dv
    return StageShape(
        float(u(0.4, 1.2)),
        1.0,
        dv / impact,
        impact,
        float(u(0.02, 0.25)),
        float(u(0.15, 0.4)),
        0.0,
        float(u(2.0, 12.0)) * (0.5 + dv / 3.0),
        False,
        4 if heavy else 0,
    )


def lap_modifier(
    profile: F64,
    entries: tuple[int, ...],
    exits: tuple[int, ...],
    traits: DriverTraits,
    fatigue: float,
    rng: np.random.Generator,
) -> F64:
    """Target-speed multipliers per metre for one lap of the team car.

    Early braking moves the braking curve before each corner earlier by a drawn number of
    metres (more when tired and braking-prone); hesitant throttle lowers the target for
    a drawn length after each corner exit.
    """
    n = len(profile)
    mod = np.ones(n)
    for entry in entries:
        shift = abs(
            rng.normal(0.4, 0.25 + traits.early_brake_m * traits.w_brake * fatigue)
        )
        k = round(float(shift))
        if k <= 0:
            continue
        lo = max(0, entry - 140)
        idx = np.arange(lo, entry)
        shifted = profile[np.minimum(idx + k, entry)]
        mod[idx] = np.minimum(1.0, shifted / profile[idx])
    for exit_ in exits:
        hesitate = abs(rng.normal(0.0, 0.004 + 0.05 * traits.w_throttle * fatigue))
        length = int(rng.uniform(30, 90))
        hi = min(n, exit_ + length)
        ramp = np.linspace(1.0, 0.0, hi - exit_)
        mod[exit_:hi] *= 1.0 - min(hesitate, 0.2) * ramp
    return mod


def corner_points(
    profile: F64, curvature: F64
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Metres where each turn starts and ends (from the curvature table)."""
    turn = curvature > 0
    starts = tuple(int(i) + 1 for i in np.flatnonzero(~turn[:-1] & turn[1:]))
    ends = tuple(int(i) + 1 for i in np.flatnonzero(turn[:-1] & ~turn[1:]))
    return starts, ends


class TeamModel:
    """The independent model's state for one race: its constants, the team's drivers, the lap's targets."""

    def __init__(self, seed: int, drivers: int, profile: F64, curvature: F64) -> None:
        self.rng = np.random.default_rng([seed, 5])
        # The team car's input noise (publish.py), apart from the race's draws.
        self.pub_rng = np.random.default_rng([seed, 6])
        self.race = draw_race(self.rng)
        self.traits = [draw_driver(self.rng) for _ in range(drivers)]
        self.fatigue = [
            DriverFatigue(t, np.random.default_rng([seed, 7, d]))
            for d, t in enumerate(self.traits)
        ]
        self.entries, self.exits = corner_points(profile, curvature)
        self.profile = profile
        self.mod = np.ones(len(profile))
        # Counter increments not yet shown: (due time, points, driver index).
        self.pending: list[tuple[float, int, int]] = []

    def new_lap(self, fatigue: float, traits: DriverTraits) -> None:
        """Draw the next lap's braking points and throttle for the driver in the car."""
        self.mod = lap_modifier(
            self.profile, self.entries, self.exits, traits, fatigue, self.rng
        )

    def overshoot(self) -> float:
        """A drawn overshoot (metres) for a stage that has no corner behind it."""
        r = self.race
        return float(self.rng.lognormal(r.overshoot_mu, r.overshoot_sigma))
