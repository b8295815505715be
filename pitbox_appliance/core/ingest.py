"""Ingest: verify and decode wire messages, de-duplicate, segment laps and stints, hand rows to the writer."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from driver_pc.protocol.codec import Codec, DecodeError, decode_batch, parse_body
from driver_pc.protocol.messages import (
    ChannelDictionary,
    CommandResult,
    DriverChange,
    Message,
    MessageType,
    SessionInfo,
    ShimStatus,
    TelemetryBatch,
)
from driver_pc.protocol.session_info import (
    SessionInfoError,
    parse_session_info,
    track_info,
)
from pitbox_appliance.analysis.lap_inputs import INPUT_CHANNELS, LapInputBuffer
from pitbox_appliance.analysis.segmentation import CompletedLap, LapSegmenter
from pitbox_appliance.detectors import (
    DETECTOR_CHANNELS,
    POOL_FRAMES,
    BatchContext,
    DetectorSet,
    Emission,
    LapContext,
)
from pitbox_appliance.storage.models import Lap
from pitbox_appliance.storage.writer import SessionWriter
from pitbox_appliance.strategy.engine import STRATEGY_CHANNELS, StrategyEngine
from pitbox_appliance.strategy.fuel import (
    LapFuel,
    RaceLength,
    race_length,
    tank_capacity,
)
from pitbox_appliance.strategy.settings import StrategySettings

logger = logging.getLogger(__name__)

LIVE_CHANNELS = (
    "SessionTime",
    "Lap",
    "LapDistPct",
    "Speed",
    "Throttle",
    "Brake",
    "Gear",
    "RPM",
    "FuelLevel",
    "OnPitRoad",
    "LapCurrentLapTime",
    "SteeringWheelAngle",
    "Lat",
    "Lon",
    "PlayerCarPosition",
    "PlayerCarMyIncidentCount",
)

# What the core decodes of each batch: segmentation and live-state inputs. The full
# batch is stored as received, so nothing else is lost by not decoding it here.
FIELD_CHANNELS = (
    "CarIdxLapDistPct",
    "CarIdxPosition",
    "CarIdxOnPitRoad",
    "PlayerCarIdx",
    # The strategy engine's (pitbox_appliance/strategy/engine.py).
    *STRATEGY_CHANNELS,
)
DECODED_CHANNELS = frozenset(
    (
        *LIVE_CHANNELS,
        *INPUT_CHANNELS,
        *FIELD_CHANNELS,
        *DETECTOR_CHANNELS,
        "LapDist",
        "OnPitRoad",
        "FuelLevel",
    )
)


@dataclass
class IngestStats:
    """Counters of what ingest accepted and why it rejected the rest."""

    accepted: int = 0
    duplicates: int = 0
    frames: int = 0
    laps: int = 0
    rejected: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "frames": self.frames,
            "laps": self.laps,
            "rejected": dict(self.rejected),
        }


@dataclass
class LiveCar:
    """What the pit wall shows of one car right now."""

    car: str
    session_key: str
    session_id: int
    track: str = ""
    driver: str = ""
    source: str = ""
    values: dict[str, float] = field(default_factory=dict)
    last_lap_time: float | None = None
    best_lap_time: float | None = None
    laps_completed: int = 0
    fuel_per_lap: float | None = None
    strategy: dict[str, Any] = field(default_factory=dict)
    # The other cars on track (live data only): idx, number, pct, position, pit.
    others: list[dict[str, Any]] = field(default_factory=list)
    stint: int = 0
    recent_laps: list[dict[str, Any]] = field(default_factory=list)
    # On-device model outputs after the last lap (pitbox_appliance/models/advisor.py).
    predictions: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view for one publish.

        Shallow on purpose: ``dataclasses.asdict`` deep-copied the 63 other cars on
        every publish (1.6 ms of 1.7 ms per live state). Ingest replaces ``others``,
        ``strategy`` and ``recent_laps`` wholesale; the dicts it updates in place are
        copied.
        """
        state = {f.name: getattr(self, f.name) for f in fields(self)}
        state["values"] = dict(self.values)
        state["predictions"] = dict(self.predictions)
        return state

    def record_lap(
        self, number: int, lap_time: float | None, fuel: float | None, pit: bool
    ) -> dict[str, Any]:
        """Count a completed lap in the figures shown; returns its lap-table entry."""
        self.laps_completed = max(self.laps_completed, number)
        if lap_time is not None:
            self.last_lap_time = lap_time
            if self.best_lap_time is None or lap_time < self.best_lap_time:
                self.best_lap_time = lap_time
        entry = {
            "lap": number,
            "time": lap_time,
            "fuel": fuel,
            "pit": pit,
            "driver": self.driver,
        }
        self.recent_laps = [entry, *self.recent_laps][:10]
        return entry


@dataclass
class _Tracker:
    session_id: int
    live: LiveCar
    segmenter: LapSegmenter
    driver_id: int | None = None
    stint_id: int | None = None
    stint_number: int = 0
    pit_exits_seen: int = 0
    stint_started: float = float("-inf")
    info_update: int = -1
    inputs: LapInputBuffer = field(default_factory=LapInputBuffer)
    car_numbers: dict[int, str] = field(default_factory=dict)
    fuel_laps: list[LapFuel] = field(default_factory=list)
    race: RaceLength = field(default_factory=RaceLength)
    tank: float | None = None
    max_fuel_seen: float = 0.0
    last_advice: tuple[int | None, int | None] | None = None
    strategy: StrategyEngine = field(default_factory=StrategyEngine)
    events_seen: int = 0  # Ingestor.events already scanned for fatigue updates
    car_setup: Any = None  # the last CarSetup seen in the session info
    last_time: float = 0.0  # SessionTime of the newest telemetry
    detectors: DetectorSet = field(
        default_factory=lambda: DetectorSet(min_frames=POOL_FRAMES)
    )


class Ingestor:
    """Everything between the broker and the database, for any number of cars.

    ``handle`` never raises on bad input: it counts the reason and returns False.
    Call ``flush`` to commit; the caller acknowledges messages only after that.
    """

    # The strategy rules every car's engine uses (config ``strategy``; set by the core).
    strategy_settings: StrategySettings = StrategySettings()

    def __init__(self, codec: Codec, writer: SessionWriter) -> None:
        self.codec = codec
        self.writer = writer
        self.stats = IngestStats()
        self._last_seq = writer.source_seqs()
        self._dicts: dict[int, ChannelDictionary] = {}
        for definition in writer.channel_sets():
            d = ChannelDictionary.from_json(definition)
            self._dicts[d.dict_id] = d
        self._trackers: dict[str, _Tracker] = {}
        self.status: dict[str, dict[str, Any]] = {}
        self.dirty: set[str] = set()
        self.commands: dict[str, dict[str, Any]] = {}
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    @property
    def live(self) -> dict[str, LiveCar]:
        return {t.live.car: t.live for t in self._trackers.values()}

    # ---- entry points -------------------------------------------------------------
    def handle(self, payload: bytes, topic_source: str | None = None) -> bool:
        """Verify, decode and ingest one wire message; False if it was not stored."""
        try:
            source, seq, kind, compressed = self.codec.open_compressed(payload)
            if topic_source is not None and topic_source != source:
                raise DecodeError(
                    "source_mismatch",
                    f"message of {source!r} on topic of {topic_source!r}",
                )
            if seq <= self._last_seq.get(source, -1):
                self.stats.duplicates += 1
                return False
            body = self.codec.decompress(compressed)
            message = parse_body(kind, body, self._dicts, DECODED_CHANNELS)
        except DecodeError as exc:
            self.stats.rejected[exc.reason] += 1
            logger.warning("rejected message: %s", exc)
            return False
        try:
            self._route(source, seq, kind, message, compressed)
        except (ValueError, KeyError, TypeError) as exc:
            self.stats.rejected["bad_content"] += 1
            logger.warning("rejected %s from %s: %s", kind.name, source, exc)
            return False
        self._last_seq[source] = seq
        self.writer.mark_source(source, seq)
        self.stats.accepted += 1
        return True

    def flush(self) -> None:
        """Commit everything handled so far."""
        self.writer.commit()

    def rollback(self) -> None:
        """Forget everything handled since the last commit, so it can be handled again."""
        self.writer.rollback()
        self._last_seq = self.writer.source_seqs()
        self._trackers.clear()

    # ---- routing ----------------------------------------------------------------------
    def _route(
        self,
        source: str,
        seq: int,
        kind: MessageType,
        message: Message,
        compressed: bytes,
    ) -> None:
        if isinstance(message, ChannelDictionary):
            self._dicts[message.dict_id] = message
            tracker = self._tracker(message.session_key, source)
            self.writer.add_channel_set(
                tracker.session_id, message.dict_id, message.to_json()
            )
        elif isinstance(message, TelemetryBatch):
            self._telemetry(source, seq, message, compressed)
        elif isinstance(message, SessionInfo):
            self._session_info(source, message)
        elif isinstance(message, DriverChange):
            self._driver_change(source, message)
        elif isinstance(message, ShimStatus):
            self.status[source] = asdict(message)
        elif isinstance(message, CommandResult):
            self._command_result(source, message)
        else:
            logger.info("ignoring %s from %s", kind.name, source)

    def _command_result(self, source: str, result: CommandResult) -> None:
        entry = self.commands.get(result.command_id)
        if entry is None or entry["source"] != source:
            raise ValueError(f"result for unknown command {result.command_id!r}")
        entry["result"] = {"ok": result.ok, "detail": result.detail}
        self.events.append(
            (
                entry["car"],
                "command.result",
                {"command_id": result.command_id, **entry["result"]},
            )
        )
        if entry["kind"] == "message":
            self._log_message(source, entry, result)

    def _log_message(
        self, source: str, entry: dict[str, Any], result: CommandResult
    ) -> None:
        """Store a team message with the car's session (the shim's answer closes it)."""
        car = self.live.get(entry["car"])
        if car is None:
            return
        self.writer.add_event(
            car.session_id,
            "team_message",
            float(car.values.get("SessionTime", 0.0)),
            {
                "text": str(entry["args"].get("text", "")),
                "source": source,
                "command_id": result.command_id,
                "ok": result.ok,
                "detail": result.detail,
                "sent_at": entry["sent_at"],
            },
        )

    def _tracker(self, session_key: str, source: str) -> _Tracker:
        tracker = self._trackers.get(session_key)
        if tracker is None:
            car = car_of_source(source)
            sid = self.writer.session_id(session_key, car)
            tracker = _Tracker(
                sid, LiveCar(car, session_key, sid, source=source), LapSegmenter()
            )
            self._trackers[session_key] = tracker
            self._resume(tracker)
        tracker.live.source = source
        return tracker

    def _resume(self, tracker: _Tracker) -> None:
        """Rebuild a car's state from what is stored, after a restart of the core.

        The telemetry since the start of the last stored lap goes through the
        segmenter again (its laps are already stored and are not stored twice), so
        the lap in progress is timed from its real start; the open stint and its
        driver carry on.
        """
        state = self.writer.resume_state(tracker.session_id)
        if state is None:
            return
        for dict_id, data in state.chunks:
            if dict_id not in self._dicts:
                continue
            body = self.codec.decompress(data)
            batch = decode_batch(body, self._dicts, DECODED_CHANNELS)
            tracker.segmenter.feed(batch.frames)
            tracker.inputs.append(batch.frames)
        tracker.pit_exits_seen = len(tracker.segmenter.pit_exits)
        tracker.stint_id, tracker.stint_number = state.stint_id, state.stint_number
        tracker.driver_id = state.driver_id
        live = tracker.live
        live.stint = state.stint_number
        live.driver = state.driver_name
        for lap in state.laps:
            tracker.fuel_laps.append(
                LapFuel(lap.lap_number, lap.lap_time, lap.fuel_used, lap.pit_lap)
            )
            live.record_lap(lap.lap_number, lap.lap_time, lap.fuel_used, lap.pit_lap)

    def _session_info(self, source: str, msg: SessionInfo) -> None:
        tracker = self._tracker(msg.session_key, source)
        if msg.update <= tracker.info_update:
            return
        tracker.info_update = msg.update
        try:
            info = parse_session_info(msg.yaml_text)
        except SessionInfoError as exc:
            raise ValueError(str(exc)) from None
        track = track_info(info)
        tracker.live.track = track["track"]
        tracker.race = race_length(info)
        tracker.car_numbers = car_numbers(info)
        tracker.strategy.session_info(info)
        tracker.tank = tank_capacity(info)
        setup = info.get("CarSetup")
        if isinstance(setup, dict) and setup != tracker.car_setup:
            # Stored (not published): compaction carries every setup change.
            tracker.car_setup = setup
            self.writer.add_event(
                tracker.session_id,
                "car_setup",
                tracker.last_time,
                {"update": msg.update, "setup": setup},
            )
        self.writer.update_session(
            tracker.session_id,
            track=track["track"],
            track_length_km=track["track_length_km"],
            subsession_id=track["subsession_id"],
            session_info=msg.yaml_text,
        )

    def _driver_change(self, source: str, msg: DriverChange) -> None:
        tracker = self._tracker(msg.session_key, source)
        did = self.writer.driver_id(msg.user_id, msg.user_name, msg.team_name)
        if did == tracker.driver_id:
            return
        tracker.driver_id = did
        tracker.live.driver = msg.user_name
        self._new_stint(tracker, msg.session_time)
        payload = {"user_id": msg.user_id, "user_name": msg.user_name, "source": source}
        self.writer.add_event(
            tracker.session_id, "driver.change", msg.session_time, payload
        )
        self.events.append((tracker.live.car, "driver.change", payload))

    def _new_stint(self, tracker: _Tracker, at: float) -> None:
        tracker.stint_id = self.writer.open_stint(
            tracker.session_id, tracker.driver_id, at
        )
        tracker.stint_number += 1
        tracker.stint_started = at
        tracker.live.stint = tracker.stint_number

    def _telemetry(
        self, source: str, seq: int, batch: TelemetryBatch, compressed: bytes
    ) -> None:
        frames = batch.frames
        names = frames.dtype.names or ()
        if "SessionTime" not in names or "LapDistPct" not in names:
            raise ValueError("telemetry lacks SessionTime/LapDistPct")
        tracker = self._tracker(batch.session_key, source)
        times = frames["SessionTime"]
        t0, t1 = float(times[0]), float(times[-1])
        self.writer.add_chunk(
            session_id=tracker.session_id,
            source=source,
            seq=seq,
            dict_id=batch.dict_id,
            start_time=t0,
            end_time=t1,
            frames=len(frames),
            data=compressed,
        )
        self.writer.extend_session_time(tracker.session_id, t0, t1)
        tracker.last_time = t1
        seg = tracker.segmenter
        completed = seg.feed(frames)
        tracker.inputs.append(frames)
        if "FuelLevel" in names:
            tracker.max_fuel_seen = max(
                tracker.max_fuel_seen, float(frames["FuelLevel"].max())
            )
        if tracker.stint_id is None:
            tracker.pit_exits_seen = len(seg.pit_exits)
            self._new_stint(tracker, t0)
        elif len(seg.pit_exits) > tracker.pit_exits_seen:
            tracker.pit_exits_seen = len(seg.pit_exits)
            entered = seg.pit_entries[-1] if seg.pit_entries else None
            # A driver change during this stop already opened the new stint.
            if entered is None or tracker.stint_started < entered:
                self._new_stint(tracker, seg.pit_exits[-1])
        context = _context(tracker)
        self._detect(tracker, tracker.detectors.on_frames(frames, context))
        if completed:
            # Detectors see every frame of a lap before they are told it completed.
            self._detect(tracker, tracker.detectors.flush(context))
        # The strategy engine sees the batch before the laps it completed.
        others = self._others(tracker, frames)
        if others is not None:
            tracker.live.others = others
        for lap in completed:
            self._store_lap(tracker, lap)
        live = tracker.live.values
        last = frames[-1]
        for name in LIVE_CHANNELS:
            if name in names:
                live[name] = float(last[name])
        self.stats.frames += len(frames)
        self.dirty.add(tracker.live.car)

    def _others(
        self, tracker: _Tracker, frames: np.ndarray[Any, np.dtype[np.void]]
    ) -> list[dict[str, Any]] | None:
        """The strategy engine's per-batch work; the other cars when due (≤ 4 Hz)."""
        engine = tracker.strategy
        # Only the events added since the last look (the service drains the list).
        if tracker.events_seen > len(self.events):
            tracker.events_seen = 0
        for car, kind, payload in self.events[tracker.events_seen :]:
            if car == tracker.live.car and kind == "driver_fatigue_update":
                level = payload.get("fatigue")
                if isinstance(level, int | float):
                    engine.note_fatigue(float(level))
        tracker.events_seen = len(self.events)
        others = engine.on_batch(frames)
        if others is not None and tracker.live.strategy:
            tracker.live.strategy["rejoin"] = engine.rejoin
        return others

    def _store_lap(self, tracker: _Tracker, lap: CompletedLap) -> None:
        inputs = tracker.inputs.lap(lap.start_time, lap.end_time)
        stored = self.writer.add_lap(
            Lap(
                session_id=tracker.session_id,
                stint_id=tracker.stint_id,
                driver_id=tracker.driver_id,
                lap_number=lap.lap_number,
                start_time=lap.start_time,
                end_time=lap.end_time,
                lap_time=lap.lap_time,
                fuel_used=lap.fuel_used,
                pit_lap=lap.pit_lap,
                max_speed=lap.max_speed,
                input_smoothness=inputs.smoothness if inputs else None,
                input_aggression=inputs.aggression if inputs else None,
                input_precision=inputs.precision if inputs else None,
            )
        )
        if not stored:
            return
        self.stats.laps += 1
        live = tracker.live
        entry = live.record_lap(
            lap.lap_number, lap.lap_time, lap.fuel_used, lap.pit_lap
        )
        self.events.append((live.car, "lap.completed", entry))
        done = LapContext(
            live.car,
            live.driver,
            lap.lap_number,
            lap.start_time,
            lap.end_time,
            lap.lap_time,
            lap.pit_lap,
            lap.fuel_used,
            inputs,
            tracker.stint_started,
        )
        self._detect(tracker, tracker.detectors.on_lap(done))
        self._update_strategy(tracker, lap)

    def _detect(self, tracker: _Tracker, found: list[Emission]) -> None:
        """Store what the detectors found; publish the live events among it."""
        for emission in found:
            self.writer.add_event(
                tracker.session_id,
                emission.kind,
                emission.session_time,
                emission.payload,
            )
            if emission.publish:
                self.events.append((tracker.live.car, emission.kind, emission.payload))

    def _update_strategy(self, tracker: _Tracker, lap: CompletedLap) -> None:
        tracker.fuel_laps.append(
            LapFuel(lap.lap_number, lap.lap_time, lap.fuel_used, lap.pit_lap)
        )
        live = tracker.live
        engine = tracker.strategy
        engine.settings = self.strategy_settings
        if not engine.laps and len(tracker.fuel_laps) > 1:
            engine.laps = tracker.fuel_laps[:-1]  # resumed after a restart
        if engine.tank is None:
            engine.tank = tracker.tank
        if not engine.numbers:
            engine.numbers = tracker.car_numbers
        strategy, changed = engine.on_lap(
            lap.lap_number,
            lap.lap_time,
            lap.fuel_used,
            lap.pit_lap,
            lap.end_time,
            live.values.get("FuelLevel"),
            live.driver,
        )
        live.fuel_per_lap = strategy["fuel_per_lap"]
        live.strategy = strategy
        if changed is not None:
            self.events.append((live.car, "strategy_recommendation", changed))
            self.writer.add_event(
                tracker.session_id, "strategy_recommendation", lap.end_time, changed
            )


def _context(tracker: _Tracker) -> BatchContext:
    """What the detectors know of a car besides its frames."""
    live = tracker.live
    times = [
        e["time"] for e in reversed(live.recent_laps) if e["time"] and not e["pit"]
    ]
    return BatchContext(
        live.car, live.driver, tracker.stint_started, times, tracker.car_numbers
    )


def car_numbers(info: dict[str, Any]) -> dict[int, str]:
    """CarIdx → car number from the session info's ``DriverInfo.Drivers``."""
    numbers: dict[int, str] = {}
    for entry in (info.get("DriverInfo") or {}).get("Drivers") or []:
        if isinstance(entry, dict) and isinstance(entry.get("CarIdx"), int):
            numbers[entry["CarIdx"]] = str(entry.get("CarNumber") or entry["CarIdx"])
    return numbers


def car_of_source(source: str) -> str:
    """The car a source belongs to: source ids are ``<car>-<pc>`` (``car42-pc1``)."""
    return source.split("-", 1)[0] if "-" in source else source
