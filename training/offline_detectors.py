"""Runs recorded or simulated frames through segmentation and the detectors as the core does, without a broker."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pitbox_appliance.analysis.corners import CornerMap
from pitbox_appliance.analysis.lap_inputs import LapInputBuffer
from pitbox_appliance.analysis.segmentation import LapSegmenter
from pitbox_appliance.detectors.base import (
    POOL_FRAMES,
    BatchContext,
    DetectorSet,
    Emission,
    Frames,
    LapContext,
)
from pitbox_appliance.detectors.incidents import IncidentDetector


@dataclass
class OfflineRun:
    """What the detectors emitted, the laps they saw and the per-batch cost."""

    emissions: list[Emission] = field(default_factory=list)
    laps: list[LapContext] = field(default_factory=list)
    batch_seconds: list[float] = field(default_factory=list)
    batch_frames: list[int] = field(default_factory=list)

    def of(self, kind: str) -> list[Emission]:
        """Emissions of one kind, in order."""
        return [e for e in self.emissions if e.kind == kind]


def run_detectors(
    batches: Iterable[Frames],
    *,
    car: str = "car",
    driver_at: Callable[[float], str] | None = None,
    car_numbers: dict[int, str] | None = None,
    names: Iterable[str] | None = None,
    min_frames: int = POOL_FRAMES,
    corners: CornerMap | None = None,
) -> OfflineRun:
    """Feed ``batches`` (record arrays in time order) to a fresh detector set.

    ``driver_at(session_time)`` names the driver in the car (the core learns it from
    driver-change messages); a new driver or a pit exit starts a stint, as in the core.
    ``corners`` is the track's corner map, as the core gives it once an outline exists.
    """
    detectors = DetectorSet(names, min_frames=min_frames)
    segmenter = LapSegmenter()
    inputs = LapInputBuffer()
    run = OfflineRun()
    stint_started = float("-inf")
    driver = ""
    exits_seen = 0
    recent: list[float] = []
    for frames in batches:
        if len(frames) == 0:
            continue
        t0 = float(frames["SessionTime"][0])
        now_driver = driver_at(t0) if driver_at else "driver"
        if now_driver != driver:
            driver, stint_started = now_driver, t0
        completed = segmenter.feed(frames)
        inputs.append(frames)
        if len(segmenter.pit_exits) > exits_seen:
            exits_seen = len(segmenter.pit_exits)
            stint_started = max(stint_started, segmenter.pit_exits[-1])
        ctx = BatchContext(car, driver, stint_started, recent[-10:], car_numbers or {})
        start = time.perf_counter()
        run.emissions += detectors.on_frames(frames, ctx)
        if completed:  # as the core does: every frame seen before the lap
            run.emissions += detectors.flush(ctx)
        run.batch_seconds.append(time.perf_counter() - start)
        run.batch_frames.append(len(frames))
        for lap in completed:
            metrics = inputs.lap(lap.start_time, lap.end_time)
            done = LapContext(
                car,
                driver,
                lap.lap_number,
                lap.start_time,
                lap.end_time,
                lap.lap_time,
                lap.pit_lap,
                lap.fuel_used,
                metrics,
                stint_started,
                corners,
            )
            run.laps.append(done)
            if lap.lap_time is not None and not lap.pit_lap:
                recent.append(lap.lap_time)
            run.emissions += detectors.on_lap(done)
    incident = detectors.get("incident")
    if isinstance(incident, IncidentDetector):
        run.emissions += incident.flush(detectors.shared)
    return run
