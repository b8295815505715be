"""The simulated entry list (classes, teams, drivers) and the session-info YAML that describes it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from driver_pc.adapters.race_sim.track import ORIGIN_LAT, ORIGIN_LON, TRACK_M

PLAYER_USER_ID = 900001


@dataclass(frozen=True, slots=True)
class CarClass:
    """A car class: iRacing's id and names, and its pace against the track's profile."""

    class_id: int
    short_name: str
    screen_name: str
    pace: float  # speed factor: 0.96 = 4 % slower everywhere
    rel_speed: int


# Cars that race at Martinsville in iRacing; ids and paces are the simulator's own.
CAR_CLASSES: tuple[CarClass, ...] = (
    CarClass(4001, "SK Modified", "SK Modified (simulated)", 1.0, 100),
    CarClass(4002, "Late Model", "Late Model Stock (simulated)", 0.965, 93),
    CarClass(4003, "Street Stock", "Street Stock (simulated)", 0.93, 86),
)


@dataclass(slots=True)
class Entry:
    """One car: its CarIdx, number, team and drivers, and who is driving now."""

    car_idx: int
    car_number: str
    team_id: int
    team_name: str
    drivers: tuple[str, ...]
    user_ids: tuple[int, ...]
    car_class: CarClass
    driver_idx: int = 0

    @property
    def driver(self) -> str:
        return self.drivers[self.driver_idx]

    @property
    def user_id(self) -> int:
        return self.user_ids[self.driver_idx]


_FIRST = (
    "Ada Ben Cleo Dev Eli Fay Gus Hana Ivo Jun Kai Lena Milo Nia Otto Pia Quin Rosa "
    "Sami Tove Uma Vic Wren Xavi Yara Zeno"
).split()
_LAST = (
    "Arden Brandt Castillo Dufour Eklund Falk Garza Holm Ishida Jansen Kowal Lindqvist "
    "Moreau Novak Okafor Petrov Quist Ruiz Sato Tanaka Ueda Varga Weber Young Zielinski"
).split()
_TEAM_A = (
    "Apex Blue Copper Delta Echo Flat-out Granite Harbor Iron Jet Kestrel Lime "
    "Midnight North Orbit Pine Quartz Red Silver Tidal Union Vortex White Yellowline"
).split()
_TEAM_B = ("Racing", "Motorsport", "Endurance", "Speed Works", "Sim Team", "Autosport")


def build_entries(
    cars: int,
    player_idx: int,
    player_drivers: tuple[str, ...],
    player_number: str,
    player_team: str,
    classes: int,
    rng: np.random.Generator,
) -> list[Entry]:
    """Entries for CarIdx 0..cars-1; the player's car is ``player_idx`` in the top class."""
    numbers = [n for n in range(1, 100) if str(n) != player_number]
    picked = rng.permutation(numbers)[:cars]
    used_names: set[str] = set(player_drivers)
    entries = []
    opponent = 0
    for idx in range(cars):
        if idx == player_idx:
            ids = tuple(PLAYER_USER_ID + i for i in range(len(player_drivers)))
            entries.append(
                Entry(
                    idx,
                    player_number,
                    1,
                    player_team,
                    player_drivers,
                    ids,
                    CAR_CLASSES[0],
                )
            )
            continue
        opponent += 1
        n_drivers = int(rng.integers(2, 4))
        names: list[str] = []
        while len(names) < n_drivers:
            name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
            if name not in used_names:
                used_names.add(name)
                names.append(name)
        team = f"{_TEAM_A[opponent % len(_TEAM_A)]} {rng.choice(_TEAM_B)}"
        ids = tuple(910000 + 10 * idx + i for i in range(n_drivers))
        car_class = CAR_CLASSES[opponent % classes]
        entries.append(
            Entry(idx, str(picked[idx]), 100 + idx, team, tuple(names), ids, car_class)
        )
    return entries


def session_yaml(
    entries: list[Entry],
    player_idx: int,
    laps: int,
    race: bool,
    tank_l: float,
    lap_time: float,
    local_user_id: int | None = None,
) -> str:
    """Session info in iRacing's layout; ``race`` adds the multi-car and class keys.

    ``local_user_id`` is the user at this PC (``DriverUserID``): a teammate who is not
    driving sees the team car's current driver in ``Drivers`` but their own id here.
    """
    head = (
        "---\nWeekendInfo:\n TrackName: martinsville\n TrackDisplayName: "
        "Martinsville Speedway (simulated)\n TrackLength: "
        f"{TRACK_M / 1000:.4f} km\n TrackLatitude: {ORIGIN_LAT} m\n"
        f" TrackLongitude: {ORIGIN_LON} m\n SubSessionID: 0\n SessionID: 0\n"
        " TeamRacing: 1\n SimMode: simulator\n"
    )
    driver_info = f"DriverInfo:\n DriverCarIdx: {player_idx}\n"
    if race:
        n_classes = len({e.car_class.class_id for e in entries})
        head += f" NumCarClasses: {n_classes}\n WeekendOptions:\n  NumStarters: {len(entries)}\n"
        player = entries[player_idx]
        driver_info += (
            f" DriverUserID: {player.user_id if local_user_id is None else local_user_id}\n"
            " DriverCarIdleRPM: 900.000\n"
            f" DriverCarRedLine: 7500.000\n DriverCarFuelMaxLtr: {tank_l:.3f}\n"
            f" DriverCarMaxFuelPct: 1.000\n DriverCarEstLapTime: {lap_time:.4f}\n"
        )
    driver_info += " Drivers:\n"
    lines = []
    for e in entries if race else [entries[player_idx]]:
        text = (
            f"  - CarIdx: {e.car_idx}\n    UserName: {e.driver}\n    UserID: {e.user_id}\n"
            f'    TeamName: {e.team_name}\n    CarNumber: "{e.car_number}"\n'
            f"    CarScreenName: {e.car_class.screen_name}\n"
        )
        if race:
            cc = e.car_class
            text += (
                f"    TeamID: {e.team_id}\n    CarNumberRaw: {e.car_number}\n"
                f"    CarClassID: {cc.class_id}\n    CarClassShortName: {cc.short_name}\n"
                f"    CarClassRelSpeed: {cc.rel_speed}\n"
                f"    CarClassEstLapTime: {lap_time / cc.pace:.4f}\n"
                "    CarIsPaceCar: 0\n    CarIsAI: 0\n    IsSpectator: 0\n"
            )
        lines.append(text)
    session = (
        "SessionInfo:\n Sessions:\n - SessionNum: 0\n   SessionType: Race\n"
        f"   SessionLaps: {laps}\n"
    )
    if race:
        session += "   SessionName: RACE\n   SessionTime: unlimited\n"
    return head + driver_info + "".join(lines) + "\n" + session + "\n"
