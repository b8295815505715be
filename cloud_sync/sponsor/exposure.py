"""SponsorExposureTracker: our car on the broadcast camera, laps led, time in the class top 3 / top 10, weighted per sponsor."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from pydantic import ValidationError

from cloud_sync.compacted import CompactedSession
from cloud_sync.sponsor.livery import LiveryConfig
from driver_pc.protocol.events import CameraView, StoredKind

MAX_STEP_S = 1.0  # a gap longer than this between two rows counts as nothing seen
LINE_LAG_S = 0.25  # positions are read this long after the line (they update there)

F64 = np.ndarray[Any, np.dtype[np.float64]]


@dataclass
class SponsorRow:
    """One sponsor's exposure: seconds visible, weighted by part and camera group."""

    sponsor: str
    placements: list[str]
    weighted_s: float
    by_placement: dict[str, float]


@dataclass
class ExposureReport:
    """The figures of one race for the sponsor report and the statboard."""

    session: str
    session_key: str
    track: str
    car_idx: int | None
    camera_source: str | None
    broadcast_s: float  # seconds of camera data seen
    on_camera_s: float | None  # our car on the broadcast camera
    by_group: dict[str, float] = field(default_factory=dict)  # group name -> seconds
    shots: int = 0  # cuts to our car
    laps: int = 0
    laps_led: int | None = None
    class_laps_led: int | None = None
    class_top3_s: float | None = None
    class_top10_s: float | None = None
    leading_s: float | None = None
    race_s: float = 0.0
    sponsors: list[SponsorRow] = field(default_factory=list)
    timeline: dict[str, list[float]] = field(default_factory=dict, repr=False)
    notes: list[str] = field(default_factory=list)

    @property
    def on_camera_share(self) -> float | None:
        if self.on_camera_s is None or self.broadcast_s <= 0:
            return None
        return self.on_camera_s / self.broadcast_s

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("timeline")
        out["on_camera_share"] = self.on_camera_share
        return out


class SponsorExposureTracker:
    """Sponsor exposure of our car in one compacted session (seed 5.6).

    The camera comes from ``CamCarIdx``/``CamGroupNumber`` of spectating or broadcast
    PCs: the core's ``camera_view`` pieces of each PC out of the car (it stores only
    the driving PC's frames), else a stream's stored rows where that PC was not in the
    car (``IsOnTrack`` 0, or a stream without ``IsOnTrack``). Several PCs are merged
    in time order, each second counted once (a teammate spectates while another
    drives, so together they cover the race; a driving PC's camera is its own
    cockpit, not the broadcast). ``camera_source`` restricts it to one PC.
    Standings from ``CarIdxPosition``/``CarIdxClassPosition`` of our car (else
    ``PlayerCarPosition``/``PlayerCarClassPosition``).
    """

    def __init__(
        self,
        session: CompactedSession,
        livery: LiveryConfig | None = None,
        camera_source: str | None = None,
    ) -> None:
        self.session = session
        self.livery = livery
        self.camera_source = camera_source

    def report(self) -> ExposureReport:
        s = self.session
        notes: list[str] = []
        car = _our_car_idx(s.session_info)
        columns = _telemetry(s, car)
        groups = _camera_groups(s.session_info)
        out = ExposureReport(
            session=s.path,
            session_key=s.session_key,
            track=s.track,
            car_idx=car,
            camera_source=None,
            broadcast_s=0.0,
            on_camera_s=None,
            laps=sum(1 for lap in s.laps if lap.start_time is not None),
            notes=notes,
        )
        if car is None:
            notes.append("the session info names no car of ours (DriverCarIdx)")
        sources, camera = self._camera_rows(columns, notes)
        if camera is not None and car is not None:
            self._camera(out, camera, car, groups)
            out.camera_source = ", ".join(sources)
        elif car is not None:
            notes.append(
                "no camera data (CamCarIdx) in any stream: run a shim on a "
                "spectating or broadcast PC"
            )
        self._standings(out, columns)
        return out

    # ---- camera ----------------------------------------------------------------------
    def _camera_rows(
        self, streams: dict[str, dict[str, F64]], notes: list[str]
    ) -> tuple[list[str], dict[str, F64] | None]:
        """The PCs used and what they watched: start, seconds, car and group by time.

        None: no camera data. Where PCs overlap, each second counts once (the view
        that began first).
        """
        pieces = self._camera_pieces(notes)
        parts: dict[str, dict[str, F64]] = {}
        for name, views in pieces.items():
            parts[name] = {
                "t": np.array([v.start for v in views], dtype=np.float64),
                "dt": np.array([v.end - v.start for v in views], dtype=np.float64),
                "CamCarIdx": np.array([v.car_idx for v in views], dtype=np.float64),
                "CamGroupNumber": np.array(
                    [np.nan if v.group is None else v.group for v in views],
                    dtype=np.float64,
                ),
            }
        for name, cols in streams.items():
            if name in parts or "CamCarIdx" not in cols:
                continue
            keep = np.isfinite(cols["CamCarIdx"])
            if "in_car" in cols:
                keep &= cols["in_car"] != 1
            if keep.any():
                t = cols["SessionTime"]
                group = cols.get("CamGroupNumber", np.full(len(t), np.nan))
                parts[name] = {
                    "t": t[keep],
                    "dt": _steps(t)[keep],
                    "CamCarIdx": cols["CamCarIdx"][keep],
                    "CamGroupNumber": group[keep],
                }
        if self.camera_source is not None:
            parts = {k: v for k, v in parts.items() if k == self.camera_source}
        if not parts:
            return [], None
        used = sorted(parts)
        merged = {
            k: np.concatenate([parts[name][k] for name in used])
            for k in ("t", "dt", "CamCarIdx", "CamGroupNumber")
        }
        order = np.argsort(merged["t"], kind="stable")
        merged = {k: v[order] for k, v in merged.items()}
        # Each second once: a view starts where the views before it ended, if later.
        ends = merged["t"] + merged["dt"]
        covered = np.concatenate(([-np.inf], np.maximum.accumulate(ends)[:-1]))
        starts = np.maximum(merged["t"], covered)
        merged["dt"] = np.clip(ends - starts, 0.0, None)
        merged["t"] = starts
        return used, merged

    def _camera_pieces(self, notes: list[str]) -> dict[str, list[CameraView]]:
        """The core's ``camera_view`` pieces, per PC (malformed ones noted, skipped)."""
        out: dict[str, list[CameraView]] = {}
        bad = 0
        for event in self.session.events_of(StoredKind.CAMERA_VIEW.value):
            try:
                view = CameraView.model_validate(event.payload)
            except ValidationError:
                bad += 1
                continue
            if view.end >= view.start:
                out.setdefault(view.source, []).append(view)
        if bad:
            notes.append(f"{bad} malformed camera_view events skipped")
        return out

    def _camera(
        self,
        out: ExposureReport,
        cols: dict[str, F64],
        car: int,
        groups: dict[int, str],
    ) -> None:
        t = cols["t"]
        dt = cols["dt"]
        cam = cols["CamCarIdx"]
        group = cols["CamGroupNumber"]
        valid = np.isfinite(cam)
        out.broadcast_s = float(dt[valid].sum())
        ours = valid & (cam == car)
        out.on_camera_s = float(dt[ours].sum())
        out.shots = int(np.count_nonzero(ours[1:] & ~ours[:-1]) + int(ours[:1].any()))
        by_group: dict[str, float] = {}
        for number in np.unique(group[ours & np.isfinite(group)]):
            name = groups.get(int(number), f"group {int(number)}")
            by_group[name] = float(dt[ours & (group == number)].sum())
        out.by_group = dict(sorted(by_group.items(), key=lambda kv: -kv[1]))
        out.timeline["t"] = t[ours].tolist()
        out.timeline["span"] = [float(t[0]), float(t[-1] + dt[-1])] if len(t) else []
        if self.livery is None:
            return
        for sponsor in self.livery.sponsors:
            per_part: dict[str, float] = {}
            for part in sponsor.placements:
                total = 0.0
                for number in np.unique(group[ours & np.isfinite(group)]):
                    n = int(number)
                    weight = self.livery.visibility(
                        part, n, groups.get(n, f"group {n}")
                    )
                    total += weight * float(dt[ours & (group == number)].sum())
                per_part[part] = total
            out.sponsors.append(
                SponsorRow(
                    sponsor.name,
                    list(sponsor.placements),
                    sum(per_part.values()),
                    per_part,
                )
            )
        out.sponsors.sort(key=lambda r: -r.weighted_s)

    # ---- standings -------------------------------------------------------------------
    def _standings(
        self, out: ExposureReport, streams: dict[str, dict[str, F64]]
    ) -> None:
        best: dict[str, F64] | None = None
        for cols in streams.values():
            if "class_pos" in cols or "pos" in cols:
                if best is None or len(cols["SessionTime"]) > len(best["SessionTime"]):
                    best = cols
        if best is None:
            out.notes.append("no positions in the telemetry: laps led not counted")
            return
        t = best["SessionTime"]
        dt = _steps(t)
        out.race_s = float(dt.sum())
        pos = best.get("pos")
        cpos = best.get("class_pos")
        if cpos is not None:
            known = cpos >= 1
            out.class_top3_s = float(dt[known & (cpos <= 3)].sum())
            out.class_top10_s = float(dt[known & (cpos <= 10)].sum())
        if pos is not None:
            out.leading_s = float(dt[pos == 1].sum())
        # Race laps only: the opening part-lap from the grid (no start) is not one.
        ends = np.array(
            [lap.end_time for lap in self.session.laps if lap.start_time is not None],
            dtype=np.float64,
        )
        if len(ends) == 0 or len(t) == 0:
            return
        at = np.searchsorted(t, ends + LINE_LAG_S)
        at = np.clip(at, 0, len(t) - 1)
        if pos is not None:
            out.laps_led = int(np.count_nonzero(pos[at] == 1))
        if cpos is not None:
            out.class_laps_led = int(np.count_nonzero(cpos[at] == 1))


def _steps(t: F64) -> F64:
    """Seconds each row stands for: the step to the next row (gaps over 1 s: none)."""
    if len(t) == 0:
        return np.zeros(0)
    dt = np.diff(t, append=t[-1])
    if len(t) > 1:
        dt[-1] = float(np.median(dt[:-1]))
    dt[(dt < 0) | (dt > MAX_STEP_S)] = 0.0
    return dt


def _our_car_idx(info: dict[str, Any]) -> int | None:
    drivers = info.get("DriverInfo")
    if isinstance(drivers, dict):
        idx = drivers.get("DriverCarIdx")
        if isinstance(idx, int) and not isinstance(idx, bool):
            return idx
    return None


def _camera_groups(info: dict[str, Any]) -> dict[int, str]:
    groups: dict[int, str] = {}
    camera = info.get("CameraInfo")
    entries = camera.get("Groups") if isinstance(camera, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict):
            try:
                groups[int(entry["GroupNum"])] = str(entry.get("GroupName") or "")
            except (KeyError, TypeError, ValueError):
                continue
    return groups


def _telemetry(session: CompactedSession, car: int | None) -> dict[str, dict[str, F64]]:
    """Per source: SessionTime, CamCarIdx, CamGroupNumber, pos and class_pos of our car."""
    item = next((f for f in session.manifest.files if f.table == "telemetry"), None)
    if item is None or not (session.root / item.path).is_file():
        return {}
    path = session.root / item.path
    names = set(pq.read_schema(path).names)
    if "SessionTime" not in names:
        return {}
    wanted = {"SessionTime": "SessionTime"}
    for name in ("CamCarIdx", "CamGroupNumber"):
        if name in names:
            wanted[name] = name
    if "IsOnTrack" in names:
        wanted["IsOnTrack"] = "in_car"
    if car is not None:
        for channel, alias in (
            ("CarIdxPosition", "pos"),
            ("CarIdxClassPosition", "class_pos"),
        ):
            column = next(
                (n for n in names if n.startswith(f"{channel}_") and _index(n) == car),
                None,
            )
            if column is not None:
                wanted[column] = alias
    for channel, alias in (
        ("PlayerCarPosition", "pos"),
        ("PlayerCarClassPosition", "class_pos"),
    ):
        if alias not in wanted.values() and channel in names:
            wanted[channel] = alias
    read = ["source", *wanted] if "source" in names else list(wanted)
    table = pq.read_table(path, columns=read)
    if "source" in names:
        sources = table["source"].to_numpy(zero_copy_only=False).astype(str)
    else:
        sources = np.full(table.num_rows, "", dtype=object).astype(str)
    out: dict[str, dict[str, F64]] = {}
    data = {
        alias: np.asarray(
            table[column].to_numpy(zero_copy_only=False), dtype=np.float64
        )
        for column, alias in wanted.items()
    }
    for source in np.unique(sources):
        keep = sources == source
        cols = {alias: values[keep] for alias, values in data.items()}
        order = np.argsort(cols["SessionTime"], kind="stable")
        cols = {k: v[order] for k, v in cols.items()}
        # A spectating PC's player channels read 0: not our standing.
        for alias in ("pos", "class_pos"):
            if alias in cols and not (cols[alias] >= 1).any():
                del cols[alias]
        if "CamCarIdx" in cols and not np.isfinite(cols["CamCarIdx"]).any():
            del cols["CamCarIdx"]
        out[str(source)] = cols
    return out


def _index(column: str) -> int | None:
    tail = column.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else None
