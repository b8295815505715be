"""One car's session on the appliance: the single owner of its segmentation, stints, figures, detectors and strategy."""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel

from driver_pc.protocol.events import (
    CameraView,
    DriverChanged,
    DriverFatigueUpdate,
    Event,
    EventError,
    EventKind,
    LapCompleted,
    StoredKind,
)
from driver_pc.protocol.live import LIVE_CHANNELS, LapRow
from driver_pc.protocol.messages import DriverChange, SessionInfo, TelemetryBatch
from driver_pc.protocol.session_info import (
    SessionInfoError,
    parse_session_info,
    track_info,
)
from pitbox_appliance.analysis.corners import CornerCache
from pitbox_appliance.analysis.lap_inputs import LapInputBuffer
from pitbox_appliance.analysis.segmentation import (
    MAX_TICK_GAP_S,
    CompletedLap,
    LapSegmenter,
)
from pitbox_appliance.analysis.track_outline import track_key
from pitbox_appliance.core.decode import chunk_to_store
from pitbox_appliance.core.handover import (
    BridgedLap,
    CameraWatch,
    CarIdxLapBridge,
    DrivingPcElection,
    in_car_mask,
)
from pitbox_appliance.core.live import LiveCar, LivePublisher
from pitbox_appliance.detectors import (
    POOL_FRAMES,
    BatchContext,
    DetectorSet,
    Emission,
    LapContext,
    detectors_in_order,
)
from pitbox_appliance.storage.models import Lap
from pitbox_appliance.storage.writer import SessionWriter
from pitbox_appliance.strategy.engine import StrategyEngine
from pitbox_appliance.strategy.fuel import LapFuel
from pitbox_appliance.strategy.settings import StrategySettings

if TYPE_CHECKING:
    from pitbox_appliance.core.ingest import IngestStats

logger = logging.getLogger(__name__)

Frames = np.ndarray[Any, np.dtype[np.void]]

CAR_SLOTS = 64  # iRacing's CarIdx* arrays
# While no PC is in the car, the live figures its CarIdx* entry still gives.
BRIDGED_VALUES = (
    ("CarIdxLap", "Lap"),
    ("CarIdxLapDistPct", "LapDistPct"),
    ("CarIdxOnPitRoad", "OnPitRoad"),
    ("CarIdxPosition", "PlayerCarPosition"),
)


class CarTracker:
    """Everything the core knows of one car's session, and the rows it stores of it.

    Fed the car's decoded messages in order by the ``Ingestor``; stores through the
    session writer, raises events and marks the car dirty through the live publisher.
    """

    def __init__(
        self,
        live: LiveCar,
        writer: SessionWriter,
        publisher: LivePublisher,
        stats: IngestStats,
        settings: StrategySettings,
        detectors: Iterable[str] | None = None,
        corners: CornerCache | None = None,
    ) -> None:
        self.live = live
        # The track's corners for the detectors, once its outline is known.
        self._corners = corners
        self._track_key: str | None = None
        self._writer = writer
        self._publisher = publisher
        self._stats = stats
        self._settings = settings
        self._segmenter = LapSegmenter()
        self._inputs = LapInputBuffer()
        # The detectors switched on (config ``detectors``; None: all), in run order.
        on = None if detectors is None else set(detectors)
        self._detectors = DetectorSet(
            None
            if on is None
            else [d.name for d in detectors_in_order() if d.name in on],
            min_frames=POOL_FRAMES,
        )
        self.strategy = StrategyEngine(settings)
        self._driver_id: int | None = None
        self._stint_id: int | None = None
        self._stint_number = 0
        self._pit_exits_seen = 0
        self._stint_started = float("-inf")
        self._driver_since = float("-inf")  # SessionTime of the driver change taken
        self._info_update = -1
        self._car_numbers: dict[int, str] = {}
        self._car_setup: Any = None  # the last CarSetup seen in the session info
        self._last_time = 0.0  # SessionTime of the newest telemetry
        self._stored_seqs: dict[str, int] = {}  # per source: its last stored chunk
        # Several PCs per car: who drives, and the laps while nobody does.
        self._election = DrivingPcElection()
        self._bridge = CarIdxLapBridge()
        self._cameras = CameraWatch()  # what the PCs out of the car watch
        self._bridge_pit = False  # the car was on pit road while bridged
        self._fed_t = float("-inf")  # SessionTime of the newest frame segmented
        self._bridge_t = float("-inf")  # ... and of the newest frame bridged
        self._lap_numbers: set[int] = set()
        self._newest_lap = -1  # the highest lap number stored
        # Laps the bridge saw, by number, kept until stored (by whichever path).
        self._bridged: dict[int, BridgedLap] = {}
        # Every stint opened, in time order: (start, stint id, driver id, driver), so
        # a lap that reaches the core late is credited to the stint it was driven in.
        self._stints: list[tuple[float, int | None, int | None, str | None]] = []
        # The fatigue raised since the strategy last looked (it looks per batch).
        self._fatigue: float | None = None
        # (channel names of a layout, the live channels among them, a record dtype
        # of only those at their offsets), see _live_channels.
        self._live_of: tuple[tuple[str, ...], tuple[str, ...], np.dtype[np.void]] = (
            (),
            (),
            np.dtype([]),
        )

    @property
    def session_id(self) -> int:
        return self.live.session_id

    @property
    def car(self) -> str:
        return self.live.car

    @property
    def detector_names(self) -> tuple[str, ...]:
        """The detectors this car runs, in run order."""
        return tuple(d.name for d in self._detectors.detectors)

    @property
    def driving_source(self) -> str | None:
        """The PC in the car now (None during a swap, or when none is connected)."""
        return self._election.elected

    # ---- after a restart of the core ---------------------------------------------------
    def resume(
        self,
        frames: Iterable[Frames],
        laps: Iterable[Lap],
        stint: tuple[int | None, int, float],
        driver: tuple[int | None, str],
    ) -> None:
        """Rebuild the car's state from what is stored.

        The telemetry since the start of the last stored lap goes through the
        segmenter again (its laps are already stored and are not stored twice), so
        the lap in progress is timed from its real start; the open stint and its
        driver carry on, and the strategy starts from the stored laps.
        """
        for batch in frames:
            # The same frames as live: only those in the car, never back in time.
            taken = self._take(batch)
            if len(taken):
                self._segmenter.feed(taken)
                self._inputs.append(taken)
        self._pit_exits_seen = len(self._segmenter.pit_exits)
        self._stint_id, self._stint_number, self._stint_started = stint
        self._driver_since = self._stint_started
        self._driver_id, self.live.driver = driver
        self._stints = [
            (self._stint_started, self._stint_id, self._driver_id, self.live.driver)
        ]
        self.live.stint = self._stint_number
        stored = []
        for lap in laps:
            if lap.lap_number >= 0:
                self._lap_numbers.add(lap.lap_number)
                self._newest_lap = max(self._newest_lap, lap.lap_number)
            stored.append(
                LapFuel(
                    lap.lap_number,
                    lap.lap_time,
                    lap.fuel_used,
                    lap.pit_lap,
                    invalid=lap.invalid,
                    refuelled=lap.refuelled,
                )
            )
            self.live.record_lap(
                lap.lap_number,
                lap.lap_time,
                lap.fuel_used,
                lap.pit_lap,
                invalid=lap.invalid,
                refuelled=lap.refuelled,
            )
        self.strategy = StrategyEngine(self._settings, laps=stored)

    # ---- messages ----------------------------------------------------------------------
    def session_info(self, msg: SessionInfo) -> None:
        """Track, car numbers, race length, tank and setup from the session info."""
        if msg.update <= self._info_update:
            return
        self._info_update = msg.update
        try:
            info = parse_session_info(msg.yaml_text)
        except SessionInfoError as exc:
            raise ValueError(str(exc)) from None
        track = track_info(info)
        self.live.track = track["track"]
        weekend = info.get("WeekendInfo")
        self._track_key = track_key(
            weekend if isinstance(weekend, dict) else None, track["track"]
        )
        self._car_numbers = car_numbers(info)
        self.strategy.session_info(info)
        setup = info.get("CarSetup")
        if isinstance(setup, dict) and setup != self._car_setup:
            # Stored (not published): compaction carries every setup change.
            self._car_setup = setup
            self._writer.add_event(
                self.session_id,
                StoredKind.CAR_SETUP.value,
                self._last_time,
                {"update": msg.update, "setup": setup},
            )
        self._writer.update_session(
            self.session_id,
            track=track["track"],
            track_length_km=track["track_length_km"],
            subsession_id=track["subsession_id"],
            session_info=msg.yaml_text,
        )

    def driver_change(self, source: str, msg: DriverChange) -> None:
        """A new driver in the car opens a new stint.

        Every PC of the car announces the driver it sees when it starts, so a PC
        that joins (or thaws) late reports a driver the car has since replaced: a
        change no newer than the one taken is history and is only counted.
        """
        if msg.session_time <= self._driver_since:
            if msg.user_name != self.live.driver:
                self._stats.stale_driver_changes += 1
            return
        did = self._writer.driver_id(msg.user_id, msg.user_name, msg.team_name)
        if did == self._driver_id:
            return
        self._driver_id = did
        self._driver_since = msg.session_time
        self.live.driver = msg.user_name
        self._new_stint(msg.session_time)
        payload = DriverChanged(
            user_id=msg.user_id, user_name=msg.user_name, source=source
        )
        self._writer.add_event(
            self.session_id,
            EventKind.DRIVER_CHANGE.value,
            msg.session_time,
            payload.model_dump(mode="json"),
        )
        self._publisher.emit(Event(self.car, EventKind.DRIVER_CHANGE, payload))

    def telemetry(
        self, source: str, seq: int, batch: TelemetryBatch, compressed: bytes
    ) -> None:
        """A batch of one of the car's PCs: the driving PC's counts, the others bridge.

        Only the driving PC's in-car frames, newer than the last frame taken, reach
        segmentation, fuel, inputs, detectors and the live figures. While no PC is in
        the car (a driver swap, the driving PC gone) the ``CarIdx*`` arrays of any PC
        keep the lap count and times going.
        """
        frames = batch.frames
        now = time.monotonic()
        driving = self._election.observe(source, frames, now)
        self.live.source = driving or self.live.source or source
        self.live.pcs = self._election.roles(now)
        names = frames.dtype.names or ()
        if "PlayerCarIdx" in names and len(frames):
            # Every PC's arrays describe our car: the bridge sees each crossing once.
            car_idx = int(frames["PlayerCarIdx"][-1])
            for lap in self._bridge.feed(frames, car_idx, source):
                if lap.lap_number not in self._lap_numbers:
                    self._bridged[lap.lap_number] = lap
        if source == driving:
            self._drive(source, seq, batch, compressed)
            if self._bridged:
                self._store_passed_laps()
        else:
            if driving is None:
                self._bridge_batch(source, seq, batch, compressed)
            # Not stored as frames while a PC drives: what it watches, as pieces.
            self._store_camera(self._cameras.feed(source, frames))
        self._publisher.mark_dirty(self.car)

    def _store_camera(self, pieces: list[CameraView]) -> None:
        for piece in pieces:
            self._writer.add_event(
                self.session_id,
                StoredKind.CAMERA_VIEW.value,
                piece.start,
                piece.model_dump(mode="json"),
            )

    def _store_chunk(
        self, source: str, seq: int, batch: TelemetryBatch, compressed: bytes
    ) -> tuple[float, float]:
        times = batch.frames["SessionTime"]
        t0, t1 = float(times[0]), float(times[-1])
        self._writer.add_chunk(
            session_id=self.session_id,
            source=source,
            seq=seq,
            dict_id=batch.dict_id,
            start_time=t0,
            end_time=t1,
            frames=len(batch.frames),
            data=chunk_to_store(compressed, self._stored_seqs.get(source)),
        )
        self._stored_seqs[source] = seq
        self._writer.extend_session_time(self.session_id, t0, t1)
        self._last_time = max(self._last_time, t1)
        return t0, t1

    def _take(self, frames: Frames) -> Frames:
        """The frames segmentation takes: in the car, newer than any taken before.

        After a gap, the lap in progress is timed from the crossing that began it,
        when some PC's ``CarIdx*`` arrays saw it; else, within the lap the gap began
        in, as the segmenter had it; else it goes untimed.
        """
        keep = in_car_mask(frames) & (frames["SessionTime"] > self._fed_t)
        # Nearly always every frame: the batch itself then, not a copy of it.
        take = frames if keep.all() else frames[keep]
        if len(take):
            first = float(take["SessionTime"][0])
            if first - self._fed_t > MAX_TICK_GAP_S and self._fed_t > float("-inf"):
                self._segmenter.continue_lap(
                    self._resumed_lap_start(take), self._bridge_pit
                )
            self._fed_t = float(take["SessionTime"][-1])
        return take

    def _resumed_lap_start(self, take: Frames) -> float | None:
        """When the lap the first of ``take`` is in began, after a gap in the frames."""
        seg = self._segmenter
        names = take.dtype.names or ()
        start = seg.lap_start
        if "Lap" in names:
            lap_now = int(take["Lap"][0])
            crossing = self._bridge.lap_start(lap_now)
            if lap_now != seg.lap_number:
                # The car crossed the line in the gap: the segmenter's start is of
                # a lap since completed, so only the crossing into this one will do.
                start = crossing
            elif crossing is not None and (start is None or crossing > start):
                start = crossing
        else:  # a recording without Lap: the newest crossing seen, if after
            crossing = self._bridge.last_crossing
            if crossing is not None and (start is None or crossing > start):
                start = crossing
        return start

    def _drive(
        self, source: str, seq: int, batch: TelemetryBatch, compressed: bytes
    ) -> None:
        """Store a batch of the driving PC, then segment it and run detectors and strategy."""
        t0, _ = self._store_chunk(source, seq, batch, compressed)
        frames = self._take(batch.frames)
        if not len(frames):
            return
        self._bridge_pit = False
        seg = self._segmenter
        completed = seg.feed(frames)
        self._inputs.append(frames)
        if self._stint_id is None:
            self._pit_exits_seen = len(seg.pit_exits)
            self._new_stint(t0)
        elif len(seg.pit_exits) > self._pit_exits_seen:
            self._pit_exits_seen = len(seg.pit_exits)
            entered = seg.pit_entries[-1] if seg.pit_entries else None
            # A driver change during this stop already opened the new stint.
            if entered is None or self._stint_started < entered:
                self._new_stint(seg.pit_exits[-1])
        # The detectors look once in POOL_FRAMES: the context is made only then.
        context = _Once(self._context)
        self._detect(self._detectors.on_frames(frames, context))
        if completed:
            # Detectors see every frame of a lap before they are told it completed.
            self._detect(self._detectors.flush(context))
        # The strategy engine sees the batch before the laps it completed.
        self._strategy_batch(frames)
        for lap in completed:
            self._store_lap(lap)
        live, only = self._live_channels(frames)
        if live:
            # The newest row's live channels as Python numbers in one ``item()``: a
            # ``float(row[name])`` each cost ~1 us a channel (a record of 3 KB).
            self.live.values.update(
                zip(live, map(float, frames.view(only)[-1].item()), strict=True)
            )
        self._stats.frames += len(frames)

    def _live_channels(
        self, frames: Frames
    ) -> tuple[tuple[str, ...], np.dtype[np.void]]:
        """The live channels ``frames`` carry, and a dtype of just them (per layout)."""
        names = frames.dtype.names or ()
        if names != self._live_of[0]:
            live = tuple(n for n in LIVE_CHANNELS if n in names)
            fields = frames.dtype.fields
            assert fields is not None  # a record array, as decoded
            only = np.dtype(
                {
                    "names": list(live),
                    "formats": [fields[n][0] for n in live],
                    "offsets": [fields[n][1] for n in live],
                    "itemsize": frames.dtype.itemsize,
                }
            )
            self._live_of = (names, live, only)
        return self._live_of[1], self._live_of[2]

    def _bridge_batch(
        self, source: str, seq: int, batch: TelemetryBatch, compressed: bytes
    ) -> None:
        """No PC is in the car: its ``CarIdx*`` entry keeps laps, position and pit road."""
        # Stored as received whatever its clock says (a paused or replayed sim);
        # only frames newer than any bridged before move the figures.
        self._store_chunk(source, seq, batch, compressed)
        frames = batch.frames[batch.frames["SessionTime"] > self._bridge_t]
        names = frames.dtype.names or ()
        if not len(frames) or "PlayerCarIdx" not in names:
            return
        self._bridge_t = float(frames["SessionTime"][-1])
        car_idx = int(frames["PlayerCarIdx"][-1])
        for number in sorted(self._bridged):
            lap = self._bridged.pop(number)
            self._bridge_pit = self._bridge_pit or lap.pit_lap
            self._store_bridged(lap)
        last = frames[-1]
        values = self.live.values
        values["SessionTime"] = float(last["SessionTime"])
        if 0 <= car_idx < CAR_SLOTS:
            for channel, name in BRIDGED_VALUES:
                if channel in names:
                    values[name] = float(last[channel][car_idx])
        self._strategy_batch(frames)
        self._stats.frames += len(frames)

    def _store_passed_laps(self) -> None:
        """Bridged laps the driving PC will never complete: it was not in them.

        A lap before the one the driving PC is in, and not the one it still waits
        for iRacing's verdict on, ended in a gap of its frames; a PC with a backlog
        (or a core behind its queue) can report such a crossing after the driving
        PC came back.
        """
        seg = self._segmenter
        current = seg.lap_number
        if current is None:
            return
        pending = seg.pending_lap
        for number in sorted(self._bridged):
            if number >= current:
                break
            if number != pending:
                self._store_bridged(self._bridged.pop(number))

    def _store_bridged(self, lap: BridgedLap) -> None:
        start = lap.end_time - lap.lap_time if lap.lap_time else None
        self._store_lap(
            CompletedLap(
                lap_number=lap.lap_number,
                start_time=start,
                end_time=lap.end_time,
                lap_time=lap.lap_time,
                fuel_used=None,
                pit_lap=lap.pit_lap,
                max_speed=None,
            )
        )

    def end_of_stream(self) -> None:
        """The recording ended: store the lap still waiting for iRacing's verdict."""
        for lap in self._segmenter.flush():
            self._store_lap(lap)
        self._store_camera(self._cameras.flush())

    def record(self, kind: EventKind, session_time: float, payload: BaseModel) -> None:
        """Store and publish an event raised outside ingest (an upload)."""
        self._writer.add_event(
            self.session_id, kind.value, session_time, payload.model_dump(mode="json")
        )
        self._publisher.emit(Event(self.car, kind, payload))

    # ---- stints, laps, detectors, strategy ---------------------------------------------
    def _new_stint(self, at: float) -> None:
        self._stint_id = self._writer.open_stint(self.session_id, self._driver_id, at)
        self._stint_number += 1
        self._stint_started = at
        self.live.stint = self._stint_number
        self._stints.append((at, self._stint_id, self._driver_id, self.live.driver))

    def _stint_of(self, end_time: float) -> tuple[int | None, int | None, str | None]:
        """The stint (id, driver id, driver) a lap that ended at ``end_time`` was in."""
        current = (self._stint_id, self._driver_id, self.live.driver)
        if end_time >= self._stint_started or not self._stints:
            return current
        # A lap reported late, from before the stint now open.
        at = bisect.bisect_right(self._stints, end_time, key=lambda s: s[0]) - 1
        if at < 0:
            return current
        _, stint_id, driver_id, driver = self._stints[at]
        return stint_id, driver_id, driver

    def _store_lap(self, lap: CompletedLap) -> None:
        late = False  # a lap before one already stored (a PC's backlog bridged it)
        if lap.lap_number >= 0:
            # Two sources of one car (a PC and the CarIdx* bridge) see the same lap.
            if lap.lap_number in self._lap_numbers:
                return
            self._lap_numbers.add(lap.lap_number)
            late = lap.lap_number < self._newest_lap
            self._newest_lap = max(self._newest_lap, lap.lap_number)
            bridged = self._bridged.pop(lap.lap_number, None)
            if lap.lap_time is None and bridged is not None and bridged.lap_time:
                # A gap in the driving PC's frames (a hand-over): the arrays timed it.
                lap = replace(
                    lap,
                    lap_time=bridged.lap_time,
                    start_time=lap.end_time - bridged.lap_time,
                )
        inputs = self._inputs.lap(lap.start_time, lap.end_time)
        stint_id, driver_id, driver = self._stint_of(lap.end_time)
        stored = self._writer.add_lap(
            Lap(
                session_id=self.session_id,
                stint_id=stint_id,
                driver_id=driver_id,
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
                invalid=lap.invalid,
                refuelled=lap.refuelled,
            )
        )
        if not stored:
            return
        self._stats.laps += 1
        live = self.live
        row = live.record_lap(
            lap.lap_number,
            lap.lap_time,
            lap.fuel_used,
            lap.pit_lap,
            invalid=lap.invalid,
            refuelled=lap.refuelled,
            driver=driver,
            late=late,
        )
        self._publisher.emit(
            Event(self.car, EventKind.LAP_COMPLETED, _lap_completed(row))
        )
        if late:
            # Bridged from a PC's backlog (no fuel, no inputs), after laps the
            # detectors and the strategy have already moved past: stored and shown.
            return
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
            self._stint_started,
            self._corners.get(self._track_key) if self._corners else None,
        )
        self._detect(self._detectors.on_lap(done))
        self._strategy_lap(lap)

    def _detect(self, found: list[Emission]) -> None:
        """Store what the detectors found; publish the live events among it."""
        for emission in found:
            self._writer.add_event(
                self.session_id,
                emission.kind,
                emission.session_time,
                emission.payload,
            )
            if not emission.publish:
                continue
            try:
                event = Event.of(self.car, emission.kind, emission.payload)
            except EventError:
                # A detector's bug: stored as it was, never published.
                logger.exception("dropping a malformed %s event", emission.kind)
                continue
            if isinstance(event.payload, DriverFatigueUpdate):
                self._fatigue = event.payload.fatigue
            self._publisher.emit(event)

    def _strategy_batch(self, frames: Frames) -> None:
        """The strategy engine's per-batch work; the other cars when due (≤ 4 Hz)."""
        engine = self.strategy
        if self._fatigue is not None:
            engine.note_fatigue(self._fatigue)
            self._fatigue = None
        others = engine.on_batch(frames)
        if others is None:
            return
        live = self.live
        live.others = others
        if live.strategy is not None:
            live.strategy = live.strategy.model_copy(update={"rejoin": engine.rejoin})

    def _strategy_lap(self, lap: CompletedLap) -> None:
        live = self.live
        strategy, changed = self.strategy.on_lap(
            lap.lap_number,
            lap.lap_time,
            lap.fuel_used,
            lap.pit_lap,
            lap.end_time,
            live.values.get("FuelLevel"),
            live.driver,
            invalid=lap.invalid,
            refuelled=lap.refuelled,
        )
        live.fuel_per_lap = strategy.fuel_per_lap
        live.strategy = strategy
        if changed is not None:
            kind = EventKind.STRATEGY_RECOMMENDATION
            self._publisher.emit(Event(self.car, kind, changed))
            self._writer.add_event(
                self.session_id,
                kind.value,
                lap.end_time,
                changed.model_dump(mode="json"),
            )

    def _context(self) -> BatchContext:
        """What the detectors know of the car besides its frames."""
        live = self.live
        times = [
            row.time for row in reversed(live.recent_laps) if row.time and not row.pit
        ]
        return BatchContext(
            live.car, live.driver, self._stint_started, times, self._car_numbers
        )


class _Once:
    """A function's result, made at the first call and kept."""

    __slots__ = ("_made", "_make")

    def __init__(self, make: Callable[[], BatchContext]) -> None:
        self._make = make
        self._made: BatchContext | None = None

    def __call__(self) -> BatchContext:
        if self._made is None:
            self._made = self._make()
        return self._made


def _lap_completed(row: LapRow) -> LapCompleted:
    return LapCompleted(
        lap=row.lap,
        time=row.time,
        fuel=row.fuel,
        pit=row.pit,
        driver=row.driver,
        invalid=row.invalid,
        refuelled=row.refuelled,
    )


def car_numbers(info: dict[str, Any]) -> dict[int, str]:
    """CarIdx → car number from the session info's ``DriverInfo.Drivers``."""
    numbers: dict[int, str] = {}
    for entry in (info.get("DriverInfo") or {}).get("Drivers") or []:
        if isinstance(entry, dict) and isinstance(entry.get("CarIdx"), int):
            numbers[entry["CarIdx"]] = str(entry.get("CarNumber") or entry["CarIdx"])
    return numbers
