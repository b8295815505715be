"""The track's outline and corners in a compacted set: the pit wall's outline, else built from the session's laps.

Reports and analytics on the cloud side count losses and mistakes by corner, so the
set carries the corner map the pit wall used: the track's cached live-channel outline
(``track_outlines/`` beside the database, refined over sessions) when there is one,
else one built here from this session's own clean laps (GPS where recorded, else
speed and yaw), with the same corner finder and per-track names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pitbox_appliance.analysis.corners import CornerMap, corner_names, find_corners
from pitbox_appliance.analysis.track_outline import (
    LapPath,
    LiveOutline,
    OutlineStore,
    gps_lap_paths,
    lap_paths,
    outline_from_laps,
    track_key,
)

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
Frames = np.ndarray[Any, np.dtype[np.void]]

#: Channels the outline is built from (Lat/Lon only where a disk file recorded them).
TRACK_CHANNELS = (
    "SessionTime",
    "LapDistPct",
    "Speed",
    "VelocityX",
    "VelocityY",
    "Yaw",
    "OnPitRoad",
    "Lat",
    "Lon",
)
#: Frames kept per source: 20 minutes at 60 Hz holds several clean laps of any track.
MAX_FRAMES_PER_SOURCE = 20 * 60 * 60
#: Clean laps averaged into an outline built here (the tightest closures first).
OUTLINE_LAPS = 5


@dataclass(frozen=True, slots=True)
class TrackMap:
    """A track's outline and corners, and where they came from."""

    key: str | None
    source: (
        str  # "pit wall outline (N laps)", "GPS of N laps", "live channels of N laps"
    )
    pct: FloatArray
    x: FloatArray
    y: FloatArray
    speed: FloatArray | None
    corners: CornerMap

    def outline_table(self) -> pa.Table:
        """``pct``, ``x_m``, ``y_m`` and ``speed_mps`` on the outline's grid."""
        speed = self.speed if self.speed is not None else np.full(len(self.pct), np.nan)
        return pa.table(
            {
                "pct": pa.array(self.pct, pa.float64()),
                "x_m": pa.array(self.x, pa.float64()),
                "y_m": pa.array(self.y, pa.float64()),
                "speed_mps": pa.array(speed, pa.float64()),
            }
        )

    def corners_table(self) -> pa.Table:
        """One row per corner: number, name, label, extent, apex and its zone."""
        found = self.corners.corners
        bounds = self.corners.bounds
        return pa.table(
            {
                "number": pa.array([c.number for c in found], pa.int32()),
                "name": pa.array([c.name for c in found], pa.string()),
                "label": pa.array([c.label for c in found], pa.string()),
                "start_pct": pa.array([c.start for c in found], pa.float64()),
                "apex_pct": pa.array([c.apex for c in found], pa.float64()),
                "end_pct": pa.array([c.end for c in found], pa.float64()),
                # The zone a corner counts (the braking before it included): from
                # zone_start_pct to zone_end_pct, across the line when end < start.
                "zone_start_pct": pa.array(list(bounds[:-1]), pa.float64()),
                "zone_end_pct": pa.array(list(bounds[1:]), pa.float64()),
                "direction": pa.array([c.direction for c in found], pa.string()),
                "radius_m": pa.array([c.radius_m for c in found], pa.float64()),
                "min_speed_mps": pa.array([c.min_speed for c in found], pa.float64()),
            }
        )


@dataclass
class TrackCollector:
    """Keeps the outline channels of the first ``MAX_FRAMES_PER_SOURCE`` frames per source."""

    _parts: dict[str, dict[str, list[FloatArray]]] = field(default_factory=dict)
    _counts: dict[str, int] = field(default_factory=dict)

    def __call__(self, source: str, frames: Frames) -> None:
        names = frames.dtype.names or ()
        if "SessionTime" not in names or "LapDistPct" not in names:
            return
        kept = self._counts.get(source, 0)
        room = MAX_FRAMES_PER_SOURCE - kept
        if room <= 0:
            return
        rows = frames[:room]
        parts = self._parts.setdefault(source, {})
        for name in TRACK_CHANNELS:
            if name in names:
                column = np.asarray(rows[name], dtype=np.float64).reshape(len(rows), -1)
                parts.setdefault(name, []).append(column[:, 0])
        self._counts[source] = kept + len(rows)

    def streams(self) -> list[dict[str, FloatArray]]:
        """Each source's kept channels, concatenated (only channels every part had)."""
        out = []
        for parts in self._parts.values():
            length = len(parts["SessionTime"])
            whole = {n: np.concatenate(p) for n, p in parts.items() if len(p) == length}
            out.append(whole)
        return out


def track_map(
    collector: TrackCollector,
    weekend_info: Mapping[str, Any] | None,
    track_name: str,
    outlines: Path | None,
) -> TrackMap | None:
    """The corner map to store with a session; None when neither cache nor laps give one."""
    key = track_key(weekend_info, track_name)
    names = corner_names(key)
    cached = OutlineStore(outlines).load(key) if outlines is not None and key else None
    if cached is not None:
        kept = cached[0]
        laps = "1 lap" if kept.laps == 1 else f"{kept.laps} laps"
        return _mapped(key, f"pit wall outline ({laps})", kept, names)
    gps: list[LapPath] = []
    live: list[LapPath] = []
    for stream in collector.streams():
        gps += gps_lap_paths(stream)
        live += lap_paths(stream)
    for paths, what in ((gps, "GPS"), (live, "live channels")):
        best = sorted(paths, key=lambda p: p.closure_m)[:OUTLINE_LAPS]
        outline = outline_from_laps(best)
        if outline is not None:
            laps = "1 lap" if len(best) == 1 else f"{len(best)} laps"
            return _mapped(key, f"{what} of {laps}", outline, names)
    return None


def _mapped(
    key: str | None,
    source: str,
    outline: LiveOutline,
    names: tuple[tuple[float, str], ...],
) -> TrackMap:
    corners = find_corners(outline.pct, outline.x, outline.y, outline.speed, names)
    return TrackMap(
        key, source, outline.pct, outline.x, outline.y, outline.speed, corners
    )
