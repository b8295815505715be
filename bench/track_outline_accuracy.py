"""Accuracy of the track outline built from live channels, against GPS, on every real .ibt.

Live iRacing telemetry has no ``Lat``/``Lon``. For each .ibt under
../shared/data/iracing (any folder) this hides them, builds the outline the way the
pit wall does (``pitbox_appliance.analysis.track_outline``: velocity turned by yaw,
integrated per clean lap, closed at the line, laps averaged), builds the GPS outline of
the same laps, lays the first onto the second with a rigid fit (rotation + shift, no
scaling) and reports the mean and max distance in metres, point by point along the lap.

Files without a complete clean lap (a few seconds in the pit lane) get the second
check only: the dead-reckoned path over their longest unbroken stretch against the GPS
path of the same ticks. Consecutive files of one track (Langley) are also run through
the per-track cache (``OutlineStore``) one after the other, as sessions would be.

Writes JSON through ``_common.write_result`` and the table between the
``track-outline`` markers of docs/accuracy.md (the rest of that file is bench/accuracy.py's).

    .venv/bin/python bench/track_outline_accuracy.py [--data DIR] [--out docs/accuracy.md]
"""

from __future__ import annotations

import argparse
import itertools
import re
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from _common import REAL_DATA, REPO, machine, write_result

from driver_pc.adapters.ibt_file import IbtError, IbtReader
from pitbox_appliance.analysis import track_outline as to

START = "<!-- track-outline:start -->"
END = "<!-- track-outline:end -->"
#: The goal of issue 13: mean deviation of the outline from GPS.
GOAL_MEAN_M = 5.0
WANTED = (*to.CHANNELS, "Lat", "Lon", "OnPitRoad", "LapDist", "Lap")


@dataclass
class FileCheck:
    """One .ibt file's figures."""

    name: str
    track: str
    track_key: str | None
    error: str | None = None
    laps: int = 0
    outline_mean_m: float | None = None
    outline_max_m: float | None = None
    worst_lap_mean_m: float | None = None
    outline_length_m: float | None = None
    gps_length_m: float | None = None
    stretch_m: float = 0.0
    stretch_mean_m: float | None = None
    stretch_max_m: float | None = None


def read_frames(path: Path) -> tuple[dict[str, np.ndarray], str]:
    """The channels the check needs, as float arrays, and the session-info text."""
    with IbtReader(path) as reader:
        names = {c.name for c in reader.channels}
        frames = {
            n: np.asarray(reader.column(n), dtype=np.float64)
            for n in WANTED
            if n in names
        }
        return frames, reader.session_info_text()


def weekend(info_text: str) -> dict[str, Any]:
    """TrackID, TrackName and TrackConfigName from the session info (no YAML needed)."""
    out: dict[str, Any] = {}
    for field in ("TrackID", "TrackName", "TrackConfigName", "TrackDisplayName"):
        found = re.search(rf"^\s*{field}: *(.*)$", info_text, re.MULTILINE)
        if found:
            value = found.group(1).strip()
            out[field] = int(value) if field == "TrackID" and value.isdigit() else value
    return out


def check_file(path: Path) -> tuple[FileCheck, list[to.LapPath], list[to.LapPath]]:
    """The outline and stretch figures of one file, and its live and GPS lap paths."""
    try:
        frames, info = read_frames(path)
    except IbtError as exc:
        return FileCheck(path.name, "", None, error=str(exc)), [], []
    wk = weekend(info)
    check = FileCheck(
        path.name, str(wk.get("TrackDisplayName") or ""), to.track_key(wk)
    )
    hidden = {k: v for k, v in frames.items() if k not in ("Lat", "Lon")}
    live = to.lap_paths(hidden)
    gps = to.gps_lap_paths(frames)
    if len(live) != len(gps):
        raise AssertionError(f"{path.name}: {len(live)} live laps, {len(gps)} GPS laps")
    check.laps = len(live)
    if live:
        outline = to.outline_from_laps(live)
        truth = to.outline_from_laps(gps)
        assert outline is not None
        assert truth is not None
        check.outline_mean_m, check.outline_max_m = to.deviation(
            outline.points, truth.points
        )
        check.worst_lap_mean_m = max(
            to.deviation(a.points, b.points)[0] for a, b in zip(live, gps, strict=True)
        )
        check.outline_length_m = outline.length_m
        check.gps_length_m = truth.length_m
    stretch = longest_stretch(frames)
    if stretch is not None:
        lo, hi = stretch
        x, y = to.dead_reckon(
            frames["SessionTime"][lo:hi],
            *_velocity(frames, lo, hi),
            frames["Yaw"][lo:hi],
        )
        gx, gy = _gps_xy(frames, lo, hi)
        check.stretch_m = float(np.sum(np.hypot(np.diff(gx), np.diff(gy))))
        if check.stretch_m > 0:
            check.stretch_mean_m, check.stretch_max_m = to.deviation(
                np.column_stack((x, y)), np.column_stack((gx, gy))
            )
    return check, live, gps


def longest_stretch(frames: dict[str, np.ndarray]) -> tuple[int, int] | None:
    """The longest run of ticks with GPS, no time gap and no reset or tow in it."""
    t = frames.get("SessionTime")
    lat, lon = frames.get("Lat"), frames.get("Lon")
    if t is None or lat is None or lon is None or "Yaw" not in frames or len(t) < 2:
        return None
    breaks = np.diff(t) > to.MAX_GAP_S
    dist, speed = frames.get("LapDist"), frames.get("Speed")
    if dist is not None and speed is not None:
        pct = frames["LapDistPct"]
        wrap = np.abs(np.diff(pct)) > 0.5
        allowed = 2 * np.maximum(speed[:-1], speed[1:]) * np.diff(t) + 5.0
        breaks |= (np.abs(np.diff(dist)) > allowed) & ~wrap
    fixed = (lat != 0) | (lon != 0)
    breaks |= ~(fixed[:-1] & fixed[1:])
    edges = [0, *(np.flatnonzero(breaks) + 1).tolist(), len(t)]
    lo, hi = max(itertools.pairwise(edges), key=lambda e: e[1] - e[0])
    return (lo, hi) if hi - lo >= 2 and fixed[lo] else None


def cached_runs(
    by_track: dict[str, list[tuple[str, list[to.LapPath], list[to.LapPath]]]],
) -> list[dict[str, Any]]:
    """Tracks with laps in several files: refine the cached outline file by file."""
    rows = []
    for key, files in sorted(by_track.items()):
        with_laps = [f for f in files if f[1]]
        if len(with_laps) < 2:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            store = to.OutlineStore(Path(tmp))
            outline = None
            for name, live, _gps in with_laps:
                laps = {f"{name}:{i}": p for i, p in enumerate(live)}
                outline = store.refine(key, laps, label=key)
            reloaded = store.load(key)
        assert outline is not None
        assert reloaded is not None
        truth = to.outline_from_laps([p for f in with_laps for p in f[2]])
        assert truth is not None
        mean, worst = to.deviation(reloaded[0].points, truth.points)
        rows.append(
            {
                "track_key": key,
                "files": len(with_laps),
                "laps": reloaded[0].laps,
                "mean_m": mean,
                "max_m": worst,
            }
        )
    return rows


def render(checks: list[FileCheck], cached: list[dict[str, Any]], cmd: str) -> str:
    """The markdown block between the markers."""

    def m(v: float | None) -> str:
        return "—" if v is None else f"{v:.2f}"

    lines = [
        START,
        "## Track outline without GPS (issue 13 §1)",
        "",
        "Each real `.ibt` with `Lat`/`Lon` hidden: the outline from `VelocityX`/`VelocityY`",
        "turned by `Yaw`, integrated per clean lap, closed at the line, laps averaged",
        "(`pitbox_appliance/analysis/track_outline.py`), laid on the GPS outline of the",
        "same laps by a rigid fit (rotation + shift, no scaling); distances point by point",
        f"along the lap (512 points). Goal: mean ≤ {GOAL_MEAN_M:g} m. *Stretch*: the",
        "dead-reckoned path of the file's longest unbroken run of ticks (no loop closure)",
        "against its GPS path — the only check a file without a complete lap allows.",
        "",
        "| file | track | clean laps | outline mean m | outline max m | worst single lap mean m "
        "| length m (ours / GPS) | stretch m | stretch mean m | stretch max m |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in checks:
        if c.error:
            lines.append(
                f"| {c.name} | — | unreadable: {c.error.split(': ', 1)[-1]} "
                "| | | | | | | |"
            )
            continue
        length = (
            f"{c.outline_length_m:.0f} / {c.gps_length_m:.0f}"
            if c.outline_length_m is not None and c.gps_length_m is not None
            else "—"
        )
        lines.append(
            f"| {c.name} | {c.track} | {c.laps} | {m(c.outline_mean_m)} "
            f"| {m(c.outline_max_m)} | {m(c.worst_lap_mean_m)} | {length} "
            f"| {c.stretch_m:.0f} | {m(c.stretch_mean_m)} | {m(c.stretch_max_m)} |"
        )
    if cached:
        lines += [
            "",
            "Through the per-track cache, file after file (as sessions would refine it):",
            "",
            "| track key | files | laps in cache | mean m | max m |",
            "|---|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r['track_key']} | {r['files']} | {r['laps']} | {r['mean_m']:.2f} "
            f"| {r['max_m']:.2f} |"
            for r in cached
        ]
    measured = [c.outline_mean_m for c in checks if c.outline_mean_m is not None]
    verdict = (
        f"worst file mean {max(measured):.2f} m: goal met"
        if measured and max(measured) <= GOAL_MEAN_M
        else "goal NOT met"
        if measured
        else "no file had a clean lap"
    )
    lines += ["", f"{verdict}. Command: `{cmd}`", END]
    return "\n".join(lines)


def write_block(doc: Path, block: str) -> None:
    """Replace the marked block of ``doc`` (append it when the markers are absent)."""
    text = doc.read_text(encoding="utf-8") if doc.exists() else ""
    if START in text and END in text:
        head, rest = text.split(START, 1)
        _old, tail = rest.split(END, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + block + "\n"
    doc.write_text(text, encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REAL_DATA)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "accuracy.md")
    args = parser.parse_args()
    files = sorted((args.data / "iracing").rglob("*.ibt"))
    if not files:
        print(f"no .ibt files under {args.data / 'iracing'} (see its README)")
        return 1
    checks: list[FileCheck] = []
    by_track: dict[str, list[tuple[str, list[to.LapPath], list[to.LapPath]]]] = (
        defaultdict(list)
    )
    for path in files:
        check, live, gps = check_file(path)
        checks.append(check)
        if check.track_key:
            by_track[check.track_key].append((path.name, live, gps))
        print(
            f"{path.name}: laps {check.laps} outline mean/max "
            f"{check.outline_mean_m} / {check.outline_max_m} m; stretch "
            f"{check.stretch_m:.0f} m mean/max {check.stretch_mean_m} / "
            f"{check.stretch_max_m} m {check.error or ''}"
        )
    cached = cached_runs(by_track)
    for row in cached:
        print(f"cache {row}")
    cmd = ".venv/bin/python bench/track_outline_accuracy.py"
    write_block(args.out, render(checks, cached, cmd))
    print(f"table written to {args.out}")
    write_result(
        "track_outline_accuracy",
        {},
        {
            "machine": machine(),
            "goal_mean_m": GOAL_MEAN_M,
            "files": [c.__dict__ for c in checks],
            "cached": cached,
        },
    )
    measured = [c.outline_mean_m for c in checks if c.outline_mean_m is not None]
    return 0 if measured and max(measured) <= GOAL_MEAN_M else 1


def _velocity(
    frames: dict[str, np.ndarray], lo: int, hi: int
) -> tuple[np.ndarray, np.ndarray]:
    if "VelocityX" in frames and "VelocityY" in frames:
        return frames["VelocityX"][lo:hi], frames["VelocityY"][lo:hi]
    speed = frames["Speed"][lo:hi]
    return speed, np.zeros_like(speed)


def _gps_xy(frames: dict[str, np.ndarray], lo: int, hi: int) -> tuple[Any, Any]:
    lat, lon = frames["Lat"][lo:hi], frames["Lon"][lo:hi]
    lat0, lon0 = float(lat.mean()), float(lon.mean())
    return (
        (lon - lon0) * np.cos(np.radians(lat0)) * 111_320.0,
        (lat - lat0) * 111_320.0,
    )


if __name__ == "__main__":
    sys.exit(main())
