"""PitBox's race simulator adapter: one car at Martinsville (default) or a multi-car endurance race."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from numpy.lib import recfunctions
from pydantic import Field

from driver_pc.adapters.base import (
    AdapterOptions,
    Frames,
    SimAdapter,
    register_adapter,
)
from driver_pc.adapters.race_sim.broadcast import (
    BROADCAST_CHANNELS,
    COCKPIT_GROUP,
    BroadcastDirector,
    camera_info_yaml,
)
from driver_pc.adapters.race_sim.channels import (
    CAR_IDX_CHANNELS,
    CAR_SLOTS,
    RACE_CHANNELS,
    SIM_CHANNELS,
)
from driver_pc.adapters.race_sim.entries import (
    CAR_CLASSES,
    Entry,
    build_entries,
    session_yaml,
)
from driver_pc.adapters.race_sim.field import (
    PIT_ENTRY_M,
    PIT_EXIT_M,
    PIT_SPEED,
    TANK_L,
    FieldOptions,
    RaceField,
)
from driver_pc.adapters.race_sim.publish import FramePublisher
from driver_pc.adapters.race_sim.team_view import TEAM_CHANNELS, pc_of_driver, spectate
from driver_pc.adapters.race_sim.track import (
    ORIGIN_LAT,
    ORIGIN_LON,
    STRAIGHT_M,
    TRACK_M,
    TURN_RADIUS_M,
    TrackPoint,
    speed_profile,
    track_point,
    track_tables,
)
from driver_pc.adapters.race_sim.truth import TruthEvent, TruthKind
from driver_pc.protocol.channels import ChannelSpec

__all__ = [
    "DEFAULT_DRIVERS",
    "ORIGIN_LAT",
    "ORIGIN_LON",
    "PIT_ENTRY_M",
    "PIT_EXIT_M",
    "PIT_SPEED",
    "SIM_CHANNELS",
    "STRAIGHT_M",
    "TANK_L",
    "TRACK_M",
    "TURN_RADIUS_M",
    "RaceSimulatorAdapter",
    "TrackPoint",
    "TruthEvent",
    "TruthKind",
    "speed_profile",
    "track_point",
    "write_simulated_ibt",
]

DEFAULT_DRIVERS = ("Alex Sim", "Bea Sim", "Chris Sim")
MAX_BATCH = 600


class SimulatorOptions(AdapterOptions):
    """What ``pitbox-shim`` can tell the simulator (the class takes more)."""

    laps: int = Field(30, description="race length in laps")
    speed: float = Field(1.0, description="replay speed, 0 = fastest")
    seed: int = Field(1, description="random seed of the race")
    opponents: int = Field(0, description="cars besides ours (0-63)")
    start_fuel: float = Field(12.0, description="litres in the tank at the start")
    session_key: str | None = Field(None, description="override the session key")
    team_pcs: int = Field(
        1,
        description="team PCs streaming for the car (driver i sits at PC i mod N); "
        "the others see a spectator's view",
    )
    pc: int = Field(1, description="which of the team PCs this one is (1..team_pcs)")
    race_start: float | None = Field(
        None,
        description="wall-clock start of the race (Unix time): a PC started later "
        "joins the race where it is, as a sim that kept running",
    )


@register_adapter("simulator", options=SimulatorOptions)
class RaceSimulatorAdapter(SimAdapter):
    """Simulated race of one team car (and ``opponents``); ``speed`` × real time (0 = flat out).

    Every value is simulated, not recorded. The track is built from Martinsville
    Speedway's published dimensions and placed at its real latitude/longitude. Without
    opponents (the default) this is the v1 single-car model with its 27 channels: laps,
    fuel, pit stops and a driver swap at each stop. With ``opponents`` (or
    ``endurance=True``) the endurance model runs: a field in up to three classes as
    iRacing's ``CarIdx*`` arrays, fuel use with throttle and drafting, tyre wear,
    driver fatigue, incidents with 1x/2x/4x escalation, damage and repairs,
    full-course yellows, pit stops for every car. Every hidden cause is in
    :attr:`truth`. See docs/simulator.md.
    """

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
        opponents: int = 0,
        classes: int = 1,
        endurance: bool | None = None,
        tyre_wear: float = 1.0,
        fatigue: float = 1.0,
        incidents: float = 1.0,
        yellows: float = 1.0,
        drafting: float = 1.0,
        stints_per_driver: int = 1,
        player_car_idx: int = 0,
        grid_position: int | None = None,
        team_pcs: int = 1,
        pc: int = 1,
        race_start: float | None = None,
        broadcast: bool = False,
        truth_model: str = "classic",
    ) -> None:
        _check(0 <= opponents < CAR_SLOTS, "opponents must be 0..63")
        _check(1 <= classes <= len(CAR_CLASSES), "classes must be 1..3")
        _check(0 <= player_car_idx <= opponents, "player_car_idx must be 0..opponents")
        _check(laps >= 1, "laps must be at least 1")
        _check(len(drivers) >= 1, "drivers must name at least one driver")
        _check(stints_per_driver >= 1, "stints_per_driver must be at least 1")
        _check(team_pcs >= 1, "team_pcs must be at least 1")
        _check(1 <= pc <= team_pcs, "pc must be 1..team_pcs")
        _check(race_start is None or speed > 0, "race_start needs a real-time speed")
        _check(0.0 < start_fuel <= TANK_L, f"start_fuel must be in (0, {TANK_L}]")
        for name, value in (
            ("tyre_wear", tyre_wear),
            ("fatigue", fatigue),
            ("incidents", incidents),
            ("yellows", yellows),
            ("drafting", drafting),
        ):
            _check(value >= 0.0, f"{name} must be >= 0")
        self.laps = laps
        self.speed = speed
        self.seed = seed
        self.endurance = opponents > 0 if endurance is None else bool(endurance)
        self.team_pcs = team_pcs
        self.pc = pc
        self.race_start = race_start
        self._rng = np.random.default_rng(seed)
        self._key = session_key or f"sim-{seed}-{laps}"
        self._drivers = tuple(drivers)
        self._options = FieldOptions(
            laps=laps,
            race=self.endurance,
            start_fuel=float(start_fuel),
            player_idx=int(player_car_idx),
            grid_slot=None if grid_position is None else int(grid_position),
            tyre_wear=float(tyre_wear),
            fatigue=float(fatigue),
            incidents=float(incidents),
            yellows=float(yellows),
            drafting=float(drafting),
            stints_per_driver=int(stints_per_driver),
            model=truth_model,
            model_seed=int(seed),
        )
        self._tables = track_tables()
        self.entries: list[Entry] = build_entries(
            opponents + 1,
            player_car_idx,
            self._drivers,
            car_number,
            team_name,
            classes,
            np.random.default_rng([seed, 1]),
        )
        self._channels = (
            SIM_CHANNELS + RACE_CHANNELS + CAR_IDX_CHANNELS
            if self.endurance
            else SIM_CHANNELS
        )
        if team_pcs > 1:
            self._channels += TEAM_CHANNELS
        # A broadcast PC's camera (CamCarIdx, CamGroupNumber) cutting between cars.
        self.broadcast = broadcast and self.endurance
        if self.broadcast:
            self._channels += BROADCAST_CHANNELS
        self.director: BroadcastDirector | None = None
        self._yaml_cache = (-1, "")
        self.field: RaceField | None = None
        self.truth: list[TruthEvent] = []
        self.camera: tuple[str, int, int] | None = None

    @property
    def channels(self) -> tuple[ChannelSpec, ...]:
        return self._channels

    @property
    def session_key(self) -> str:
        return self._key

    @property
    def session_info_update(self) -> int:
        return 1 + (self.field.info_changes if self.field is not None else 0)

    def session_info_text(self) -> str:
        update = self.session_info_update
        if self._yaml_cache[0] != update:
            team = self.entries[self._options.player_idx]
            text = session_yaml(
                self.entries,
                self._options.player_idx,
                self.laps,
                self.endurance,
                TANK_L,
                self._tables.lap_time,
                # The PC's own user: the driver who sits at it.
                local_user_id=team.user_ids[(self.pc - 1) % len(team.user_ids)]
                if self.team_pcs > 1
                else None,
            )
            if self.broadcast:
                text += camera_info_yaml()
            self._yaml_cache = (update, text)
        return self._yaml_cache[1]

    def ticks(self) -> Iterator[Frames]:
        for entry in self.entries:
            entry.driver_idx = 0
        self.truth = []
        field = RaceField(
            self._options,
            self.entries,
            self._tables,
            self._rng,
            self.truth,
            self.tick_rate,
        )
        self.field = field
        batch = 1 if self.speed > 0 else MAX_BATCH
        publisher = FramePublisher(
            field, self._channels, batch, np.random.default_rng([self.seed, 2])
        )
        rows = publisher.rows
        director = (
            BroadcastDirector(np.random.default_rng([self.seed, 3]))
            if self.broadcast
            else None
        )
        self.director = director
        team = self.entries[self._options.player_idx]
        driving = np.ones(batch, dtype=bool)
        if self.race_start is not None:
            # One race clock for every PC: wait for the start, or, if the race began
            # before this PC's sim, run to where it is now, silently.
            if time.time() < self.race_start:
                time.sleep(self.race_start - time.time())
            now = (time.time() - self.race_start) * self.speed
            while not field.done and field.t < now:
                field.step()
        wall0 = time.monotonic() - field.t / self.speed if self.speed > 0 else 0.0
        k = 0
        while not field.done:
            field.step()
            publisher.write(k)
            driving[k] = pc_of_driver(team.driver_idx, self.team_pcs) == self.pc - 1
            if director is not None:
                director.write(field, rows, k)
                if self.team_pcs > 1 and driving[k]:
                    # The PC in the car looks through its own cockpit camera.
                    rows["CamCarIdx"][k] = self._options.player_idx
                    rows["CamGroupNumber"][k] = COCKPIT_GROUP
            k += 1
            if k == batch:
                publisher.flush(k)
                if self.team_pcs > 1:
                    spectate(rows, driving)
                if self.speed > 0:
                    delay = wall0 + field.t / self.speed - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                yield rows.copy()
                k = 0
        if k:
            publisher.flush(k)
            if self.team_pcs > 1:
                spectate(rows[:k], driving[:k])
            yield rows[:k].copy()

    def truth_of(
        self, kind: TruthKind | str, car_idx: int | None = None
    ) -> list[TruthEvent]:
        """Ground-truth events of one kind (and car), in time order."""
        return [
            e
            for e in self.truth
            if e.kind == kind and (car_idx is None or e.car_idx == car_idx)
        ]

    def camera_switch(self, car_number: str, group: int, camera: int) -> str:
        """Simulated broadcast camera: remembers the choice, as the sim would show it."""
        if not car_number:
            raise ValueError("camera: car number missing")
        self.camera = (car_number, group, camera)
        return f"simulator camera: car #{car_number}, group {group}, camera {camera}"


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(f"simulator: {message}")


def write_simulated_ibt(
    path: str | Path,
    laps: int = 5,
    seed: int = 1,
    *,
    car_idx_channels: bool = True,
    truth_path: str | Path | None = None,
    **options: object,
) -> Path:
    """Run the simulator as fast as possible and write the session as an ``.ibt`` file.

    Real disk files carry no ``CarIdx*`` arrays; with opponents this file does unless
    ``car_idx_channels`` is False. ``truth_path`` also writes the ground truth as JSON.
    """
    from driver_pc.adapters.ibt_file import IbtWriter

    sim = RaceSimulatorAdapter(laps=laps, speed=0, seed=seed, **options)  # type: ignore[arg-type]
    channels = [
        c for c in sim.channels if car_idx_channels or not c.name.startswith("CarIdx")
    ]
    names = [c.name for c in channels]
    keep_all = len(channels) == len(sim.channels)
    writer = IbtWriter(path, channels, sim.session_info_text(), sim.tick_rate)
    for rows in sim.ticks():
        writer.write(rows if keep_all else recfunctions.repack_fields(rows[names]))
    writer.close()
    if truth_path is not None:
        Path(truth_path).write_text(
            json.dumps([e.as_dict() for e in sim.truth], indent=1) + "\n"
        )
    return Path(path)
