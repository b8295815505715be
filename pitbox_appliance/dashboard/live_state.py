"""The dashboard's view of the live cars: one MQTT subscription, typed snapshots per car."""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from driver_pc.protocol.topics import ALL_EVENTS, ALL_LIVE_STATE

if TYPE_CHECKING:
    from driver_pc.protocol.mqtt import MqttConnection

logger = logging.getLogger(__name__)

#: How much pedal history the traces keep (seconds of session time).
TRACE_WINDOW_S = 10.0
#: A state older than this (by the core's publish clock) is shown as stale.
STALE_AFTER_S = 3.0
#: Live payloads are a few KB; anything far bigger is not ours.
MAX_PAYLOAD_BYTES = 256 * 1024
_LOG_EVERY_REJECT = 100
#: How many of each car's latest events (alerts) the dashboard keeps.
EVENTS_KEPT = 30


class LiveStateError(ValueError):
    """A live-state payload that cannot be decoded; ``reason`` is a short counter key."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class LapRow:
    """One completed lap as the lap table shows it."""

    lap: int
    time: float | None
    fuel: float | None
    pit: bool
    driver: str


@dataclass(frozen=True, slots=True)
class ShimInfo:
    """The last health report of the shim feeding a car."""

    state: str
    adapter: str
    ticks: int
    spool_depth: int


@dataclass(frozen=True, slots=True)
class CarState:
    """One car's live state as published by the core, decoded once."""

    car: str
    session_key: str
    track: str
    driver: str
    source: str
    session_time: float
    lap: int
    lap_dist_pct: float
    speed_ms: float
    throttle: float
    brake: float
    gear: int
    rpm: float
    fuel_l: float | None
    on_pit_road: bool
    lap_current_time: float | None
    last_lap_time: float | None
    best_lap_time: float | None
    laps_completed: int
    fuel_per_lap: float | None
    stint: int
    recent_laps: tuple[LapRow, ...]
    published_at: float
    shim: ShimInfo | None
    #: How many states of this car the dashboard has accepted (changes on every update).
    seq: int = 0
    #: GPS position in degrees; None when the sim sends none (or 0/0, "no fix").
    lat: float | None = None
    lon: float | None = None
    #: The other cars on track (live iRacing data only; empty from .ibt replays).
    others: tuple[OtherCar, ...] = ()
    #: Our race position (iRacing's ``PlayerCarPosition``); None when not known.
    position: int | None = None
    #: Steering wheel angle in radians (None when the sim sends none).
    steering: float | None = None
    #: The core's strategy figures as published (fuel plan, and as they land: race,
    #: pit loss, tyres, driver swap, stint plan, rejoin); read it with ``strategy_part``.
    strategy: tuple[tuple[str, Any], ...] = ()

    def strategy_part(self, key: str) -> Any:
        """One strategy figure (``"pit_loss_s"``, ``"tyres"`` …); None when absent."""
        return next((v for k, v in self.strategy if k == key), None)

    @property
    def speed_kmh(self) -> float:
        return self.speed_ms * 3.6

    @property
    def laps_of_fuel(self) -> float | None:
        """Laps the fuel in the tank lasts at the recent green-lap consumption."""
        if self.fuel_l is None or not self.fuel_per_lap or self.fuel_per_lap <= 0:
            return None
        return self.fuel_l / self.fuel_per_lap

    def age_s(self, now: float | None = None) -> float:
        """Seconds since the core published this state (wall clock)."""
        return max(0.0, (time.time() if now is None else now) - self.published_at)

    @classmethod
    def from_json(cls, payload: bytes) -> CarState:
        """Decode a ``pitbox/v1/live/<car>/state`` payload; raises LiveStateError."""
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise LiveStateError("too_big", f"{len(payload)} bytes")
        try:
            data = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise LiveStateError("not_json", str(exc)) from None
        if not isinstance(data, dict):
            raise LiveStateError("not_object", type(data).__name__)
        try:
            return cls._from_dict(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise LiveStateError("bad_field", repr(exc)) from None

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> CarState:
        values = data.get("values") or {}
        if not isinstance(values, dict):
            raise TypeError("values is not an object")
        car = data["car"]
        if not isinstance(car, str) or not car:
            raise ValueError("car missing")
        lat, lon = _position(values)
        return cls(
            car=car,
            session_key=str(data.get("session_key", "")),
            track=str(data.get("track") or ""),
            driver=str(data.get("driver") or ""),
            source=str(data.get("source") or ""),
            session_time=_num(values.get("SessionTime")) or 0.0,
            lap=int(_num(values.get("Lap")) or 0),
            lap_dist_pct=min(1.0, max(0.0, _num(values.get("LapDistPct")) or 0.0)),
            speed_ms=max(0.0, _num(values.get("Speed")) or 0.0),
            throttle=min(1.0, max(0.0, _num(values.get("Throttle")) or 0.0)),
            brake=min(1.0, max(0.0, _num(values.get("Brake")) or 0.0)),
            gear=int(_num(values.get("Gear")) or 0),
            rpm=_num(values.get("RPM")) or 0.0,
            fuel_l=_num(values.get("FuelLevel")),
            on_pit_road=bool(_num(values.get("OnPitRoad"))),
            lap_current_time=_num(values.get("LapCurrentLapTime")),
            last_lap_time=_num(data.get("last_lap_time")),
            best_lap_time=_num(data.get("best_lap_time")),
            laps_completed=int(_num(data.get("laps_completed")) or 0),
            fuel_per_lap=_num(data.get("fuel_per_lap")),
            stint=int(_num(data.get("stint")) or 0),
            recent_laps=tuple(_lap_row(e) for e in data.get("recent_laps") or ()),
            published_at=_num(data.get("published_at")) or time.time(),
            shim=_shim_info(data.get("shim")),
            lat=lat,
            lon=lon,
            others=tuple(_other_car(o) for o in data.get("others") or ()),
            position=_position_of(values.get("PlayerCarPosition")),
            steering=_num(values.get("SteeringWheelAngle")),
            strategy=_strategy(data.get("strategy")),
        )


@dataclass(frozen=True, slots=True)
class OtherCar:
    """Another car on track, from iRacing's ``CarIdx*`` arrays."""

    idx: int
    number: str
    lap_dist_pct: float
    position: int
    on_pit_road: bool
    #: Class of the car (iRacing's ``CarClassID``) and its colour as ``#rrggbb``.
    class_id: int | None = None
    class_color: str | None = None
    #: Laps started (None when the core does not send it) and laps down on us.
    lap: int | None = None
    laps_down: int | None = None
    #: Pit stops seen so far, and the last one (kind, duration, lap) as the core sent it.
    stops: int | None = None
    last_stop: tuple[tuple[str, Any], ...] = ()
    laps_since_stop: int | None = None
    class_position: int | None = None

    @property
    def distance(self) -> float | None:
        """Laps run including the current fraction, when the lap is known."""
        return None if self.lap is None else self.lap + self.lap_dist_pct


_HEX = re.compile(r"#?([0-9a-fA-F]{6})")


def _other_car(entry: Any) -> OtherCar:
    if not isinstance(entry, dict):
        raise TypeError("others entry is not an object")
    last_stop = entry.get("last_stop")
    return OtherCar(
        idx=int(entry["idx"]),
        number=str(entry.get("number") or entry["idx"]),
        lap_dist_pct=min(1.0, max(0.0, float(entry["pct"]))),
        position=int(entry.get("pos") or 0),
        on_pit_road=bool(entry.get("pit")),
        class_id=_int_or_none(entry.get("class_id")),
        class_color=_color(entry.get("class_color")),
        lap=_int_or_none(entry.get("lap")),
        laps_down=_int_or_none(entry.get("laps_down")),
        stops=_int_or_none(entry.get("stops")),
        last_stop=tuple(last_stop.items()) if isinstance(last_stop, dict) else (),
        laps_since_stop=_int_or_none(entry.get("laps_since_stop")),
        class_position=_int_or_none(entry.get("class_pos")),
    )


def _int_or_none(value: Any) -> int | None:
    number = _num(value)
    return None if number is None else int(number)


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


def _position_of(value: Any) -> int | None:
    number = _num(value)
    return int(number) if number is not None and number >= 1 else None


def _strategy(value: Any) -> tuple[tuple[str, Any], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise TypeError("strategy is not an object")
    return tuple((str(k), v) for k, v in value.items())


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """One event from ``pitbox/v1/live/<car>/events``, as the alerts list shows it."""

    kind: str
    car: str
    received_at: float
    payload: tuple[tuple[str, Any], ...]

    def get(self, key: str) -> Any:
        return next((v for k, v in self.payload if k == key), None)

    @classmethod
    def from_json(cls, payload: bytes, received_at: float) -> LiveEvent:
        """Decode ``{"kind", "car", ...payload}``; raises LiveStateError."""
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise LiveStateError("too_big", f"{len(payload)} bytes")
        try:
            data = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise LiveStateError("not_json", str(exc)) from None
        if not isinstance(data, dict):
            raise LiveStateError("not_object", type(data).__name__)
        kind, car = data.pop("kind", None), data.pop("car", None)
        if not isinstance(kind, str) or not kind or not isinstance(car, str) or not car:
            raise LiveStateError("bad_event", "kind or car missing")
        return cls(kind, car, received_at, tuple(data.items()))


@dataclass(frozen=True, slots=True)
class Trace:
    """Throttle and brake (0..100 %) over the last seconds, time relative to now (≤ 0)."""

    rows: tuple[tuple[float, int, int], ...]


@dataclass(frozen=True, slots=True)
class InputTrace:
    """The driver's inputs over the last seconds, time relative to now (≤ 0).

    Columns: time, throttle %, brake %, steering degrees (+ left, as iRacing counts
    it), speed km/h, gear.
    """

    rows: tuple[tuple[float, int, int, int, int, int], ...]


class LiveState:
    """The latest state of every car, fed by one MQTT subscription.

    ``handle`` runs on paho's network thread; everything else is called from the UI
    loop. Snapshots are immutable, so readers take a reference under the lock and
    never see a half-written car.
    """

    def __init__(self, trace_window_s: float = TRACE_WINDOW_S) -> None:
        self.trace_window_s = trace_window_s
        self._lock = threading.Lock()
        self._cars: dict[str, CarState] = {}
        self._history: dict[str, deque[tuple[float, int, int, int, int, int]]] = {}
        self._trace_cache: dict[str, tuple[int, InputTrace, Trace]] = {}
        self._events: dict[str, deque[LiveEvent]] = {}
        #: Events accepted so far (all cars); pages compare it to see news.
        self.events_seen = 0
        #: Payloads received on the live-state topics (accepted or not).
        self.updates = 0
        self.rejected: Counter[str] = Counter()
        #: When the last live state was rejected, and why (the header shows it).
        self.last_rejection: tuple[float, str] | None = None
        self.connected = False

    def attach(self, connection: MqttConnection) -> None:
        """Subscribe once to every car's live state and follow the broker link."""
        connection.subscribe(ALL_LIVE_STATE, 0, self.handle)
        connection.subscribe(ALL_EVENTS, 1, self.handle_event)
        connection.on_connection_change = self.set_connected

    def set_connected(self, connected: bool) -> None:
        self.connected = connected

    def handle(self, topic: str, payload: bytes, _mid: int = 0) -> None:
        """Take one live-state message (paho thread); bad payloads are counted, never raised."""
        with self._lock:
            self.updates += 1
        try:
            state = CarState.from_json(payload)
            topic_car = _car_of_topic(topic)
            if topic_car is not None and topic_car != state.car:
                raise LiveStateError(
                    "car_mismatch", f"{state.car!r} on topic of {topic_car!r}"
                )
        except LiveStateError as exc:
            with self._lock:
                self.rejected[exc.reason] += 1
                self.last_rejection = (time.time(), exc.reason)
                count = self.rejected.total()
            if count == 1 or count % _LOG_EVERY_REJECT == 0:
                logger.warning(
                    "rejected live state on %s (%d so far): %s", topic, count, exc
                )
            return
        with self._lock:
            self._accept(state)

    def handle_event(self, topic: str, payload: bytes, _mid: int = 0) -> None:
        """Take one event message (paho thread); bad ones are counted, never raised."""
        try:
            event = LiveEvent.from_json(payload, time.time())
            topic_car = _car_of_topic(topic, "events")
            if topic_car is not None and topic_car != event.car:
                raise LiveStateError(
                    "car_mismatch", f"{event.car!r} on topic of {topic_car!r}"
                )
        except LiveStateError as exc:
            with self._lock:
                self.rejected[f"event_{exc.reason}"] += 1
            logger.warning("rejected event on %s: %s", topic, exc)
            return
        with self._lock:
            kept = self._events.setdefault(event.car, deque(maxlen=EVENTS_KEPT))
            kept.appendleft(event)
            self.events_seen += 1

    def events(self, car: str) -> tuple[LiveEvent, ...]:
        """The latest events of ``car``, newest first."""
        with self._lock:
            return tuple(self._events.get(car, ()))

    def car_ids(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(sorted(self._cars))

    def car(self, car: str) -> CarState | None:
        with self._lock:
            return self._cars.get(car)

    def freshest_car(self) -> str | None:
        """The car whose state was published last (judges the header's link chip)."""
        with self._lock:
            if not self._cars:
                return None
            return max(self._cars.values(), key=lambda s: s.published_at).car

    def default_car(self) -> str | None:
        """The car a new page shows: the first live one by name, else the freshest."""
        now = time.time()
        with self._lock:
            live = sorted(
                c for c, s in self._cars.items() if s.age_s(now) <= STALE_AFTER_S
            )
        return live[0] if live else self.freshest_car()

    def trace(self, car: str) -> Trace:
        """The pedal trace of ``car``; computed once per update and shared by all pages."""
        return self._traces(car)[1]

    def inputs(self, car: str) -> InputTrace:
        """Throttle, brake, steering, speed and gear of ``car`` (the split view's trace)."""
        return self._traces(car)[0]

    def _traces(self, car: str) -> tuple[InputTrace, Trace]:
        """Both traces of ``car``, built once per update from its input history."""
        with self._lock:
            state = self._cars.get(car)
            if state is None:
                return InputTrace(()), Trace(())
            cached = self._trace_cache.get(car)
            if cached is not None and cached[0] == state.seq:
                return cached[1], cached[2]
            now = state.session_time
            rows = tuple(
                (round(r[0] - now, 2), r[1], r[2], r[3], r[4], r[5])
                for r in self._history[car]
            )
            inputs = InputTrace(rows)
            trace = Trace(tuple((r[0], r[1], r[2]) for r in rows))
            self._trace_cache[car] = (state.seq, inputs, trace)
            return inputs, trace

    # ---- helpers (called with the lock held) ------------------------------------------
    def _accept(self, state: CarState) -> None:
        previous = self._cars.get(state.car)
        history = self._history.setdefault(state.car, deque())
        if previous is not None and (
            previous.session_key != state.session_key
            or state.session_time < previous.session_time
        ):
            history.clear()  # a new session or a replay restart: the old trace is void
        seq = previous.seq + 1 if previous is not None else 1
        self._cars[state.car] = replace(state, seq=seq)
        # A retained state arrives again on every (re)subscribe: add each instant once.
        if not history or state.session_time > history[-1][0]:
            steer = state.steering if state.steering is not None else 0.0
            history.append(
                (
                    state.session_time,
                    round(state.throttle * 100),
                    round(state.brake * 100),
                    round(math.degrees(steer)),
                    round(state.speed_kmh),
                    state.gear,
                )
            )
        horizon = state.session_time - self.trace_window_s
        while history and history[0][0] < horizon:
            history.popleft()


def _car_of_topic(topic: str, leaf: str = "state") -> str | None:
    parts = topic.split("/")
    if len(parts) == 5 and parts[:3] == ["pitbox", "v1", "live"] and parts[4] == leaf:
        return parts[3]
    return None


def _num(value: Any) -> float | None:
    """A finite float, or None for missing, null, non-numeric or NaN values."""
    if value is None or isinstance(value, str):
        return None
    if isinstance(value, bool):
        return float(value)
    if not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    number = float(value)
    return number if math.isfinite(number) else None


def _position(values: dict[str, Any]) -> tuple[float | None, float | None]:
    """Latitude and longitude, or (None, None) without a usable fix."""
    lat, lon = _num(values.get("Lat")), _num(values.get("Lon"))
    if lat is None or lon is None or (lat == 0 and lon == 0) or abs(lat) > 90:
        return None, None
    return lat, lon


def _lap_row(entry: Any) -> LapRow:
    if not isinstance(entry, dict):
        raise TypeError("recent_laps entry is not an object")
    return LapRow(
        lap=int(_num(entry.get("lap")) or 0),
        time=_num(entry.get("time")),
        fuel=_num(entry.get("fuel")),
        pit=bool(entry.get("pit")),
        driver=str(entry.get("driver") or ""),
    )


def _shim_info(status: Any) -> ShimInfo | None:
    if not isinstance(status, dict):
        return None
    return ShimInfo(
        state=str(status.get("state") or "unknown"),
        adapter=str(status.get("adapter") or ""),
        ticks=int(_num(status.get("ticks")) or 0),
        spool_depth=int(_num(status.get("spool_depth")) or 0),
    )
