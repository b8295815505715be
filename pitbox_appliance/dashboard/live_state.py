"""The dashboard's view of the live cars: one MQTT subscription, typed snapshots per car."""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError

from driver_pc.protocol.events import Event, EventError, EventKind
from driver_pc.protocol.live import (
    LapRow,
    LiveCarState,
    LiveField,
    OtherCar,
    ShimInfo,
)
from driver_pc.protocol.topics import ALL_EVENTS, ALL_LIVE_FIELD, ALL_LIVE_STATE

if TYPE_CHECKING:
    from driver_pc.protocol.mqtt import MqttConnection

__all__ = [
    "CarState",
    "InputTrace",
    "LapRow",
    "LiveEvent",
    "LiveState",
    "LiveStateError",
    "OtherCar",
    "ShimInfo",
    "Trace",
]

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


class CarState(LiveCarState):
    """One car's live state as published by the core, decoded once, with what pages derive.

    The fields are the contract's (``driver_pc.protocol.live.LiveCarState``): parsing
    is that model's, nothing here reads the JSON by hand.
    """

    #: How many states of this car the dashboard has accepted (changes on every update).
    _seq: int = PrivateAttr(0)

    @property
    def seq(self) -> int:
        return self._seq

    @classmethod
    def from_json(cls, payload: bytes) -> CarState:
        """Decode a ``pitbox/v1/live/<car>/state`` payload; raises LiveStateError."""
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise LiveStateError("too_big", f"{len(payload)} bytes")
        try:
            return cls.model_validate_json(payload)
        except ValidationError as exc:
            raise LiveStateError(_reason(exc), str(exc)) from None

    # ---- the car's own figures, as the pages show them -----------------------------------
    @property
    def session_time(self) -> float:
        return self.values.session_time or 0.0

    @property
    def lap(self) -> int:
        return int(self.values.lap or 0)

    @property
    def lap_dist_pct(self) -> float:
        return _unit(self.values.lap_dist_pct)

    @property
    def speed_ms(self) -> float:
        return max(0.0, self.values.speed or 0.0)

    @property
    def speed_kmh(self) -> float:
        return self.speed_ms * 3.6

    @property
    def throttle(self) -> float:
        return _unit(self.values.throttle)

    @property
    def brake(self) -> float:
        return _unit(self.values.brake)

    @property
    def gear(self) -> int:
        return int(self.values.gear or 0)

    @property
    def rpm(self) -> float:
        return self.values.rpm or 0.0

    @property
    def fuel_l(self) -> float | None:
        return self.values.fuel_level

    @property
    def on_pit_road(self) -> bool:
        return bool(self.values.on_pit_road)

    @property
    def lap_current_time(self) -> float | None:
        return self.values.lap_current_lap_time

    @property
    def steering(self) -> float | None:
        """Steering wheel angle in radians (None when the sim sends none)."""
        return self.values.steering_wheel_angle

    @property
    def position(self) -> int | None:
        """Our race position (iRacing's ``PlayerCarPosition``); None when not known."""
        number = self.values.player_car_position
        return int(number) if number is not None and number >= 1 else None

    @property
    def lat(self) -> float | None:
        """GPS latitude in degrees; None when the sim sends none (or 0/0, "no fix")."""
        return self._fix()[0]

    @property
    def lon(self) -> float | None:
        return self._fix()[1]

    @property
    def laps_of_fuel(self) -> float | None:
        """Laps the fuel in the tank lasts at the recent green-lap consumption."""
        if self.fuel_l is None or not self.fuel_per_lap or self.fuel_per_lap <= 0:
            return None
        return self.fuel_l / self.fuel_per_lap

    def age_s(self, now: float | None = None) -> float:
        """Seconds since the core published this state (wall clock)."""
        return max(0.0, (time.time() if now is None else now) - self.published_at)

    def _fix(self) -> tuple[float | None, float | None]:
        lat, lon = self.values.lat, self.values.lon
        if lat is None or lon is None or (lat == 0 and lon == 0) or abs(lat) > 90:
            return None, None
        return lat, lon


def _reason(exc: ValidationError) -> str:
    """The counter key of a rejected payload: not JSON, not an object, or a bad field."""
    first = exc.errors()[0]
    if first["type"] == "json_invalid":
        return "not_json"
    if first["type"] == "model_type" and not first["loc"]:
        return "not_object"
    return "bad_field"


def _unit(value: float | None) -> float:
    return min(1.0, max(0.0, value or 0.0))


class UnknownPayload(BaseModel):
    """The fields of an event kind this dashboard does not know (a newer core's)."""

    model_config = ConfigDict(extra="allow", frozen=True)


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """One event from ``pitbox/v1/live/<car>/events``, as the alerts list shows it.

    ``payload`` is the kind's model from ``driver_pc.protocol.events`` (``PAYLOADS``),
    or an ``UnknownPayload`` holding the fields of a kind not in ``EventKind``.
    """

    kind: str
    car: str
    received_at: float
    payload: BaseModel

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
        if kind not in _KINDS:
            return cls(kind, car, received_at, UnknownPayload.model_validate(data))
        try:
            event = Event.of(car, kind, data)
        except EventError as exc:
            raise LiveStateError("bad_payload", str(exc)) from None
        return cls(kind, car, received_at, event.payload)


_KINDS = frozenset(kind.value for kind in EventKind)


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
        # Each car's newest field (its others), laid over its states of that session.
        self._fields: dict[str, LiveField] = {}
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
        connection.subscribe(ALL_LIVE_FIELD, 0, self.handle_field)
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
            _check_car(topic, "state", state.car)
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
            self._accept(self._with_field(state))

    def handle_field(self, topic: str, payload: bytes, _mid: int = 0) -> None:
        """Take one car's field (paho thread); bad payloads are counted, never raised."""
        try:
            if len(payload) > MAX_PAYLOAD_BYTES:
                raise LiveStateError("too_big", f"{len(payload)} bytes")
            try:
                field = LiveField.model_validate_json(payload)
            except ValidationError as exc:
                raise LiveStateError(_reason(exc), str(exc)) from None
            _check_car(topic, "field", field.car)
        except LiveStateError as exc:
            self._reject("field", topic, exc)
            return
        with self._lock:
            self._fields[field.car] = field
            current = self._cars.get(field.car)
            if current is not None and current.session_key == field.session_key:
                self._cars[field.car] = current.model_copy(
                    update={"others": field.others}
                )

    def handle_event(self, topic: str, payload: bytes, _mid: int = 0) -> None:
        """Take one event message (paho thread); bad ones are counted, never raised."""
        try:
            event = LiveEvent.from_json(payload, time.time())
            _check_car(topic, "events", event.car)
        except LiveStateError as exc:
            self._reject("event", topic, exc)
            return
        with self._lock:
            kept = self._events.setdefault(event.car, deque(maxlen=EVENTS_KEPT))
            kept.appendleft(event)
            self.events_seen += 1

    def _reject(self, what: str, topic: str, exc: LiveStateError) -> None:
        with self._lock:
            self.rejected[f"{what}_{exc.reason}"] += 1
        logger.warning("rejected %s on %s: %s", what, topic, exc)

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
    def _with_field(self, state: CarState) -> CarState:
        """``state`` with its car's field of the same session laid over it.

        A state that carries others itself (an older core) keeps them.
        """
        field = self._fields.get(state.car)
        if state.others or field is None or field.session_key != state.session_key:
            return state
        return state.model_copy(update={"others": field.others})

    def _accept(self, state: CarState) -> None:
        previous = self._cars.get(state.car)
        history = self._history.setdefault(state.car, deque())
        if previous is not None and (
            previous.session_key != state.session_key
            or state.session_time < previous.session_time
        ):
            history.clear()  # a new session or a replay restart: the old trace is void
        state._seq = previous.seq + 1 if previous is not None else 1
        self._cars[state.car] = state
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


def _check_car(topic: str, leaf: str, car: str) -> None:
    """Raise LiveStateError when the payload's car is not the topic's."""
    topic_car = _car_of_topic(topic, leaf)
    if topic_car is not None and topic_car != car:
        raise LiveStateError("car_mismatch", f"{car!r} on topic of {topic_car!r}")


def _car_of_topic(topic: str, leaf: str = "state") -> str | None:
    parts = topic.split("/")
    if len(parts) == 5 and parts[:3] == ["pitbox", "v1", "live"] and parts[4] == leaf:
        return parts[3]
    return None
