"""TrainingGoalGenerator: goals at a driver's weak corners, with targets measured on the team's best driver (or a chosen reference lap) in the same car and track."""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine

from pitbox_appliance.analysis.corners import (
    CornerMap,
    corner_names,
    find_corners,
    track_corners,
)
from pitbox_appliance.analysis.track_outline import (
    OutlineStore,
    lap_paths,
    outline_from_laps,
)
from pitbox_appliance.coaching.corner_metrics import (
    CHANNELS,
    CornerLap,
    CornerSummary,
    corner_id,
    lap_corner_metrics,
    summarise,
    window,
)
from pitbox_appliance.coaching.profile import (
    MEASURES,
    MetricType,
    ReferenceLap,
    TrainingGoal,
)
from pitbox_appliance.storage.reader import (
    ChunkDecoder,
    LapRow,
    SessionReader,
    SessionRow,
)

FloatArray = npt.NDArray[np.float64]

#: Goals made per driver and track at most (one weak corner each).
MAX_GOALS = 3
#: Targets come from the reference driver's fastest laps, this many at most.
REFERENCE_LAPS = 3
#: A measure's gap counts in the driver's own lap-to-lap spread, never below these.
SPREAD_FLOOR = {
    "braking_point_m": 3.0,
    "throttle_pickup_m": 3.0,
    "min_speed_kph": 1.0,
    "corner_time_sd_s": 0.03,
}
#: Channels decoded for measures and for the outline.
OUTLINE_CHANNELS = ("Yaw", "VelocityX", "VelocityY", "OnPitRoad")


@dataclass(frozen=True, slots=True)
class MeasuredLaps:
    """Clean laps of one driver at a track, each with its corner measures."""

    driver: str
    laps: tuple[tuple[LapRow, dict[int, CornerLap]], ...]

    def summary(self) -> dict[int, CornerSummary]:
        return summarise((row.lap_number, m) for row, m in self.laps)

    def fastest(self, n: int) -> MeasuredLaps:
        ranked = sorted(self.laps, key=lambda p: p[0].lap_time or float("inf"))
        return MeasuredLaps(self.driver, tuple(ranked[:n]))

    @property
    def pace(self) -> float:
        """Median of the fastest three lap times (the team's best has the lowest)."""
        times = sorted(r.lap_time for r, _ in self.laps if r.lap_time is not None)
        return float(statistics.median(times[:3])) if times else float("inf")


@dataclass(slots=True)
class GoalSet:
    """What the generator found: the goals, the reference, and each corner's comparison."""

    driver: str
    track_id: str
    goals: list[TrainingGoal]
    reference: ReferenceLap | None
    corners: CornerMap
    length_m: float
    comparison: list[dict[str, object]] = field(default_factory=list)
    skill_points: dict[tuple[str, str], tuple[float, int]] = field(default_factory=dict)


class TrainingGoalGenerator:
    """Goals for a driver from stored sessions of the same car and track."""

    def __init__(self, engine: Engine, outlines: Path | None = None) -> None:
        self.engine = engine
        self.reader = SessionReader(engine)
        self.outlines = OutlineStore(outlines) if outlines is not None else None
        self._columns: dict[int, dict[str, FloatArray] | None] = {}

    def generate(
        self,
        session_id: int,
        driver: str,
        reference: tuple[int, int] | None = None,
        *,
        now: float | None = None,
    ) -> GoalSet:
        """Goals for ``driver`` at the track and car of session ``session_id``.

        ``reference`` picks the reference lap as ``(session id, lap number)`` (any
        driver, any session of the track); by default it is the fastest clean lap of
        the team's best other driver (lowest median of their three fastest laps).
        """
        now = time.time() if now is None else now
        session = self._session(session_id)
        track_id = _slug(session.track) or f"session-{session.id}"
        siblings = [
            s
            for s in self.reader.sessions()
            if s.track == session.track and s.car == session.car
        ]
        corners, length_m = self.corners(session, siblings)
        measured = self.measure(siblings, corners, length_m)
        mine = measured.get(driver)
        ref_laps, ref_lap = self._reference(
            measured, driver, reference, corners, length_m
        )
        goals: list[TrainingGoal] = []
        comparison: list[dict[str, object]] = []
        points: dict[tuple[str, str], tuple[float, int]] = {}
        if mine is not None and mine.laps:
            own = mine.summary()
            for number, s in own.items():
                for measure, value in s.values.items():
                    points[(measure, corner_id(number))] = (value, len(s.laps))
            if ref_laps is not None:
                target = ref_laps.summary()
                if ref_lap is not None and reference is not None:
                    target = _with_consistency(
                        MeasuredLaps(
                            ref_laps.driver,
                            tuple(
                                p
                                for p in ref_laps.laps
                                if p[0].lap_number == ref_lap.lap_number
                            ),
                        ).summary(),
                        target,
                    )
                comparison = compare(own, target, corners)
                goals = make_goals(
                    driver, track_id, comparison, ref_lap, now, MAX_GOALS
                )
        return GoalSet(
            driver, track_id, goals, ref_lap, corners, length_m, comparison, points
        )

    # ---- corners ----------------------------------------------------------------------
    def corners(
        self, session: SessionRow, siblings: Iterable[SessionRow]
    ) -> tuple[CornerMap, float]:
        """The track's corners: from the cached outline, else built from stored laps."""
        length_m = session.track_length_km * 1000.0
        key = _slug(session.track)
        if self.outlines is not None and key:
            found = track_corners(self.outlines, key)
            if found.corners:
                return found, length_m or _outline_length(self.outlines, key)
        for other in [session, *siblings]:
            columns = self.columns(other.id)
            if columns is None:
                continue
            paths = lap_paths(columns)
            outline = outline_from_laps(paths)
            if outline is None:
                continue
            cmap = find_corners(
                outline.pct, outline.x, outline.y, outline.speed, corner_names(key)
            )
            return cmap, length_m or outline.length_m
        return CornerMap(()), length_m

    # ---- measures ---------------------------------------------------------------------
    def measure(
        self, sessions: Iterable[SessionRow], corners: CornerMap, length_m: float
    ) -> dict[str, MeasuredLaps]:
        """Every driver's clean laps in ``sessions`` with their corner measures."""
        per: dict[str, list[tuple[LapRow, dict[int, CornerLap]]]] = {}
        for session in sessions:
            laps = [
                lap
                for lap in self.reader.laps(session.id, pit=False)
                if lap.lap_time is not None
                and lap.start_time is not None
                and not lap.invalid
                and lap.driver_name
            ]
            if not laps:
                continue
            columns = self.columns(session.id)
            if columns is None:
                continue
            typical = statistics.median(lap.lap_time or 0.0 for lap in laps)
            for lap in laps:
                if (lap.lap_time or 0.0) > typical * 1.07:
                    continue  # a yellow, an incident or traffic
                assert lap.start_time is not None
                assert lap.driver_name
                metrics = lap_corner_metrics(
                    window(columns, lap.start_time, lap.end_time), corners, length_m
                )
                if metrics:
                    per.setdefault(lap.driver_name, []).append((lap, metrics))
        return {d: MeasuredLaps(d, tuple(v)) for d, v in per.items()}

    def columns(self, session_id: int) -> dict[str, FloatArray] | None:
        """The session's stored measure and outline channels (time order, each tick once)."""
        if session_id not in self._columns:
            self._columns[session_id] = self._decode(session_id)
        return self._columns[session_id]

    def _decode(self, session_id: int) -> dict[str, FloatArray] | None:
        wanted = frozenset((*CHANNELS, *OUTLINE_CHANNELS))
        dictionaries = self.reader.chunk_channel_sets(session_id)
        if not dictionaries:
            return None
        decode = ChunkDecoder(dictionaries, wanted, reader=self.reader)
        parts: dict[str, list[FloatArray]] = {}
        for _chunk, batch in decode.batches(self.reader.chunks(session_id)):
            names = batch.frames.dtype.names or ()
            if not all(c in names for c in CHANNELS):
                continue
            for name in wanted:
                if name in names:
                    parts.setdefault(name, []).append(
                        np.asarray(batch.frames[name], dtype=np.float64)
                    )
        if "SessionTime" not in parts:
            return None
        merged = {
            k: np.concatenate(v)
            for k, v in parts.items()
            if len(v) == len(parts["SessionTime"])
        }
        t = merged["SessionTime"]
        _, first = np.unique(t, return_index=True)  # several PCs: each tick once
        return {k: v[first] for k, v in merged.items()}

    # ---- helpers ----------------------------------------------------------------------
    def _session(self, session_id: int) -> SessionRow:
        session = self.reader.session(session_id)
        if session is None:
            raise LookupError(f"no session {session_id}")
        return session

    def _reference(
        self,
        measured: dict[str, MeasuredLaps],
        driver: str,
        reference: tuple[int, int] | None,
        corners: CornerMap,
        length_m: float,
    ) -> tuple[MeasuredLaps | None, ReferenceLap | None]:
        if reference is not None:
            ref_session, ref_number = reference
            for laps in measured.values():
                for row, _m in laps.laps:
                    if row.session_id == ref_session and row.lap_number == ref_number:
                        return laps, _ref(row, laps.driver, self.reader)
            raise LookupError(
                f"reference lap {ref_number} of session {ref_session} is not a clean "
                "timed lap of this car and track"
            )
        others = [m for d, m in measured.items() if d != driver and m.laps]
        if not others:
            return None, None
        best = min(others, key=lambda m: m.pace).fastest(REFERENCE_LAPS)
        row = best.laps[0][0]
        return best, _ref(row, best.driver, self.reader)


def compare(
    own: dict[int, CornerSummary],
    target: dict[int, CornerSummary],
    corners: CornerMap,
) -> list[dict[str, object]]:
    """Per corner: time lost to the reference and, per measure, the gap in own spreads."""
    out: list[dict[str, object]] = []
    for number, mine in sorted(own.items()):
        ref = target.get(number)
        if ref is None:
            continue
        loss = mine.values["corner_time_s"] - ref.values["corner_time_s"]
        gaps: dict[str, float] = {}
        for metric, (measure, _unit, better) in MEASURES.items():
            a, b = mine.value(measure), ref.value(measure)
            if a is None or b is None:
                continue
            per = mine.per_lap.get(measure, ())
            sd = statistics.stdev(per) if len(per) >= 3 else 0.0
            floor = SPREAD_FLOOR[measure]
            worse = (a - b) if better == "lower" else (b - a)
            gaps[metric.value] = worse / max(sd, floor)
        label = next((c.label for c in corners.corners if c.number == number), "")
        out.append(
            {
                "corner": corner_id(number),
                "label": label,
                "loss_s": round(loss, 3),
                "gaps": {k: round(v, 2) for k, v in gaps.items()},
                "own": {k: round(v, 3) for k, v in mine.values.items()},
                "reference": {k: round(v, 3) for k, v in ref.values.items()},
            }
        )
    return out


def make_goals(
    driver: str,
    track_id: str,
    comparison: list[dict[str, object]],
    reference: ReferenceLap | None,
    now: float,
    limit: int = MAX_GOALS,
) -> list[TrainingGoal]:
    """One goal at each of the corners losing most time, on its worst measure."""
    ranked = sorted(comparison, key=lambda c: -float(c["loss_s"]))  # type: ignore[arg-type]
    goals: list[TrainingGoal] = []
    for row in ranked:
        if len(goals) >= limit or float(row["loss_s"]) <= 0:  # type: ignore[arg-type]
            break
        gaps: dict[str, float] = row["gaps"]  # type: ignore[assignment]
        if not gaps:
            continue
        metric_name, gap = max(gaps.items(), key=lambda kv: kv[1])
        if gap <= 0:
            continue
        metric = MetricType(metric_name)
        measure, unit, _better = MEASURES[metric]
        own: dict[str, float] = row["own"]  # type: ignore[assignment]
        ref: dict[str, float] = row["reference"]  # type: ignore[assignment]
        corner = str(row["corner"])
        who = reference.driver if reference else "the reference"
        goals.append(
            TrainingGoal(
                id=f"{_slug(driver)}-{track_id}-{corner.lower()}-{metric.value}-{int(now)}",
                description=(
                    f"{row['label'] or corner} {metric.value}: {measure} "
                    f"{own[measure]:.3g} → {ref[measure]:.3g} {unit} (as {who})"
                ),
                track_id=track_id,
                corner_ids=[corner],
                metric_type=metric,
                measure=measure,
                baseline_value=own[measure],
                target_value=ref[measure],
                current_value=own[measure],
                progress=0.0,
                created_at=now,
                reference=reference,
            )
        )
    return goals


def _with_consistency(
    lap: dict[int, CornerSummary], laps: dict[int, CornerSummary]
) -> dict[int, CornerSummary]:
    """One reference lap's measures, with the spread of the reference driver's laps."""
    out = {}
    for number, s in lap.items():
        values = dict(s.values)
        sd = laps.get(number)
        if sd is not None and "corner_time_sd_s" in sd.values:
            values["corner_time_sd_s"] = sd.values["corner_time_sd_s"]
        out[number] = CornerSummary(number, s.laps, values, s.per_lap)
    return out


def _ref(row: LapRow, driver: str, reader: SessionReader) -> ReferenceLap:
    session = reader.session(row.session_id)
    return ReferenceLap(
        session_id=row.session_id,
        session_key=session.session_key if session else "",
        driver=driver,
        lap_number=row.lap_number,
        lap_time=row.lap_time,
    )


def _outline_length(store: OutlineStore, key: str) -> float:
    found = store.load(key)
    return found[0].length_m if found else 0.0


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
