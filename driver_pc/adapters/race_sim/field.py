"""The car field: every car's state as numpy arrays, stepped at 60 Hz without per-car loops."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from driver_pc.adapters.race_sim import behaviour as bh
from driver_pc.adapters.race_sim.entries import Entry
from driver_pc.adapters.race_sim.track import TRACK_M, TrackTables
from driver_pc.adapters.race_sim.truth import TruthEvent, TruthKind, TruthValue

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
BOOL = npt.NDArray[np.bool_]

TANK_L = 30.0
PIT_SPEED = 13.4  # 30 mph pit limiter
PIT_ENTRY_M = TRACK_M - 120.0
PIT_EXIT_M = 100.0
REFUEL_LPS = 2.0
STOP_BASE_S = 4.0
TYRE_CHANGE_S = 12.0
ACCEL, BRAKE, DRAG = 5.5, 11.0, 0.0004
FUEL_L_PER_M, FUEL_L_PER_M_THROTTLE = 0.00012, 0.0009
NOMINAL_FUEL_PER_LAP = 0.5  # the single-car model's pit rule
KG_PER_L = 0.75
GRID_GAP_M = 8.0
START_SPEED = 20.0

FCY_SPEED = 22.0  # m/s behind the (virtual) pace car
FCY_MIN_GAP_S = 300.0
DRAFT_WINDOW_S = 1.0
DRAFT_SPEED_GAIN = 0.03  # on the straights, at zero gap
DRAFT_FUEL_SAVING = 0.12

INCIDENTS_PER_HOUR = 1.5  # a fresh driver on fresh tyres, green flag
YELLOWS_PER_HOUR = 1.0  # random full-course yellows, besides those incidents cause
FATIGUE_TAU_S = 90 * 60.0  # fatigue = 1 - exp(-stint / tau)
REST_TAU_S = 20 * 60.0
TYRE_WEAR_PER_LAP = 0.003  # RF middle tread per lap at tyre_wear=1
TYRE_LOSS = 0.12  # lap-time fraction lost per unit of mean tread worn
TYRE_CLIFF = 0.5  # ... plus this much per unit of min tread below 0.5
FATIGUE_LOSS = 0.015
FUEL_LOSS_PER_L = 0.00025
DAMAGE_LOSS_PER_S = 0.0006

# Tread wear per corner and stripe (LF L/M/R, RF, LR, RR): a left-turning oval loads
# the right side, the right front most.
CORNER_WEAR = np.array(
    [0.62, 0.65, 0.70, 0.95, 1.0, 1.08, 0.50, 0.52, 0.55, 0.72, 0.75, 0.80]
)

NONE, OFF_TRACK, SPIN, CONTACT = 0, 1, 2, 3
SAVE, LIGHT_CONTACT = bh.SAVE, bh.LIGHT_CONTACT  # the independent model's 0x stages
INCIDENT_NAMES = {
    OFF_TRACK: "off_track",
    SPIN: "spin",
    CONTACT: "contact",
    SAVE: "save",
    LIGHT_CONTACT: "light_contact",
}
INCIDENT_POINTS = {OFF_TRACK: 1, SPIN: 2, CONTACT: 4, SAVE: 0, LIGHT_CONTACT: 0}
SEQUENCE_CLOSE_S = 2.0
CONTACT_RANGE_M = 25.0

RACING, PIT_REQUESTED, PIT_INBOUND, IN_STALL, PIT_OUTBOUND = 0, 1, 2, 3, 4
PHASE_CAP = np.array([np.inf, np.inf, PIT_SPEED, 0.0, PIT_SPEED])
# CarIdxTrackSurface by pit phase: on track, on track, approaching pits, stall, pits.
PHASE_SURFACE = np.array([3, 3, 2, 1, 2], dtype=np.int32)


@dataclass(frozen=True, slots=True)
class FieldOptions:
    """How the race runs; multipliers scale the documented base rates (0 = off)."""

    laps: int
    race: bool  # the endurance model; False is the single-car v1 behaviour
    start_fuel: float
    player_idx: int = 0
    grid_slot: int | None = None
    tyre_wear: float = 1.0
    fatigue: float = 1.0
    incidents: float = 1.0
    yellows: float = 1.0
    drafting: float = 1.0
    stints_per_driver: int = 1
    # "classic": the documented fixed rates and shapes; "independent": behaviour.py's
    # per-race draws (seeded by model_seed), for scoring detectors.
    model: str = "classic"
    model_seed: int = 0


@dataclass(slots=True)
class Fcy:
    """A full-course yellow in progress."""

    started: float
    laps_left: int
    cause: str
    cause_car: int


class RaceField:
    """All cars of one race, stepped one tick at a time.

    Index ``i`` of every array is the car's ``CarIdx``; the player's car is one of them
    and follows the same physics. Work is split by rate: the per-tick step only moves
    cars (speed controller, pit lane, incidents in progress, fuel, line crossings);
    drafting gaps, F2 times, incident onsets and passes run every 6th tick (0.1 s);
    fatigue, tyre wear and pace, and incident rates and random yellows, each once a
    second on different ticks. Rare events (a car crossing the line, entering the pits,
    an incident) are handled per car in Python.
    """

    def __init__(
        self,
        opts: FieldOptions,
        entries: list[Entry],
        tables: TrackTables,
        rng: np.random.Generator,
        truth: list[TruthEvent],
        tick_rate: int = 60,
    ) -> None:
        n = len(entries)
        self.n = n
        self.opts = opts
        self.entries = entries
        self.tables = tables
        self.rng = rng
        self.truth = truth
        self.dt = 1.0 / tick_rate
        self.p = opts.player_idx
        self.race = opts.race
        self.t = 0.0
        self.tick = 0
        self.info_changes = 0
        self.done = False
        self._profile = tables.profile
        f = np.zeros
        self.class_idx = np.array(
            [
                next(i for i, c in enumerate(_classes(entries)) if c == e.car_class)
                for e in entries
            ],
            dtype=np.int64,
        )
        self.class_ids = np.array(
            [e.car_class.class_id for e in entries], dtype=np.int32
        )
        self.class_pace = np.array([e.car_class.pace for e in entries])
        self._n_classes = int(self.class_idx.max()) + 1
        self._ranks = np.arange(1, n + 1, dtype=np.int32)
        self._pace_block: list[float] = []
        self._pace_next = 0
        self.ref_lap = tables.lap_time / self.class_pace
        # motion
        self.s = f(n)
        self.s_prev = f(n)
        self.v = np.full(n, START_SPEED)
        self.v_prev = self.v.copy()
        self.throttle = f(n)
        self.brake = f(n)
        self.idx = np.zeros(n, dtype=np.intp)
        self._buf = np.zeros((5, n))
        # timing
        self.lap = np.zeros(n, dtype=np.int64)
        self._max_lap = 0
        self.lap_start = np.full(n, np.nan)
        self.last_lap = np.full(n, -1.0)
        self.best_lap = np.full(n, -1.0)
        self.position = np.zeros(n, dtype=np.int32)
        self.class_position = np.zeros(n, dtype=np.int32)
        self.f2_time = f(n)
        self.finished = np.zeros(n, dtype=bool)
        self.checkered = False
        self._pos_lap = np.zeros(n, dtype=np.int64)
        self._pos_time = f(n)
        # pace
        self.skill = np.ones(n)
        self.pace_lap = np.ones(n)
        self.pace = np.ones(n)
        self.loss = f(n)
        self.draft = f(n)
        self.draft_gain = f(n)
        self._all = np.arange(n)
        self._lap_wear_units = float(tables.wear_weight.sum())
        self._est_frac = tables.est_time / tables.lap_time
        self.fuel_mult = np.ones(n)
        self.fcy_cap = np.full(n, np.inf)
        # fuel, tyres, fatigue, damage
        self.fuel = np.full(n, float(opts.start_fuel))
        self.burn = f(n)  # litres burnt in the last tick
        self.fuel_at_line = np.full(n, np.nan)
        self.fuel_per_lap = np.full(n, 0.42)  # l/lap until measured
        self.tread = np.ones((n, 12))
        self._wear_acc = f(n)
        self.fatigue = f(n)
        self.stint_start = f(n)
        self.repair = f(n)
        self.opt_repair = f(n)
        # pit lane
        self.phase = np.zeros(n, dtype=np.int64)
        self.pit_road = np.zeros(n, dtype=bool)
        self.stop_left = f(n)
        self.fuel_target = np.full(n, TANK_L)
        self.stall_s = np.full(n, 20.0)
        self._pitting: list[int] = []  # cars between a pit decision and pit exit
        self._n_stall = 0
        self.version = 0  # bumped whenever line, pit or incident status changes
        self._opt_taken = np.zeros(n, dtype=bool)
        self._lap_pit = np.zeros(n, dtype=bool)
        self._plan: dict[int, dict[str, TruthValue]] = {}
        self._reasons: dict[int, tuple[str, ...]] = {}
        self._stops_since_swap = np.zeros(n, dtype=np.int64)
        self._swap_every = np.full(n, max(1, opts.stints_per_driver), dtype=np.int64)
        self._stop_started = f(n)
        # incidents
        self._n_inc = 0
        self.inc_kind = np.zeros(n, dtype=np.int64)
        self.inc_t = f(n)
        self.inc_dur = np.ones(n)
        self._esc_at = np.full(n, np.inf)
        self._seq_points = np.zeros(n, dtype=np.int64)
        self._seq_close = np.full(n, -np.inf)
        self._seq_id = 0
        self._seq_of = np.zeros(n, dtype=np.int64)
        self._hazard = f(n)
        self._inc_rate = f(n)  # per second
        # Each stage's magnitudes (the classic model's constants unless drawn).
        self.inc_speed = np.full(n, 0.55)  # target × this while off track
        self.inc_decel = np.full(n, 6.0)  # extra deceleration while spinning
        self.inc_hit = np.full(n, 30.0)  # deceleration of an impact
        self.inc_hit_s = np.full(n, 0.15)  # ... lasting this long
        self.inc_off = np.zeros(n, dtype=bool)  # TrackSurface reads OffTrack
        self._esc_to = np.zeros(n, dtype=np.int64)
        self.inc_shape: dict[int, bh.StageShape] = {}
        self.gap_ahead = np.full(n, np.inf)
        self.gap_behind = np.full(n, np.inf)
        self.ahead_of = np.full(n, -1, dtype=np.int64)
        self.behind_of = np.full(n, -1, dtype=np.int64)
        # race control
        self.fcy: Fcy | None = None
        self._fcy_ended = -math.inf
        self.green_until = 5.0 if opts.race else 0.0
        # the player's team
        drivers = len(entries[self.p].drivers)
        self.driver_fatigue = np.zeros(drivers)
        self._driver_sens = np.ones(drivers)
        self.incidents_team = 0
        self.incidents_driver = np.zeros(drivers, dtype=np.int64)
        self.published_tread = np.ones(12)
        self._fatigue_step = 0
        self._lap_acc = _LapAccumulator()
        self._prev_ahead = -1
        self._prev_behind = -1
        self.model: bh.TeamModel | None = None
        if opts.model == "independent" and self.race:
            self.model = bh.TeamModel(
                opts.model_seed, drivers, tables.profile, tables.curvature
            )
        elif opts.model != "classic":
            raise ValueError(f"simulator: unknown truth model {opts.model!r}")
        self._grid(rng)
        self.fuel_at_line = self.fuel.copy()
        if not self.race:
            self.pace = self.pace_lap  # v1: the per-lap draw is the whole pace model

    # ------------------------------------------------------------------ set-up
    def _grid(self, rng: np.random.Generator) -> None:
        n, p = self.n, self.p
        if n == 1 and not self.race:
            self.s[:] = PIT_EXIT_M + 5.0  # v1: start just after pit exit, rolling
            self.stall_s[:] = 20.0
            self._pos_time[:] = -1000.0
            self.position[:] = 1
            self.class_position[:] = 1
            return
        others = [i for i in range(n) if i != p]
        # Faster classes start in front, in random order within a class.
        others.sort(key=lambda i: (self.class_idx[i], rng.random()))
        slot = (
            self.opts.grid_slot
            if self.opts.grid_slot is not None
            else int(rng.integers(0, n))
        )
        slot = min(max(slot, 0), n - 1)
        order = [*others[:slot], p, *others[slot:]]
        front = PIT_EXIT_M + 5.0 + GRID_GAP_M * (n - 1)
        for rank, i in enumerate(order):
            self.s[i] = front - GRID_GAP_M * rank
            self._pos_time[i] = -1000.0 + rank
        self.s_prev[:] = self.s
        self.stall_s[:] = 20.0 + 70.0 * np.arange(n) / max(n - 1, 1)
        skill = np.clip(rng.normal(1.0, 0.007, n), 0.98, 1.015)
        skill[p] = 1.0
        self.skill = skill * self.class_pace
        opp = np.ones(n, dtype=bool)
        opp[p] = False
        # Opponents start around the player's fuel load, so pit cycles are staggered.
        spread = rng.uniform(0.6, 1.4, int(opp.sum()))
        self.fuel[opp] = np.clip(self.opts.start_fuel * spread, 2.0, TANK_L)
        self._swap_every[opp] = rng.integers(1, 3, int(opp.sum()))
        self._driver_sens = rng.uniform(0.8, 1.25, len(self.driver_fatigue))
        self._hazard = rng.exponential(1.0, n)
        self._positions()
        self._update_pace()

    # ------------------------------------------------------------------ per tick
    def step(self) -> None:
        """Advance every car by one tick."""
        dt = self.dt
        self.t += dt
        self.tick += 1
        s, v, b = self.s, self.v, self._buf
        idx = s.astype(np.intp)  # s < TRACK_M here, so idx < len(profile)
        self.idx = idx
        target = np.take(self._profile, idx, out=b[0])
        if self.race:
            gain = np.take(self.tables.straight, idx, out=b[1])
            gain *= self.draft_gain
            gain += self.pace
            target *= gain
        else:
            target *= self.pace
        model = self.model
        if model is not None:
            p = self.p
            target[p] *= model.mod[idx[p]]
            self._corner_entry(model)
            if model.pending and self.t >= model.pending[0][0]:
                self._count_pending(model)
        if self.fcy is not None:
            np.minimum(target, self.fcy_cap, out=target)
        phase = self.phase
        for i in self._pitting:
            cap = PHASE_CAP[phase[i]]
            if target[i] > cap:
                target[i] = cap
        extra = self._incident_effects(target) if self._n_inc else None
        # The v1 speed controller: throttle towards the target, brake above it.
        diff = np.subtract(target, v, out=b[2])
        thr = np.multiply(diff, 1.0 / 3.0, out=self.throttle)
        thr += 0.6
        np.minimum(thr, 1.0, out=thr)
        np.maximum(thr, 0.0, out=thr)
        thr *= diff > 0.0
        brk = np.multiply(diff, -0.25, out=self.brake)
        np.minimum(brk, 1.0, out=brk)
        brk *= diff < -0.5
        np.copyto(self.v_prev, v)
        acc = np.multiply(v, v, out=b[3])
        acc *= -DRAG
        acc += ACCEL * thr
        acc -= BRAKE * brk
        if extra is not None:
            acc -= extra
        acc *= dt
        v += acc
        np.maximum(v, 0.0, out=v)
        if self._n_stall:
            self._pit_stall(dt)
        np.copyto(self.s_prev, s)
        ds = np.multiply(v, dt, out=b[4])
        s += ds
        burn = np.multiply(thr, FUEL_L_PER_M_THROTTLE, out=self.burn)
        burn += FUEL_L_PER_M
        burn *= ds
        if self.race:
            burn *= self.fuel_mult
            self._wear_acc += self.tables.wear_weight[idx] * ds
        self.fuel -= burn
        np.maximum(self.fuel, 0.0, out=self.fuel)
        if s.max() >= TRACK_M:
            self._cross(np.flatnonzero(s >= TRACK_M))
        if self._pitting:
            self._pit_transitions()
        if self.race:
            # Spread over different ticks so no tick carries more than one of them.
            when = self.tick % 60
            if when % 6 == 3:
                self._medium()
            elif when == 0:
                self._slow_pace()
            elif when == 30:
                self._slow_risk()

    def _incident_effects(self, target: F64) -> F64:
        """Apply incidents in progress to the target speed; return extra deceleration."""
        dt = self.dt
        kind = self.inc_kind
        active = kind != NONE
        self.inc_t[active] += dt
        tau = self.inc_t
        off = (kind == OFF_TRACK) | (kind == SAVE)
        spin = (kind == SPIN) & (tau < 0.7 * self.inc_dur)
        contact = ((kind == CONTACT) | (kind == LIGHT_CONTACT)) & (tau < self.inc_hit_s)
        target[off] *= self.inc_speed[off]
        target[spin] = 0.0
        extra = np.where(spin, self.inc_decel, 0.0) + np.where(
            contact, self.inc_hit, 0.0
        )
        for i in np.flatnonzero(active & (tau >= self._esc_at)):
            self._escalate(int(i))
        for i in np.flatnonzero((kind != NONE) & (tau >= self.inc_dur)):
            self._end_incident(int(i))
        return extra

    def _pit_stall(self, dt: float) -> None:
        """Cars stopped in their stall: refuel, repair, count the stop down."""
        v, race = self.v, self.race
        for i in tuple(self._pitting):
            if self.phase[i] != IN_STALL or v[i] >= 0.5:
                continue
            v[i] = 0.0
            self.stop_left[i] -= dt
            self.fuel[i] = min(self.fuel_target[i], self.fuel[i] + REFUEL_LPS * dt)
            if race:
                if self.repair[i] > 0:
                    self.repair[i] = max(0.0, self.repair[i] - dt)
                elif self._opt_taken[i] and self.opt_repair[i] > 0:
                    self.opt_repair[i] = max(0.0, self.opt_repair[i] - dt)
            if self.stop_left[i] <= 0.0:
                self._service_done(i)

    def _pit_transitions(self) -> None:
        s, phase = self.s, self.phase
        for i in tuple(self._pitting):
            si, ph = s[i], phase[i]
            if ph == PIT_REQUESTED:
                if PIT_ENTRY_M <= si < PIT_ENTRY_M + 60:
                    self._enter_pits(i)
            elif ph == PIT_INBOUND:
                if self.stall_s[i] <= si < PIT_EXIT_M:
                    self._arrive_stall(i)
            elif ph == PIT_OUTBOUND and PIT_EXIT_M <= si < PIT_ENTRY_M:
                self._leave_pits(i)

    # ------------------------------------------------------------------ line
    def _cross(self, cars: I64) -> None:
        dt = self.dt
        t0 = self.t - dt
        for i in cars.tolist():
            s_prev = float(self.s_prev[i])
            frac = (TRACK_M - s_prev) / max(float(self.s[i]) - s_prev, 1e-9)
            crossing = t0 + frac * dt  # exact line time, linear within the tick
            start = float(self.lap_start[i])
            timed = bool(self.lap[i] >= 1) and start == start
            if timed:
                lap_time = crossing - start
                self.last_lap[i] = lap_time
                best = float(self.best_lap[i])
                self.best_lap[i] = lap_time if best < 0 else min(best, lap_time)
            self.lap_start[i] = crossing
            self.s[i] -= TRACK_M
            self.s_prev[i] -= TRACK_M
            self.lap[i] += 1
            self.pace_lap[i] = self._next_lap_pace()
            if self.model is not None and i == self.p:
                self.model.new_lap(float(self.fatigue[i]), self._driver_traits())
            if self.race:
                self.pace[i] = self.skill[i] * self.pace_lap[i] / (1.0 + self.loss[i])
            self._after_crossing(i, crossing, timed)
        self._max_lap = int(self.lap.max())
        self._positions()
        self.version += 1

    def _next_lap_pace(self) -> float:
        """Per-lap driver variation, drawn in blocks (one draw per line crossing)."""
        if self._pace_next >= len(self._pace_block):
            block = self.rng.normal(1.0, 0.006, 256)
            self._pace_block = np.clip(block, 0.97, 1.02).tolist()
            self._pace_next = 0
        self._pace_next += 1
        return self._pace_block[self._pace_next - 1]

    def _after_crossing(self, i: int, crossing: float, timed: bool) -> None:
        completed = int(self.lap[i]) - 1
        fuel_used = float(self.fuel_at_line[i] - self.fuel[i])
        pit_lap = bool(self._lap_pit[i])
        if timed and not pit_lap and 0.0 < fuel_used < 5.0 and self.fcy is None:
            self.fuel_per_lap[i] = 0.7 * self.fuel_per_lap[i] + 0.3 * fuel_used
        if i == self.p and timed:
            self._player_lap_truth(crossing, fuel_used)
        self.fuel_at_line[i] = self.fuel[i]
        self._lap_pit[i] = self.phase[i] >= PIT_INBOUND
        if not self.finished[i]:
            self._pos_lap[i] = self.lap[i]
            self._pos_time[i] = crossing
            if completed >= self.opts.laps or self.checkered:
                if not self.checkered:
                    self.checkered = True
                    self._event(TruthKind.CHECKERED, i, {"winner_car_idx": i})
                self.finished[i] = True
                if i == self.p:
                    self.done = True
        if self.fcy is not None and i == self._leader():
            self.fcy.laps_left -= 1
            if self.fcy.laps_left <= 0:
                self._end_fcy()
        if not self.finished[i] and not self.checkered:
            self._pit_decision(i)

    def _positions(self) -> None:
        """Race positions as iRacing posts them: at the line, by laps then crossing time."""
        order = np.lexsort((self._pos_time, -self._pos_lap))
        self.position[order] = self._ranks
        if self._n_classes == 1:
            self.class_position[:] = self.position
            return
        cls = self.class_idx[order]
        for c in range(self._n_classes):
            members = order[cls == c]
            self.class_position[members] = self._ranks[: len(members)]

    def _leader(self) -> int:
        return int(np.argmax(self.lap * TRACK_M + self.s))

    # ------------------------------------------------------------------ pits
    def laps_to_go(self) -> int:
        """Laps the leader still has to complete."""
        return max(0, self.opts.laps - (self._max_lap - 1))

    def _pit_decision(self, i: int) -> None:
        if self.phase[i] != RACING:
            return
        fuel = float(self.fuel[i])
        reasons: list[str] = []
        if not self.race:
            if fuel / NOMINAL_FUEL_PER_LAP < 2.5 and self.lap[i] < self.opts.laps:
                reasons.append("fuel")
        else:
            to_go = self.laps_to_go()
            fpl = max(float(self.fuel_per_lap[i]), 0.3)
            in_tank = fuel / fpl
            if in_tank < 2.5 and to_go + 0.5 > in_tank:
                reasons.append("fuel")
            if self.repair[i] > 0:
                reasons.append("repair")
            if self.tread[i].min() < 0.45 and to_go > 8:
                reasons.append("tyres")
            if (
                self.fcy is not None
                and not reasons
                and fuel < 0.4 * TANK_L
                and to_go > 5
                and to_go + 0.5 > in_tank
            ):
                reasons.append("fcy")
        if reasons:
            self._request_pit(i, tuple(reasons))

    def _request_pit(self, i: int, reasons: tuple[str, ...]) -> None:
        self.phase[i] = PIT_REQUESTED
        self._reasons[i] = reasons
        self._pitting.append(i)
        self._event(TruthKind.PIT_REQUEST, i, {"reasons": ",".join(reasons)})

    def _enter_pits(self, i: int) -> None:
        self.phase[i] = PIT_INBOUND
        self.pit_road[i] = True
        self.version += 1
        self._lap_pit[i] = True
        reasons = ",".join(self._reasons.get(i, ()))
        self._event(TruthKind.PIT_ENTRY, i, {"reasons": reasons})

    def _arrive_stall(self, i: int) -> None:
        self.phase[i] = IN_STALL
        self._n_stall += 1
        self.version += 1
        self._stop_started[i] = self.t
        fuel = float(self.fuel[i])
        reasons = self._reasons.get(i, ())
        if not self.race:  # v1: fill the tank, nothing else
            service = (TANK_L - fuel) / REFUEL_LPS + STOP_BASE_S
            self.fuel_target[i] = TANK_L
            self.stop_left[i] = service
            self._plan[i] = {
                "reasons": ",".join(reasons),
                "fuel_added_l": round(TANK_L - fuel, 3),
                "tyres": False,
                "repair_s": 0.0,
                "optional_repair_s": 0.0,
                "planned_service_s": round(service, 3),
            }
            return
        to_go = self.laps_to_go()
        need = float(self.fuel_per_lap[i]) * (to_go + 1.5)
        add = float(np.clip(need - fuel, 0.0, TANK_L - fuel))
        tyres = bool(("tyres" in reasons or self.tread[i].min() < 0.7) and to_go > 5)
        repair = float(self.repair[i])
        opt = float(self.opt_repair[i])
        take_opt = opt > 0 and to_go > 10 and opt < 45.0
        self._opt_taken[i] = take_opt
        work = max(add / REFUEL_LPS, TYRE_CHANGE_S if tyres else 0.0)
        service = STOP_BASE_S + work + repair + (opt if take_opt else 0.0)
        self.fuel_target[i] = fuel + add
        self.stop_left[i] = service
        if i == self.p:
            self.published_tread = self.tread[i].copy()  # the crew's reading
        self._plan[i] = {
            "reasons": ",".join(reasons),
            "fuel_added_l": round(add, 3),
            "tyres": tyres,
            "repair_s": round(repair, 3),
            "optional_repair_s": round(opt if take_opt else 0.0, 3),
            "planned_service_s": round(service, 3),
            "tread_min": round(float(self.tread[i].min()), 4),
            "tread_mean": round(float(self.tread[i].mean()), 4),
        }

    def _service_done(self, i: int) -> None:
        self.phase[i] = PIT_OUTBOUND
        self._n_stall -= 1
        self.version += 1
        self.stop_left[i] = 0.0
        plan = self._plan.pop(i, {})
        if self.race:
            self.fuel[i] = self.fuel_target[i]
            if plan.get("tyres"):
                self.tread[i] = 1.0
                if i == self.p:
                    self.published_tread = np.ones(12)
            self.repair[i] = 0.0
            if self._opt_taken[i]:
                self.opt_repair[i] = 0.0
        service = round(self.t - float(self._stop_started[i]), 3)
        self._event(TruthKind.PIT_SERVICE, i, {**plan, "service_s": service})
        self._stops_since_swap[i] += 1
        entry = self.entries[i]
        if self._stops_since_swap[i] >= self._swap_every[i] and len(entry.drivers) > 1:
            self._swap_driver(i)

    def _leave_pits(self, i: int) -> None:
        self.phase[i] = RACING
        self.pit_road[i] = False
        self._pitting.remove(i)
        self.version += 1
        self._reasons.pop(i, None)
        self._event(TruthKind.PIT_EXIT, i, {})
        if self.repair[i] > 0:  # damaged in the meantime: come straight back
            self._request_pit(i, ("repair",))

    def _swap_driver(self, i: int) -> None:
        entry = self.entries[i]
        old = entry.driver_idx
        entry.driver_idx = (old + 1) % len(entry.drivers)
        self._stops_since_swap[i] = 0
        self.info_changes += 1
        stint = self.t - float(self.stint_start[i])
        fatigue = float(self.fatigue[i])
        self.stint_start[i] = self.t
        if i != self.p:
            self.fatigue[i] = 0.05
        else:
            self.fatigue[i] = self.driver_fatigue[entry.driver_idx]
        self._event(
            TruthKind.DRIVER_CHANGE,
            i,
            {
                "driver_out": entry.drivers[old],
                "driver_in": entry.driver,
                "stint_s": round(stint, 3),
                "fatigue_out": round(fatigue, 4),
            },
        )

    # ------------------------------------------------------------------ 0.1 s
    def _medium(self) -> None:
        period = 6 * self.dt
        gap, behind = self.gap_ahead, self.gap_behind
        if self.pit_road.any():
            on = np.flatnonzero(~self.pit_road)
            gap.fill(np.inf)
            behind.fill(np.inf)
            self.ahead_of.fill(-1)
            self.behind_of.fill(-1)
        else:
            on = self._all
        if len(on) >= 2:
            order = on[np.argsort(self.s[on])]
            pos = self.s[order]
            g = np.empty_like(pos)
            np.subtract(pos[1:], pos[:-1], out=g[:-1])
            g[-1] = pos[0] + TRACK_M - pos[-1]
            gap[order] = g
            behind[order[1:]] = g[:-1]
            behind[order[0]] = g[-1]
            self.ahead_of[order[:-1]] = order[1:]
            self.ahead_of[order[-1]] = order[0]
            self.behind_of[order[1:]] = order[:-1]
            self.behind_of[order[0]] = order[-1]
        else:
            gap.fill(np.inf)
            behind.fill(np.inf)
        draft = self.draft
        if self.fcy is None and self.opts.drafting > 0:
            # Strength 1 at zero gap, 0 at DRAFT_WINDOW_S behind the car ahead.
            np.maximum(self.v, 5.0, out=draft)
            np.divide(gap, draft, out=draft)
            draft *= -1.0 / DRAFT_WINDOW_S
            draft += 1.0
            np.maximum(draft, 0.0, out=draft)
            if self._n_inc:
                draft[self.inc_kind != NONE] = 0.0
        else:
            draft.fill(0.0)
        np.multiply(draft, DRAFT_SPEED_GAIN * self.opts.drafting, out=self.draft_gain)
        np.multiply(draft, -DRAFT_FUEL_SAVING, out=self.fuel_mult)
        self.fuel_mult += 1.0
        if self.fcy is not None:
            closing = np.clip((gap - 12.0) / 60.0, 0.0, 1.0)
            self.fcy_cap = FCY_SPEED * (0.9 + 0.35 * closing)
            self.fcy_cap[self._leader()] = FCY_SPEED
        # F2Time: time behind the leader, from progress measured in reference time.
        progress = np.take(self._est_frac, self.s.astype(np.intp))
        progress += self.lap
        lead = progress.max()
        np.subtract(lead, progress, out=progress)
        progress *= self.ref_lap
        self.f2_time = progress
        # Incident onsets: each car's hazard clock runs down at its current rate.
        self._hazard -= self._inc_rate * period
        if self._hazard.min() <= 0.0:
            for i in np.flatnonzero(self._hazard <= 0.0).tolist():
                self._hazard[i] = self.rng.exponential(1.0)
                self._start_incident(i)
        self._passes()
        acc = self._lap_acc
        acc.draft_s += period if draft[self.p] > 0.3 else 0.0
        acc.fcy = acc.fcy or self.fcy is not None

    def _passes(self) -> None:
        p = self.p
        ahead, behind = int(self.ahead_of[p]), int(self.behind_of[p])
        if ahead < 0 or self.pit_road[p]:
            self._prev_ahead = self._prev_behind = -1
            return
        if self._prev_ahead >= 0 and self._prev_ahead == behind:
            self._pass_event(behind, gained=True)
        elif self._prev_behind >= 0 and self._prev_behind == ahead:
            self._pass_event(ahead, gained=False)
        self._prev_ahead, self._prev_behind = ahead, behind

    def _pass_event(self, other: int, gained: bool) -> None:
        p = self.p
        if self.pit_road[other]:
            return
        laps_apart = int(self.lap[p] - self.lap[other])
        self._event(
            TruthKind.PASS,
            p,
            {
                "other_car_idx": other,
                "gained": gained,
                "laps_apart": laps_apart,
                "under_yellow": self.fcy is not None,
            },
        )

    # ------------------------------------------------------------------ 1 s
    def _slow_pace(self) -> None:
        """Once a second: fatigue, tyre wear and the pace they leave each car."""
        period = 60 * self.dt
        o = self.opts
        p = self.p
        driving = ~self.pit_road
        if o.fatigue > 0 and self.model is not None:
            self._fatigue_independent(period, driving, self.model)
        elif o.fatigue > 0:
            tau = FATIGUE_TAU_S / o.fatigue
            k = 1.0 - math.exp(-period / tau)
            self.fatigue[driving] += (1.0 - self.fatigue[driving]) * k
            drv = self.entries[p].driver_idx
            rest = math.exp(-period / REST_TAU_S)
            df = self.driver_fatigue
            for d in range(len(df)):
                if d == drv:
                    kd = 1.0 - math.exp(-period * self._driver_sens[d] / tau)
                    df[d] += (1.0 - df[d]) * kd if driving[p] else 0.0
                else:
                    df[d] *= rest
            self.fatigue[p] = df[drv]
            step = int(df[drv] * 10)
            if step != self._fatigue_step:
                self._fatigue_step = step
                self._event(
                    TruthKind.FATIGUE,
                    p,
                    {
                        "level": round(float(df[drv]), 4),
                        "driver": self.entries[p].driver,
                    },
                )
        if o.tyre_wear > 0:
            per_m = TYRE_WEAR_PER_LAP * o.tyre_wear / self._lap_wear_units
            self.tread -= np.outer(self._wear_acc * per_m, CORNER_WEAR)
            np.maximum(self.tread, 0.02, out=self.tread)
        self._wear_acc[:] = 0.0
        self._update_pace()

    def _slow_risk(self) -> None:
        """Once a second: incident rates for the next second; random yellows."""
        o = self.opts
        period = 60 * self.dt
        worn = 1.0 - self.tread.mean(axis=1)
        traffic = (np.minimum(self.gap_ahead, self.gap_behind) < 30.0).astype(float)
        rate = (
            o.incidents
            * INCIDENTS_PER_HOUR
            / 3600.0
            * (1.0 + 2.0 * self.fatigue)
            * (1.0 + 1.5 * worn)
            * (1.0 + 0.5 * traffic)
        )
        rate[self.pit_road | self.finished] = 0.0
        if self.model is not None:
            rate[self.p] = 0.0  # the team car's incidents have causes (corner entries)
        if self.fcy is not None:
            rate *= 0.2
        self._inc_rate = rate
        if self.fcy is None and o.yellows > 0:
            if self.rng.random() < o.yellows * YELLOWS_PER_HOUR / 3600.0 * period:
                self._start_fcy("random", -1)

    def _update_pace(self) -> None:
        o = self.opts
        worn = 1.0 - self.tread.mean(axis=1)
        cliff = np.maximum(0.0, 0.5 - self.tread.min(axis=1))
        tyre = TYRE_LOSS * worn + TYRE_CLIFF * cliff if o.tyre_wear > 0 else 0.0
        damage = np.minimum(
            DAMAGE_LOSS_PER_S * (self.repair + 0.3 * self.opt_repair), 0.08
        )
        fatigue_loss = FATIGUE_LOSS * self.fatigue
        if self.model is not None:
            fatigue_loss[self.p] = (
                self._driver_traits().pace_loss * self.fatigue[self.p]
            )
        self.loss = tyre + fatigue_loss + FUEL_LOSS_PER_L * self.fuel + damage
        self.pace = self.skill * self.pace_lap / (1.0 + self.loss)
        if self.fuel.min() <= 0.0:
            self.pace = np.where(self.fuel <= 0.0, 0.3, self.pace)

    # ------------------------------------------------------------------ incidents
    def _start_incident(self, i: int) -> None:
        if self.inc_kind[i] != NONE or self.pit_road[i] or self.finished[i]:
            return
        near = min(float(self.gap_ahead[i]), float(self.gap_behind[i]))
        if near < 20.0:
            kind = int(self.rng.choice([OFF_TRACK, SPIN, CONTACT], p=[0.6, 0.25, 0.15]))
        else:
            kind = OFF_TRACK if self.rng.random() < 0.7 else SPIN
        self._stage(i, kind, cause=None)

    def _stage(
        self, i: int, kind: int, cause: int | None, overshoot: float | None = None
    ) -> None:
        """Begin one incident stage for car ``i``; count it with iRacing's escalation."""
        rng = self.rng
        model = self.model if i == self.p else None
        ongoing = self.inc_kind[i] != NONE or self.t <= self._seq_close[i]
        if not ongoing:  # a new sequence; an escalation continues the current one
            self._seq_id += 1
            self._seq_of[i] = self._seq_id
            self._seq_points[i] = 0
        shape: bh.StageShape | None = None
        if model is not None:
            over = model.overshoot() if overshoot is None else overshoot
            shape = bh.stage_shape(kind, over, model.race, model.rng)
            if kind == CONTACT and shape.points == 0:
                kind = LIGHT_CONTACT
            elif kind == OFF_TRACK and not shape.surface_off:
                kind = SAVE  # ran wide, never fully off: no points
        if self.inc_kind[i] == NONE:
            self._n_inc += 1
        self.inc_kind[i] = kind
        self.inc_t[i] = 0.0
        self.version += 1
        self._esc_at[i] = np.inf
        if shape is not None:
            dur = shape.duration_s
            self.inc_speed[i] = shape.speed_factor
            self.inc_decel[i] = shape.decel if kind == SPIN else 6.0
            self.inc_hit[i] = shape.decel if kind in (CONTACT, LIGHT_CONTACT) else 0.0
            self.inc_hit_s[i] = shape.impact_s
            self.inc_off[i] = shape.surface_off
            self.inc_shape[i] = shape
            points = shape.points
        else:
            if kind == OFF_TRACK:
                dur = float(rng.uniform(1.5, 4.0))
            elif kind == SPIN:
                dur = float(rng.uniform(2.5, 4.0))
            else:
                dur = 0.8
            self.inc_off[i] = kind in (OFF_TRACK, SPIN)
            if kind == OFF_TRACK and rng.random() < 0.25:
                self._esc_at[i] = rng.uniform(0.4, 0.8) * dur
            elif kind == SPIN and rng.random() < 0.35:
                self._esc_at[i] = 0.3 * dur
            points = INCIDENT_POINTS[kind]
        self.inc_dur[i] = dur
        other = -1
        if kind in (CONTACT, LIGHT_CONTACT):
            other = self._contact_partner(i) if cause is None else cause
        counted = max(0, points - int(self._seq_points[i]))
        self._seq_points[i] = max(int(self._seq_points[i]), points)
        if i == self.p:
            self._lap_acc.incidents += counted
            if model is not None:  # the counter moves a little after the cause
                delay = float(model.rng.uniform(*model.race.counter_delay))
                drv = self.entries[i].driver_idx
                model.pending.append((self.t + delay, counted, drv))
                model.pending.sort()
            else:
                self.incidents_team += counted
                self.incidents_driver[self.entries[i].driver_idx] += counted
        data: dict[str, TruthValue] = {
            "type": INCIDENT_NAMES[kind],
            "points": points,
            "counted": counted,
            "sequence": int(self._seq_of[i]),
            "other_car_idx": other,
            "duration_s": round(float(dur), 3),
            "fatigue": round(float(self.fatigue[i]), 4),
        }
        if shape is not None:
            data["surface_off"] = shape.surface_off
            data["overshoot_m"] = round(float(over), 3)
            data["cause"] = "contact_from" if cause is not None else "corner_entry"
        self._event(TruthKind.INCIDENT, i, data)
        if kind in (CONTACT, LIGHT_CONTACT) and other >= 0 and cause is None:
            if self.inc_kind[other] not in (CONTACT, LIGHT_CONTACT):
                self._stage(other, kind, cause=i)
        self._damage(i, kind)
        if cause is None and kind in (SPIN, CONTACT) and self.opts.yellows > 0:
            chance = (0.04 if kind == SPIN else 0.1) * self.opts.yellows
            if rng.random() < chance:
                self._start_fcy(INCIDENT_NAMES[kind], i)

    # ------------------------------------------------------------------ independent
    def _driver_traits(self) -> bh.DriverTraits:
        assert self.model is not None
        return self.model.traits[self.entries[self.p].driver_idx]

    def _corner_entry(self, model: bh.TeamModel) -> None:
        """At each turn-in of the team car: did the driver brake too late, and what follows."""
        p = self.p
        s0, s1 = float(self.s_prev[p]), float(self.s[p])
        entry = next((e for e in model.entries if s0 < e <= s1), None)
        if entry is None or self.phase[p] >= PIT_INBOUND or self.finished[p]:
            return
        if self.inc_kind[p] != NONE:
            return
        worn = 1.0 - float(self.tread[p].mean())
        near = min(float(self.gap_ahead[p]), float(self.gap_behind[p]))
        chance = (
            model.race.error_rate
            * self.opts.incidents
            * (1.0 + self._driver_traits().error_gain * float(self.fatigue[p]))
            * (1.0 + 1.5 * worn)
            * (1.4 if near < 30.0 else 1.0)
            * (0.2 if self.fcy is not None else 1.0)
        )
        err = bh.corner_error(
            model.race, model.rng, min(chance, 0.5), float(self.gap_ahead[p])
        )
        if err is None:
            return
        kind = err.kind if err.kind != NONE else CONTACT
        self._stage(p, kind, cause=None, overshoot=err.overshoot_m)
        self._plan_next(p, err.then)

    def _plan_next(self, i: int, then: int | None) -> None:
        """The independent model's escalation: an off-track that spins, a spin that is hit."""
        assert self.model is not None
        r = self.model.rng
        kind = int(self.inc_kind[i])
        dur = float(self.inc_dur[i])
        if then:
            self._esc_at[i] = float(r.uniform(0.3, 0.7)) * dur
            self._esc_to[i] = then
        elif kind == SPIN and self._contact_partner(i) >= 0 and r.random() < 0.5:
            self._esc_at[i] = float(r.uniform(0.2, 0.6)) * dur
            self._esc_to[i] = CONTACT

    def _count_pending(self, model: bh.TeamModel) -> None:
        """Show the counter increments that are due."""
        while model.pending and self.t >= model.pending[0][0]:
            _, points, drv = model.pending.pop(0)
            self.incidents_team += points
            self.incidents_driver[drv] += points

    def _fatigue_independent(
        self, period: float, driving: BOOL, model: bh.TeamModel
    ) -> None:
        p = self.p
        o = self.opts
        k = 1.0 - math.exp(-period * o.fatigue / model.race.opponent_tau_s)
        self.fatigue[driving] += (1.0 - self.fatigue[driving]) * k
        drv = self.entries[p].driver_idx
        df = self.driver_fatigue
        for d, process in enumerate(model.fatigue):
            df[d] = process.step(period, d == drv and bool(driving[p]), o.fatigue)
        self.fatigue[p] = df[drv]
        step = int(df[drv] * 10)
        if step != self._fatigue_step:
            self._fatigue_step = step
            self._event(
                TruthKind.FATIGUE,
                p,
                {"level": round(float(df[drv]), 4), "driver": self.entries[p].driver},
            )

    def _contact_partner(self, i: int) -> int:
        ahead, behind = int(self.ahead_of[i]), int(self.behind_of[i])
        if self.gap_ahead[i] <= self.gap_behind[i]:
            return ahead if self.gap_ahead[i] < CONTACT_RANGE_M else -1
        return behind if self.gap_behind[i] < CONTACT_RANGE_M else -1

    def _escalate(self, i: int) -> None:
        kind = int(self.inc_kind[i])
        if self.model is not None and i == self.p:
            to = int(self._esc_to[i])
            self._esc_to[i] = NONE
            if to != NONE:
                self._stage(i, to, cause=None)
                self._plan_next(i, None)
            return
        if kind == OFF_TRACK:
            self._stage(i, SPIN, cause=None)
        elif kind == SPIN:
            partner = self._contact_partner(i)
            if partner >= 0:
                self._stage(i, CONTACT, cause=None)
            else:
                self._esc_at[i] = np.inf

    def _end_incident(self, i: int) -> None:
        self.inc_kind[i] = NONE
        self.inc_off[i] = False
        self.version += 1
        self._esc_at[i] = np.inf
        self._n_inc -= 1
        window = SEQUENCE_CLOSE_S
        if self.model is not None and i == self.p:
            window = self.model.race.sequence_s
        self._seq_close[i] = self.t + window

    def _damage(self, i: int, kind: int) -> None:
        rng = self.rng
        repair = opt = 0.0
        shape = self.inc_shape.get(i) if self.model is not None else None
        if shape is not None and i == self.p:
            r = self.model.rng if self.model is not None else rng
            dv = shape.decel * shape.impact_s
            if kind == CONTACT:
                if r.random() < min(0.9, 0.15 * dv):
                    repair = float(r.uniform(5.0, 12.0 * dv))
                opt = float(r.uniform(3.0, 15.0 * dv))
            elif kind == LIGHT_CONTACT and r.random() < 0.2:
                opt = float(r.uniform(2.0, 8.0))
            elif kind == SPIN and shape.surface_off and r.random() < 0.3:
                opt = float(r.uniform(4.0, 25.0))
        elif kind == CONTACT:
            if rng.random() < 0.35:  # otherwise a light hit: optional repairs only
                repair = float(rng.uniform(8.0, 40.0))
            opt = float(rng.uniform(10.0, 60.0))
        elif kind == SPIN and rng.random() < 0.25:
            opt = float(rng.uniform(5.0, 20.0))
        if kind in (SPIN, CONTACT, LIGHT_CONTACT):  # flat spots
            self.tread[i] = np.maximum(self.tread[i] - rng.uniform(0.005, 0.02), 0.02)
        if repair == 0.0 and opt == 0.0:
            return
        self.repair[i] += repair
        self.opt_repair[i] += opt
        self._event(
            TruthKind.DAMAGE,
            i,
            {
                "cause": INCIDENT_NAMES[kind],
                "repair_s": round(repair, 3),
                "optional_repair_s": round(opt, 3),
                "repair_total_s": round(float(self.repair[i]), 3),
                "lap_time_loss": round(
                    min(
                        DAMAGE_LOSS_PER_S
                        * float(self.repair[i] + 0.3 * self.opt_repair[i]),
                        0.08,
                    ),
                    5,
                ),
            },
        )
        if repair > 0 and self.phase[i] == RACING and not self.checkered:
            self._request_pit(i, ("repair",))

    # ------------------------------------------------------------------ yellows
    def _start_fcy(self, cause: str, car: int) -> None:
        if self.fcy is not None or self.checkered:
            return
        if self.t - self._fcy_ended < FCY_MIN_GAP_S or self.t < 60.0:
            return
        if self.laps_to_go() <= 4:
            return
        laps = int(self.rng.integers(2, 5))
        self.fcy = Fcy(self.t, laps, cause, car)
        self._event(TruthKind.FCY_START, car, {"cause": cause, "laps": laps})
        # Cars already racing may now want to stop under the yellow.
        for i in np.flatnonzero(self.phase == RACING):
            if not self.finished[i]:
                self._pit_decision(int(i))

    def _end_fcy(self) -> None:
        fcy = self.fcy
        if fcy is None:
            return
        self.fcy = None
        self._fcy_ended = self.t
        self.green_until = self.t + 5.0
        self.fcy_cap = np.full(self.n, np.inf)
        self._event(
            TruthKind.FCY_END,
            fcy.cause_car,
            {"duration_s": round(self.t - fcy.started, 3), "cause": fcy.cause},
        )

    @property
    def n_incidents(self) -> int:
        """Cars with an incident in progress."""
        return self._n_inc

    # ------------------------------------------------------------------ truth
    def _event(self, kind: TruthKind, car: int, data: dict[str, TruthValue]) -> None:
        lap = int(self.lap[car]) if car >= 0 else int(self.lap.max())
        self.truth.append(TruthEvent(self.t, kind, car, lap, data))

    def _player_lap_truth(self, crossing: float, fuel_used: float) -> None:
        p = self.p
        acc = self._lap_acc
        tread = self.tread[p]
        self.truth.append(
            TruthEvent(
                crossing,
                TruthKind.LAP,
                p,
                int(self.lap[p]) - 1,
                {
                    "lap_time": round(float(self.last_lap[p]), 6),
                    "fuel_used_l": round(fuel_used, 5),
                    "pit": bool(self._lap_pit[p]),
                    "fcy": acc.fcy or self.fcy is not None,
                    "incidents": acc.incidents,
                    "draft_s": round(acc.draft_s, 2),
                    "fatigue": round(float(self.fatigue[p]), 4),
                    "tread_mean": round(float(tread.mean()), 5),
                    "tread_min": round(float(tread.min()), 5),
                    "loss": round(float(self.loss[p]), 5),
                    "driver": self.entries[p].driver,
                    "position": int(self.position[p]),
                },
            )
        )
        self._lap_acc = _LapAccumulator()


@dataclass(slots=True)
class _LapAccumulator:
    draft_s: float = 0.0
    fcy: bool = False
    incidents: int = 0


def _classes(entries: list[Entry]) -> list[object]:
    seen: list[object] = []
    for e in entries:
        if e.car_class not in seen:
            seen.append(e.car_class)
    return seen
