"""Live publishing: each car's figures, which cars changed, their typed state, pending events.

The ingest thread updates a car's ``LiveCar`` and marks it dirty, and the live thread
lays the driving PC's newest frame over it (``LiveCar.fresh``, see ``live_path.py``).
The core's live thread asks ``LivePublisher.states`` for the states that are due; the
ingest thread publishes the events (``LivePublisher.take_events``) as they are stored.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from driver_pc.protocol.events import Event
from driver_pc.protocol.live import (
    LapRow,
    LiveCarState,
    LiveField,
    LiveValues,
    PcRole,
    Predictions,
    ShimInfo,
    StrategySnapshot,
)
from pitbox_appliance.strategy.engine import NO_OTHERS, OthersView

RECENT_LAPS = 10  # rows of the lap table in the live state
LIVE_TIMINGS_KEPT = 1200  # a minute of one car's fresh states, four cars' 15 s
_NEVER = float("-inf")


@dataclass
class LiveCar:
    """What the pit wall shows of one car right now (owned by the car's tracker)."""

    car: str
    session_key: str
    session_id: int
    track: str = ""
    driver: str = ""
    source: str = ""
    # The latest value of each live channel (LIVE_CHANNELS), by channel name.
    values: dict[str, float] = field(default_factory=dict)
    # The same, newer, from the live thread (``core/live_path.py``): the driving PC's
    # newest frame before ingest has stored it. Replaced whole, never changed.
    fresh: dict[str, float] = field(default_factory=dict)
    last_lap_time: float | None = None
    best_lap_time: float | None = None
    laps_completed: int = 0
    fuel_per_lap: float | None = None
    strategy: StrategySnapshot | None = None
    # The other cars on track (live data only), as of the last field refresh.
    others: OthersView = NO_OTHERS
    stint: int = 0
    recent_laps: tuple[LapRow, ...] = ()
    # On-device model outputs after the last lap (pitbox_appliance/models/advisor.py).
    predictions: Predictions | None = None
    # Every PC streaming for the car and its role (driving, standby, gone).
    pcs: dict[str, PcRole] = field(default_factory=dict)

    def record_lap(
        self,
        number: int,
        lap_time: float | None,
        fuel: float | None,
        pit: bool,
        *,
        invalid: bool = False,
        refuelled: bool = False,
        driver: str | None = None,
        late: bool = False,
    ) -> LapRow:
        """Count a completed lap in the figures shown; returns its lap-table row.

        An invalid lap has no time, as iRacing's ``LapLastLapTime`` -1: the last lap
        time is then None, and it is never the best. ``driver``: who drove it (None:
        the driver now). A ``late`` lap (reported after later ones) takes its place
        in the table and leaves the last lap time as it is.
        """
        self.laps_completed = max(self.laps_completed, number)
        if invalid:
            if not late:
                self.last_lap_time = None
        elif lap_time is not None:
            if not late:
                self.last_lap_time = lap_time
            if self.best_lap_time is None or lap_time < self.best_lap_time:
                self.best_lap_time = lap_time
        row = LapRow(
            lap=number,
            time=None if invalid else lap_time,
            fuel=fuel,
            pit=pit,
            driver=self.driver if driver is None else driver,
            invalid=invalid,
            refuelled=refuelled,
        )
        rows = (row, *self.recent_laps)
        if late:
            rows = tuple(sorted(rows, key=lambda r: r.lap, reverse=True))
        self.recent_laps = rows[:RECENT_LAPS]
        return row

    def news_key(self) -> tuple[Any, ...]:
        """What the pit wall shows besides the live channels, to tell news apart.

        The big parts are replaced whole when they change, never changed in place,
        so their identity tells; the PC roles are rebuilt on every batch: by value.
        """
        return (
            self.session_key,
            self.driver,
            self.source,
            self.laps_completed,
            self.last_lap_time,
            self.best_lap_time,
            self.fuel_per_lap,
            self.stint,
            id(self.strategy),
            id(self.others),
            id(self.recent_laps),
            id(self.predictions),
            tuple(sorted(self.pcs.items())),
        )

    def newest_values(self) -> dict[str, float]:
        """The live channels of the newest frame, from ingest or the live thread."""
        values, fresh = self.values, self.fresh
        if fresh.get("SessionTime", _NEVER) > values.get("SessionTime", _NEVER):
            return {**values, **fresh}
        return values

    def state(
        self, published_at: float, shim: ShimInfo | None, with_others: bool = True
    ) -> LiveCarState:
        """The typed state to publish now (its ``others`` empty unless ``with_others``).

        Built without validation (every part is made by the core and already typed;
        the others are typed once per field refresh, not per publish), and sharing the
        frozen parts rather than copying them: the previous dict view deep-copied 63
        opponents on every publish. The live thread sends the others apart
        (:meth:`field`), only when they change.
        """
        return LiveCarState.model_construct(
            car=self.car,
            session_key=self.session_key,
            session_id=self.session_id,
            track=self.track,
            driver=self.driver,
            source=self.source,
            values=LiveValues.model_construct(None, **self.newest_values()),
            last_lap_time=self.last_lap_time,
            best_lap_time=self.best_lap_time,
            laps_completed=self.laps_completed,
            fuel_per_lap=self.fuel_per_lap,
            strategy=self.strategy,
            others=self.others.cars if with_others else (),
            stint=self.stint,
            recent_laps=self.recent_laps,
            predictions=self.predictions or Predictions(),
            published_at=published_at,
            shim=shim,
            pcs=self.pcs,
        )

    def field(self, published_at: float) -> LiveField:
        """The other cars as of the field's last refresh, to publish apart."""
        return LiveField.model_construct(
            car=self.car,
            session_key=self.session_key,
            others=self.others.cars,
            published_at=published_at,
        )


@dataclass(frozen=True, slots=True)
class Publication:
    """What is due to go out: the cars' states and the events raised since the last."""

    states: tuple[LiveCarState, ...]
    events: tuple[Event, ...]


class LivePublisher:
    """Which cars changed, the events not yet published, and every shim's last status."""

    def __init__(self) -> None:
        self._dirty: set[str] = set()
        self._events: list[Event] = []
        self._status: dict[str, dict[str, Any]] = {}
        self._shims: dict[str, ShimInfo] = {}

    def mark_dirty(self, car: str) -> None:
        """``car`` has news: its state goes out at the next chance."""
        self._dirty.add(car)

    def emit(self, event: Event) -> None:
        """Queue an event for publishing."""
        self._events.append(event)

    def dirty(self) -> set[str]:
        return set(self._dirty)

    def has_events(self) -> bool:
        return bool(self._events)

    def event_mark(self) -> int:
        """Where the pending events end now (see ``drop_events_since``)."""
        return len(self._events)

    def drop_events_since(self, mark: int) -> None:
        """Forget the events raised since ``mark``: their message was not stored."""
        del self._events[mark:]

    def take(
        self, due: Iterable[str], cars: Mapping[str, LiveCar], now: float
    ) -> Publication:
        """The states of the ``due`` cars (no longer dirty) and every pending event."""
        states = self.states(due, cars, now)
        return Publication(states, self.take_events())

    def states(
        self,
        due: Iterable[str],
        cars: Mapping[str, LiveCar],
        now: float,
        with_others: bool = True,
    ) -> tuple[LiveCarState, ...]:
        """The states of the ``due`` cars, which are no longer dirty."""
        due = set(due)
        self._dirty -= due
        return tuple(
            cars[car].state(now, self._shims.get(cars[car].source), with_others)
            for car in due
            if car in cars
        )

    def take_events(self) -> tuple[Event, ...]:
        """Every event raised since the last take, oldest first."""
        events, self._events = tuple(self._events), []
        return events

    # ---- shim status -------------------------------------------------------------------
    def set_shim_status(self, source: str, status: Mapping[str, Any]) -> None:
        """The shim's own report (``ShimStatus``) replaces what was known of it."""
        self._status[source] = dict(status)
        self._shims[source] = ShimInfo.model_validate(self._status[source])

    def merge_shim_status(
        self, source: str, fields: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Update some fields of a source's status (the API's status update); the result."""
        status = self._status.setdefault(source, {})
        status.update(fields)
        self._shims[source] = ShimInfo.model_validate(status)
        return dict(status)

    def shim_statuses(self) -> dict[str, dict[str, Any]]:
        """Every source's status as reported (for the health endpoint)."""
        return {source: dict(status) for source, status in self._status.items()}


@dataclass(frozen=True, slots=True)
class LiveStamp:
    """When one car's fresh frame passed each stage of the live path (monotonic s)."""

    car: str
    session_time: float
    received: float  # the paho thread queued the message
    taken: float  # the live thread took it from its queue
    peeked: float  # LivePeek had read it
    published: float  # its car's state was handed to paho

    def as_row(self) -> list[float | str]:
        return [
            self.car,
            self.session_time,
            self.received,
            self.taken,
            self.peeked,
            self.published,
        ]


class LiveTimings:
    """The live path's own lag: receive → publish of the last fresh frames, by stage.

    Kept for the health endpoint (the pit wall and the benches read it); with
    ``keep_all`` every stamp is also kept for a trace file (``PITBOX_LIVE_TRACE``).
    """

    def __init__(self, kept: int = LIVE_TIMINGS_KEPT, keep_all: bool = False) -> None:
        self._recent: deque[LiveStamp] = deque(maxlen=kept)
        self.all: list[LiveStamp] | None = [] if keep_all else None

    def add(self, stamp: LiveStamp) -> None:
        self._recent.append(stamp)
        if self.all is not None:
            self.all.append(stamp)

    def summary(self) -> dict[str, Any]:
        """p50, p99 and max in ms of each stage over the recent fresh frames."""
        stamps = list(self._recent)
        stages = {
            "receive_to_publish": [s.published - s.received for s in stamps],
            "queue": [s.taken - s.received for s in stamps],
            "peek": [s.peeked - s.taken for s in stamps],
            "peek_to_publish": [s.published - s.peeked for s in stamps],
        }
        return {"n": len(stamps)} | {
            name: _percentiles_ms(values) for name, values in stages.items()
        }


def _percentiles_ms(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    ordered = sorted(values)
    n = len(ordered)
    return {
        "p50": round(ordered[n // 2] * 1000, 2),
        "p99": round(ordered[min(n - 1, int(0.99 * n))] * 1000, 2),
        "max": round(ordered[-1] * 1000, 2),
    }
