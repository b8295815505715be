"""The live state of a car on ``pitbox/v1/live/<car>/state``: one set of models for both ends.

The core builds these models (with ``model_construct``: it made every value itself, and
validation would cost on every publish at 20 Hz) and serialises them with
``LiveCarState.model_dump_json``; the dashboard and any other subscriber parse the JSON
with ``LiveCarState.model_validate_json``. Readers are tolerant the way a pit-wall
display must be: a missing or non-numeric figure reads as unknown (None), not as an
error, while a payload of the wrong shape (an object where a list belongs, a list where
a number belongs) is rejected as a whole.

The wire keys are the ones documented in docs/strategy.md and docs/dashboard.md; where
a Python name reads better, the wire key is the field's alias (``pct`` for
``OtherCar.lap_dist_pct``, the iRacing channel names for ``LiveValues``).
"""

from __future__ import annotations

import math
import re
import time
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)


# ---- tolerant readers of single values ---------------------------------------------------
def _number(value: Any) -> float | None:
    """A finite float; None for missing, null, text or NaN; ValueError for other shapes."""
    if value is None or isinstance(value, str):
        return None
    if isinstance(value, bool):
        return float(value)
    if not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {type(value).__name__}")
    number = float(value)
    return number if math.isfinite(number) else None


def _count(value: Any) -> int:
    return int(_number(value) or 0)


def _flag(value: Any) -> bool:
    return bool(value)


def _text(value: Any) -> str:
    return str(value or "")


def _state_text(value: Any) -> str:
    return str(value or "unknown")


def _object_or_none(value: Any) -> Any:
    """Optional sub-objects: anything but an object reads as absent."""
    return value if isinstance(value, dict | BaseModel) else None


def _empty_is_none(value: Any) -> Any:
    """``{}`` (what a core sent before the first lap) is as absent as null."""
    return value or None


def _stamp(value: Any) -> float:
    return _number(value) or time.time()


def _clamp01(value: float) -> float:
    return min(1.0, max(0.0, value))


_HEX = re.compile(r"#?([0-9a-fA-F]{6})")


def _color(value: Any) -> str | None:
    """``#rrggbb`` from ``"#ff0000"``, ``"ff0000"`` or iRacing's ``0xff0000``/int."""
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and 0 <= value <= 0xFFFFFF
    ):
        return f"#{value:06x}"
    if isinstance(value, str):
        match = _HEX.fullmatch(value.strip().removeprefix("0x").removeprefix("0X"))
        if match:
            return f"#{match.group(1).lower()}"
    return None


Number = Annotated[float | None, BeforeValidator(_number)]
Count = Annotated[int, BeforeValidator(_count)]
Flag = Annotated[bool, BeforeValidator(_flag)]
Text = Annotated[str, BeforeValidator(_text)]
Color = Annotated[str | None, BeforeValidator(_color)]


class PcRole(StrEnum):
    """What one of a car's PCs is doing: every team PC may run a shim for the car."""

    DRIVING = "driving"  # in the car: its telemetry is the car's
    STANDBY = "standby"  # connected and spectating: its CarIdx* arrays bridge gaps
    GONE = "gone"  # not heard from for a while


class _LiveModel(BaseModel):
    """Frozen, keyed by alias on the wire; unknown keys (a newer core) are ignored."""

    model_config = ConfigDict(
        frozen=True, extra="ignore", validate_by_name=True, serialize_by_alias=True
    )


class _PresentOnly(_LiveModel):
    """Serialised without the fields that are None: absent on the wire means unknown."""

    @model_serializer(mode="wrap")
    def _present(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


# ---- the car's own figures ---------------------------------------------------------------
class LiveValues(_PresentOnly):
    """The car's latest telemetry values, keyed on the wire by their iRacing channel."""

    session_time: Number = Field(None, alias="SessionTime")
    lap: Number = Field(None, alias="Lap")
    lap_dist_pct: Number = Field(None, alias="LapDistPct")
    speed: Number = Field(None, alias="Speed", description="m/s")
    throttle: Number = Field(None, alias="Throttle", description="0..1")
    brake: Number = Field(None, alias="Brake", description="0..1")
    gear: Number = Field(None, alias="Gear")
    rpm: Number = Field(None, alias="RPM")
    fuel_level: Number = Field(None, alias="FuelLevel", description="litres")
    on_pit_road: Number = Field(None, alias="OnPitRoad")
    lap_current_lap_time: Number = Field(None, alias="LapCurrentLapTime")
    steering_wheel_angle: Number = Field(
        None, alias="SteeringWheelAngle", description="radians, + left"
    )
    lat: Number = Field(None, alias="Lat", description="degrees")
    lon: Number = Field(None, alias="Lon", description="degrees")
    player_car_position: Number = Field(None, alias="PlayerCarPosition")
    player_car_my_incident_count: Number = Field(None, alias="PlayerCarMyIncidentCount")


#: The channels ``LiveValues`` carries, in the order they are declared.
LIVE_CHANNELS: tuple[str, ...] = tuple(
    str(f.alias) for f in LiveValues.model_fields.values()
)


class LapRow(_LiveModel):
    """One completed lap as the lap table shows it (newest first in ``recent_laps``).

    ``invalid``: reset, towed or given no time by iRacing (``time`` None);
    ``refuelled``: fuel rose during it (``fuel`` None).
    """

    lap: Count = 0
    time: Number = None
    fuel: Number = None
    pit: Flag = False
    driver: Text = ""
    invalid: Flag = False
    refuelled: Flag = False


class ShimInfo(_LiveModel):
    """The last health report of the shim feeding the car (``ShimStatus`` + API updates)."""

    state: Annotated[str, BeforeValidator(_state_text)] = "unknown"
    adapter: Text = ""
    ticks: Count = 0
    spool_depth: Count = 0
    session_key: Text = ""
    version: Text = ""


class ModelValue(_LiveModel):
    """One on-device model prediction: the value used, its source and both candidates."""

    value: float
    source: str
    model: float | None = None
    baseline: float | None = None


class Predictions(_PresentOnly):
    """The on-device models' outputs after the car's last lap (pitbox_appliance/models)."""

    lap: int | None = None
    next_lap_time_s: ModelValue | None = None
    fuel_next_lap_l: ModelValue | None = None
    fatigue_level: ModelValue | None = None
    compute_ms: float | None = None


# ---- the other cars ---------------------------------------------------------------------
class PitStop(_LiveModel):
    """A pit stop of another car as the core classified it."""

    lap: int | None = None
    duration_s: float | None = None
    kind: str | None = Field(None, description="fuel, tyres, repair or drive_through")


class OtherCar(_LiveModel):
    """Another car on track, from iRacing's ``CarIdx*`` arrays (docs/strategy.md).

    Up to 63 of these are read with every live state, so their fields are checked by
    pydantic's own validators (no Python per field) but for the lap fraction's clamp
    and the class colour's normalisation.
    """

    model_config = ConfigDict(coerce_numbers_to_str=True)

    idx: int
    number: str = Field("", description="car number; its CarIdx when unknown")
    lap_dist_pct: Annotated[float, AfterValidator(_clamp01)] = Field(alias="pct")
    position: int = Field(0, alias="pos", description="0 when not known")
    on_pit_road: bool = Field(False, alias="pit")
    class_position: int | None = Field(None, alias="class_pos")
    class_id: int | None = None
    class_color: Color = Field(None, description="#rrggbb")
    lap: int | None = Field(None, description="CarIdxLap: laps started")
    laps_down: int | None = Field(None, description="laps behind us (< 0: ahead)")
    stops: int | None = Field(None, description="stops seen since the core started")
    laps_since_stop: int | None = None
    stint_laps: int | None = Field(None, description="the stint its last stop ended")
    last_stop: PitStop | None = None

    @model_validator(mode="before")
    @classmethod
    def _number_defaults_to_idx(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("number") and "idx" in data:
            data = {**data, "number": str(data["idx"])}
        return data

    @property
    def distance(self) -> float | None:
        """Laps run including the current fraction, when the lap is known."""
        return None if self.lap is None else self.lap + self.lap_dist_pct


# ---- the strategy (docs/strategy.md, ``LiveCar.strategy``) -------------------------------
class _Part(BaseModel):
    """A part of the strategy: frozen; unknown keys of a newer core are ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class RaceSnapshot(_Part):
    """How much race is left for our car."""

    kind: str = "unknown"
    laps_total: int | None = None
    seconds_total: float | None = None
    time_left_s: float | None = None
    leader_lap: int | None = None
    laps_down: int = 0
    laps_left: int | None = None
    ends_by: str | None = None
    basis: str = ""


class PitLossSnapshot(_Part):
    """What a stop costs; ``s`` is the figure every plan uses."""

    s: float
    drive_through_s: float | None = None
    stationary_s: float | None = None
    stops_used: int = 0
    source: str = ""
    transit_s: float | None = None
    fill_rate_lps: float | None = None


class TyreSnapshot(_Part):
    """Tyre degradation and the tyre-change advice."""

    advice: str | None = None
    tyre_age_laps: int = 0
    loss_per_lap_s: float | None = None
    next_stint_laps: int | None = None
    loss_next_stint_s: float | None = None
    change_time_s: float | None = None
    basis: str = ""


class DriverSwapSnapshot(_Part):
    """The driver-swap advice and the rule that fired."""

    advice: str | None = None
    driver: str | None = None
    stint_s: float | None = None
    fatigue: float | None = None
    fatigue_source: str | None = None
    rule: str | None = None
    reason: str = ""
    next_driver: str | None = None
    drive_time_s: dict[str, float] = Field(default_factory=dict)


class StintPlanEntry(_Part):
    """A completed (``done``), current or planned stint."""

    stint: int
    start_lap: int | None = None
    end_lap: int | None = None
    fuel_to_add: float | None = None
    tyres: bool = False
    driver: str | None = None
    done: bool = False


class Rejoin(_Part):
    """Where we come out if we pit now (positions and gaps within our class)."""

    position: int
    class_position: int
    gap_ahead_s: float | None = None
    gap_behind_s: float | None = None
    car_ahead: str | None = None
    car_behind: str | None = None
    loss_s: float | None = Field(None, description="what this stop would cost")


class Recommendation(_Part):
    """The one action the pit wall is advised to take now."""

    action: str
    reason: str = ""
    lap: int | None = None


class StrategySnapshot(_Part):
    """The strategy engine's view after a lap: fuel plan at the top level, then its parts.

    Published in the live state (from the first completed lap on) and as the payload of
    ``strategy_recommendation`` events; None where a figure is not known yet.
    """

    fuel_per_lap: float | None = None
    green_laps_used: int = 0
    laps_of_fuel: float | None = None
    laps_remaining: float | None = None
    fuel_to_finish: float | None = None
    stops_needed: int | None = None
    fuel_to_add: float | None = None
    pit_window_open_lap: int | None = None
    pit_window_close_lap: int | None = None
    save_per_lap_to_skip_stop: float | None = None
    race: RaceSnapshot | None = None
    pit_loss_s: float | None = None
    pit_loss: PitLossSnapshot | None = None
    tyres: TyreSnapshot | None = None
    driver_swap: DriverSwapSnapshot | None = None
    stint_plan: tuple[StintPlanEntry, ...] = ()
    rejoin: Rejoin | None = None
    recommendation: Recommendation | None = None


#: The fuel plan's keys, at the top level of ``StrategySnapshot``.
FUEL_KEYS: tuple[str, ...] = (
    "fuel_per_lap",
    "green_laps_used",
    "laps_of_fuel",
    "laps_remaining",
    "fuel_to_finish",
    "stops_needed",
    "fuel_to_add",
    "pit_window_open_lap",
    "pit_window_close_lap",
    "save_per_lap_to_skip_stop",
)


# ---- the whole message -------------------------------------------------------------------
class LiveCarState(_LiveModel):
    """One car's live state as the core publishes it, 20 times a second at most."""

    car: str = Field(min_length=1)
    session_key: str = ""
    session_id: Count = 0
    track: Text = ""
    driver: Text = ""
    source: Text = ""
    values: Annotated[LiveValues, BeforeValidator(lambda v: v or {})] = Field(
        default_factory=LiveValues
    )
    last_lap_time: Number = None
    best_lap_time: Number = None
    laps_completed: Count = 0
    fuel_per_lap: Number = None
    strategy: Annotated[StrategySnapshot | None, BeforeValidator(_empty_is_none)] = (
        Field(None, description="null until the first lap is completed")
    )
    others: tuple[OtherCar, ...] = Field(
        (),
        description="the other cars on track (live data only); the core sends them "
        "apart, as a LiveField, and a reader lays them over the state",
    )
    stint: Count = 0
    recent_laps: tuple[LapRow, ...] = Field((), description="the last 10, newest first")
    predictions: Annotated[Predictions, BeforeValidator(lambda v: v or {})] = Field(
        default_factory=Predictions
    )
    published_at: Annotated[float, BeforeValidator(_stamp)] = Field(
        default_factory=time.time, description="unix time the core published it"
    )
    shim: Annotated[ShimInfo | None, BeforeValidator(_object_or_none)] = None
    pcs: dict[Text, PcRole] = Field(
        default_factory=dict,
        description="each PC streaming for the car (its source) and its role",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_nulls_for_lists(cls, data: Any) -> Any:
        if isinstance(data, dict) and (
            data.get("others") is None or data.get("recent_laps") is None
        ):
            data = dict(data)
            for key in ("others", "recent_laps"):
                if data.get(key) is None:
                    data.pop(key, None)
        return data


class LiveField(_LiveModel):
    """The other cars around one car, as of one refresh of the field (at most 4 Hz).

    Published on its own topic (``topics.live_field``) rather than in every
    ``LiveCarState``: 63 cars are ~14 KB of JSON, which 20 states a second would
    repeat unchanged. A reader keeps the newest field of each car and lays its
    ``others`` over the car's states of the same ``session_key``.
    """

    car: str = Field(min_length=1)
    session_key: str = ""
    others: tuple[OtherCar, ...] = ()
    published_at: Annotated[float, BeforeValidator(_stamp)] = Field(
        default_factory=time.time, description="unix time the core published it"
    )
