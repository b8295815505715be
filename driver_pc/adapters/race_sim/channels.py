"""The simulator's channel sets (iRacing's own names) and iRacing's flag and surface codes."""

from __future__ import annotations

from enum import IntEnum, IntFlag

from driver_pc.protocol.channels import ChannelKind, ChannelSpec

K = ChannelKind
CAR_SLOTS = 64  # iRacing's CarIdx* arrays always have 64 entries

# The single-car channel set (v1). Unchanged when the simulator runs without opponents.
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

CORNERS = ("LF", "RF", "LR", "RR")
TREAD = ("L", "M", "R")
WEAR_CHANNELS = tuple(f"{c}wear{p}" for c in CORNERS for p in TREAD)
_TREAD_TEXT = {"L": "left", "M": "middle", "R": "right"}

# Player-car channels added by the endurance model, as iRacing names and types them.
RACE_CHANNELS: tuple[ChannelSpec, ...] = (
    ChannelSpec("SessionFlags", K.BITFIELD, 1, "irsdk_Flags", "Session flags"),
    ChannelSpec(
        "SessionLapsRemainEx", K.INT, 1, "", "New improved laps left till session ends"
    ),
    ChannelSpec("PlayerCarPosition", K.INT, 1, "", "Players position in race"),
    ChannelSpec(
        "PlayerCarClassPosition", K.INT, 1, "", "Players class position in race"
    ),
    ChannelSpec(
        "PlayerCarTeamIncidentCount",
        K.INT,
        1,
        "",
        "Players team incident count for this session",
    ),
    ChannelSpec(
        "PlayerCarDriverIncidentCount",
        K.INT,
        1,
        "",
        "Teams current drivers incident count for this session",
    ),
    ChannelSpec(
        "PlayerTrackSurface",
        K.INT,
        1,
        "irsdk_TrkLoc",
        "Players car track surface type",
    ),
    ChannelSpec(
        "PlayerCarInPitStall",
        K.BOOL,
        1,
        "",
        "Players car is properly in their pitstall",
    ),
    ChannelSpec(
        "PitstopActive", K.BOOL, 1, "", "Is the player getting pit stop service"
    ),
    ChannelSpec(
        "PitRepairLeft",
        K.FLOAT,
        1,
        "s",
        "Time left for mandatory pit repairs if repairs are active",
    ),
    ChannelSpec(
        "PitOptRepairLeft",
        K.FLOAT,
        1,
        "s",
        "Time left for optional repairs if repairs are active",
    ),
    ChannelSpec(
        "EngineWarnings",
        K.BITFIELD,
        1,
        "irsdk_EngineWarnings",
        "Bitfield for warning lights",
    ),
    ChannelSpec("FuelUsePerHour", K.FLOAT, 1, "kg/h", "Engine fuel used instantaneous"),
    *(
        ChannelSpec(
            name,
            K.FLOAT,
            1,
            "%",
            f"{name[:2]} tire {_TREAD_TEXT[name[-1]]} percent tread remaining",
        )
        for name in WEAR_CHANNELS
    ),
)


def _car(name: str, kind: ChannelKind, unit: str, description: str) -> ChannelSpec:
    return ChannelSpec(name, kind, CAR_SLOTS, unit, description)


# The opponent arrays, one entry per CarIdx, named and typed as iRacing's live data.
CAR_IDX_CHANNELS: tuple[ChannelSpec, ...] = (
    _car("CarIdxLap", K.INT, "", "Laps started by car index"),
    _car("CarIdxLapCompleted", K.INT, "", "Laps completed by car index"),
    _car(
        "CarIdxLapDistPct", K.FLOAT, "%", "Percentage distance around lap by car index"
    ),
    _car(
        "CarIdxTrackSurface", K.INT, "irsdk_TrkLoc", "Track surface type by car index"
    ),
    _car("CarIdxOnPitRoad", K.BOOL, "", "On pit road between the cones by car index"),
    _car("CarIdxPosition", K.INT, "", "Cars position in race by car index"),
    _car("CarIdxClassPosition", K.INT, "", "Cars class position in race by car index"),
    _car("CarIdxClass", K.INT, "", "Cars class id by car index"),
    _car(
        "CarIdxF2Time",
        K.FLOAT,
        "s",
        "Race time behind leader or fastest lap time otherwise",
    ),
    _car(
        "CarIdxEstTime",
        K.FLOAT,
        "s",
        "Estimated time to reach current location on track",
    ),
    _car("CarIdxLastLapTime", K.FLOAT, "s", "Cars last lap time"),
    _car("CarIdxBestLapTime", K.FLOAT, "s", "Cars best lap time"),
    _car("CarIdxSteer", K.FLOAT, "rad", "Steering wheel angle by car index"),
    _car("CarIdxRPM", K.FLOAT, "revs/min", "Engine rpm by car index"),
    _car(
        "CarIdxGear",
        K.INT,
        "",
        "-1=reverse  0=neutral  1..n=current gear by car index",
    ),
)

# What an empty CarIdx slot reads in iRacing's live data (seen in the recorded dumps).
EMPTY_SLOT: dict[str, float] = {
    "CarIdxLap": -1,
    "CarIdxLapCompleted": -1,
    "CarIdxLapDistPct": -1.0,
    "CarIdxTrackSurface": -1,
    "CarIdxOnPitRoad": 0,
    "CarIdxPosition": 0,
    "CarIdxClassPosition": 0,
    "CarIdxClass": -1,
    "CarIdxF2Time": 0.0,
    "CarIdxEstTime": 0.0,
    "CarIdxLastLapTime": -1.0,
    "CarIdxBestLapTime": -1.0,
    "CarIdxSteer": 0.0,
    "CarIdxRPM": -1.0,
    "CarIdxGear": -1,
}


class SessionFlag(IntFlag):
    """IRacing's ``irsdk_Flags`` bits (as pyirsdk's ``Flags``) that the simulator sets."""

    CHECKERED = 0x1
    WHITE = 0x2
    GREEN = 0x4
    YELLOW = 0x8
    ONE_LAP_TO_GREEN = 0x200
    CAUTION = 0x4000
    CAUTION_WAVING = 0x8000
    SERVICIBLE = 0x40000
    REPAIR = 0x100000


class TrackSurface(IntEnum):
    """IRacing's ``irsdk_TrkLoc`` codes (``CarIdxTrackSurface``, ``PlayerTrackSurface``)."""

    NOT_IN_WORLD = -1
    OFF_TRACK = 0
    IN_PIT_STALL = 1
    APPROACHING_PITS = 2
    ON_TRACK = 3


class EngineWarning(IntFlag):
    """IRacing's ``irsdk_EngineWarnings`` bits that the simulator sets."""

    PIT_SPEED_LIMITER = 0x10
    MANDATORY_REPAIR_NEEDED = 0x80
    OPTIONAL_REPAIR_NEEDED = 0x100


class SessionState(IntEnum):
    """IRacing's ``irsdk_SessionState`` values the simulator uses."""

    RACING = 4
    CHECKERED = 5
