"""The map without GPS: a real recording imported without Lat/Lon draws its track from live channels, cached per track."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from driver_pc.adapters.ibt_file import IbtReader, IbtWriter
from pitbox_appliance.analysis import track_outline as to
from pitbox_appliance.cli import main as pitbox
from pitbox_appliance.dashboard.lap_analysis import (
    compare_laps,
    corner_deltas,
    driven_line,
)
from pitbox_appliance.dashboard.session_data import OUTLINE_DIR_NAME, SessionData
from tests.conftest import real_file

MARTINSVILLE = ("iracing", "ibt", "skmodified_martinsville_2015-05-30_20-32-44.ibt")


def without_gps(source: Path, target: Path) -> Path:
    """A copy of an .ibt with its Lat/Lon channels left out (as live telemetry is)."""
    with IbtReader(source) as reader:
        keep = [c for c in reader.channels if c.name not in ("Lat", "Lon")]
        writer = IbtWriter(
            target,
            keep,
            reader.session_info_text(),
            tick_rate=reader.layout.tick_rate,
        )
        names = [c.name for c in keep]
        for rows in reader.rows():
            writer.write(rows[names])
        writer.close()
    return target


def gps_truth(source: Path) -> to.LiveOutline:
    with IbtReader(source) as reader:
        wanted = ("SessionTime", "LapDistPct", "Lat", "Lon", "OnPitRoad")
        frames = {n: reader.column(n).astype(np.float64) for n in wanted}
    truth = to.outline_from_laps(to.gps_lap_paths(frames))
    assert truth is not None
    return truth


@pytest.fixture(scope="module")
def no_gps_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    source = real_file(*MARTINSVILLE)
    tmp = tmp_path_factory.mktemp("nogps")
    ibt = without_gps(source, tmp / "martinsville_no_gps.ibt")
    url = f"sqlite:///{tmp / 'db' / 'pitbox.sqlite3'}"
    (tmp / "db").mkdir()
    assert pitbox(["import", "--quiet", str(ibt), "--db", url]) == 0
    return url, tmp / "db", source


async def test_a_session_without_gps_gets_the_real_track_shape(
    no_gps_db: tuple[str, Path, Path],
) -> None:
    url, folder, source = no_gps_db
    store = SessionData(url)
    try:
        key = await store.latest_session_key()
        assert key is not None
        outline = await store.outline(key)
        assert outline.kind == "live", outline.note
        assert "live channels" in outline.note
        assert outline.origin is None  # no GPS frame: cars go by lap distance
        # The pit exit the recording starts with, dead-reckoned beside the track.
        assert len(outline.pit_lane) > 20
        # Against the GPS the import hid: within the 5 m.
        truth = gps_truth(source)
        ours = np.column_stack(
            (
                np.interp(truth.pct, outline.pct, outline.x),
                np.interp(truth.pct, outline.pct, outline.y),
            )
        )
        mean, _worst = to.deviation(ours, truth.points)
        assert mean < 5.0
        # Turned landscape for the screen; corners found and named.
        _x, _y, width, height = outline.bounds(margin=0)
        assert width > height
        assert [c.label for c in outline.corners.corners] == [
            "T1 Turns 1-2",
            "T2 Turns 3-4",
        ]
        # Cached per track and layout (Martinsville is TrackID 33) beside the DB.
        cache = folder / OUTLINE_DIR_NAME / "id33.json"
        saved = json.loads(cache.read_text())
        assert saved["outline"]["laps"] == 2
        assert all(i.startswith(f"{key}:") for i in saved["lap_ids"])
    finally:
        store.close()


async def test_the_cached_outline_serves_a_new_session_before_its_first_lap(
    no_gps_db: tuple[str, Path, Path], tmp_path: Path
) -> None:
    url, folder, _source = no_gps_db
    first = SessionData(url)
    try:
        key = await first.latest_session_key()
        assert key is not None
        await first.outline(key)
    finally:
        first.close()
    # Another database (another day) at the same track, whose session has no
    # complete lap: 1.5 s of the recording are imported.
    short = tmp_path / "short.ibt"
    source = real_file(*MARTINSVILLE)
    with IbtReader(source) as reader:
        keep = [c for c in reader.channels if c.name not in ("Lat", "Lon")]
        writer = IbtWriter(short, keep, reader.session_info_text())
        names = [c.name for c in keep]
        writer.write(next(reader.rows(chunk=900))[names])
        writer.close()
    other_url = f"sqlite:///{tmp_path / 'other.sqlite3'}"
    assert pitbox(["import", "--quiet", str(short), "--db", other_url]) == 0
    fresh = SessionData(other_url, outline_dir=folder / OUTLINE_DIR_NAME)
    empty = SessionData(other_url, outline_dir=tmp_path / "nothing-cached")
    try:
        other_key = await fresh.latest_session_key()
        assert other_key is not None
        outline = await fresh.outline(other_key)
        assert outline.kind == "live"
        assert "kept from this track" in outline.note
        assert (await empty.outline(other_key)).kind == "oval"
    finally:
        fresh.close()
        empty.close()


async def test_the_driven_line_and_corner_deltas_without_gps(
    no_gps_db: tuple[str, Path, Path],
) -> None:
    url, _folder, _source = no_gps_db
    store = SessionData(url)
    try:
        key = await store.latest_session_key()
        assert key is not None
        history = await store.history(key)
        assert history is not None
        outline = await store.outline(key)
        green = [lap for lap in history.laps if lap.green]
        assert len(green) >= 2
        traces = [await store.lap_trace(history.session.id, lap) for lap in green[:2]]
        assert traces[0] is not None
        assert traces[1] is not None
        lines = [driven_line(t, outline) for t in traces]
        for line in lines:
            assert line is not None
            assert line.source == "live"
            ref = np.column_stack(
                (
                    np.interp(line.pct, outline.pct, outline.x),
                    np.interp(line.pct, outline.pct, outline.y),
                )
            )
            # On the outline (the average of these very laps), within a car width.
            gap = np.linalg.norm(np.column_stack((line.x, line.y)) - ref, axis=1)
            assert gap.mean() < 2.0
            assert line.throttle is not None
        comparison = compare_laps(traces[0], traces[1], 0.0)
        by_corner = corner_deltas(comparison, outline.corners)
        assert [name for name, _d in by_corner] == ["T1 Turns 1-2", "T2 Turns 3-4"]
        # The zones cover the lap: their deltas add up to the whole lap's.
        assert sum(d for _n, d in by_corner) == pytest.approx(
            comparison.total_delta, abs=0.01
        )
    finally:
        store.close()
