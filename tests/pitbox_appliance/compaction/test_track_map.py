"""The compacted set carries the track map: the pit wall's cached outline, else one built from the session's laps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from cloud_sync.compacted import load_session
from pitbox_appliance.analysis.corners import find_corners
from pitbox_appliance.analysis.track_outline import OutlineStore, outline_from_laps
from pitbox_appliance.compaction import compact_session
from pitbox_appliance.compaction.track import track_map
from tests.conftest import import_into, readonly_engine, real_file

MARTINSVILLE = ("iracing", "ibt", "skmodified_martinsville_2015-05-30_20-32-44.ibt")


@pytest.fixture(scope="module")
def sim_db(tmp_path_factory: pytest.TempPathFactory, sim_ibt: Path) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'sim.sqlite3'}"
    import_into(url, sim_ibt)
    return url


def _compact(url: str, outbox: Path, outlines: Path | None = None) -> Path:
    engine = readonly_engine(url)
    try:
        manifest = compact_session(engine, 1, outbox, outlines=outlines)
    finally:
        engine.dispose()
    return outbox / manifest.path


def _zones_partition_the_lap(root: Path) -> None:
    session = load_session(root, telemetry=False)
    assert session.corners
    for pct in np.linspace(0.0, 0.999, 400):
        holding = [c.number for c in session.corners if c.holds(float(pct))]
        assert len(holding) == 1, (pct, holding)


def test_a_session_without_a_cached_outline_gets_one_from_its_own_laps(
    sim_db: str, tmp_path: Path
) -> None:
    root = _compact(sim_db, tmp_path / "outbox", outlines=tmp_path / "no-cache")
    session = load_session(root, telemetry=False)
    source = session.manifest.session["track_map"]
    assert source.startswith(("live channels of", "GPS of")), source
    assert session.manifest.file("corners").rows == len(session.corners)
    outline = pq.read_table(root / session.manifest.file("track_outline").path)
    assert outline.num_rows >= 100
    # The corners are the corner finder's on the stored outline, nothing else.
    cols = outline.to_pydict()
    speed = np.array(cols["speed_mps"], dtype=np.float64)
    assert np.all(np.isfinite(speed))  # the apexes are where the car was slowest
    again = find_corners(
        np.array(cols["pct"]), np.array(cols["x_m"]), np.array(cols["y_m"]), speed
    )
    assert [c.number for c in session.corners] == [c.number for c in again.corners]
    for mine, theirs in zip(session.corners, again.corners, strict=True):
        assert mine.apex == pytest.approx(theirs.apex, abs=0.01)
    _zones_partition_the_lap(root)


def test_the_pit_walls_cached_outline_wins(sim_db: str, tmp_path: Path) -> None:
    # A cached outline of a different shape (a plain circle with two tight bends
    # squeezed in) under the session's track key: its corners are the set's.
    first = _compact(sim_db, tmp_path / "first", outlines=tmp_path / "empty")
    key = load_session(first, telemetry=False).manifest.session["track_key"]
    assert key
    grid = np.linspace(0.0, 1.0, 257)
    angle = 2 * np.pi * grid
    x, y = 300 * np.cos(angle), 120 * np.sin(angle)  # an ellipse: two ends to turn
    from pitbox_appliance.analysis.track_outline import LapPath

    path = LapPath(grid, x, y, closure_m=0.0, length_m=1500.0, speed=None)
    cached = outline_from_laps([path])
    assert cached is not None
    store = OutlineStore(tmp_path / "outlines")
    store.save(key, cached, frozenset({"a:1"}))
    loaded = store.load(key)
    assert loaded is not None
    cached = loaded[0]  # as the pit wall reads it back
    root = _compact(sim_db, tmp_path / "second", outlines=tmp_path / "outlines")
    session = load_session(root, telemetry=False)
    assert session.manifest.session["track_map"] == "pit wall outline (1 lap)"
    expected = find_corners(cached.pct, cached.x, cached.y, cached.speed)
    assert [round(c.apex, 4) for c in session.corners] == [
        round(c.apex, 4) for c in expected.corners
    ]


def test_real_martinsville_set_has_its_two_named_hairpins(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.sqlite3'}"
    import_into(url, real_file(*MARTINSVILLE))
    root = _compact(url, tmp_path / "outbox", outlines=tmp_path / "none")
    session = load_session(root, telemetry=False)
    assert session.manifest.session["track_map"].startswith("GPS of")
    assert session.manifest.session["track_key"] == "id33"
    assert [c.label for c in session.corners] == ["T1 Turns 1-2", "T2 Turns 3-4"]
    _zones_partition_the_lap(root)


def test_no_laps_no_map() -> None:
    from pitbox_appliance.compaction.track import TrackCollector

    assert track_map(TrackCollector(), None, "", None) is None


def test_mistake_hotspots_count_by_corner_zone() -> None:
    from pitbox_appliance.compaction.summary import mistake_hotspots

    grid = np.linspace(0.0, 1.0, 257)
    angle = 2 * np.pi * grid
    corners = find_corners(grid, 300 * np.cos(angle), 120 * np.sin(angle))
    assert len(corners.corners) == 2
    first, second = corners.corners
    # Three braking mistakes just before the second corner (its approach), one line
    # mistake at the first corner's apex, and a mistake with no lap distance.
    mistakes = [
        {"section": 9, "mistake": "braking", "lap_dist_pct": second.apex - 0.03},
        {"section": 9, "mistake": "braking", "lap_dist_pct": second.apex - 0.02},
        {"section": 9, "mistake": "braking", "lap_dist_pct": second.apex},
        {"section": 0, "mistake": "line", "lap_dist_pct": first.apex},
        {"section": 4, "mistake": "throttle"},
    ]
    spots = mistake_hotspots(mistakes, corners)
    assert [(s["trackSection"], s["type"], s["frequency"]) for s in spots] == [
        (second.label, "braking", 3),
        (first.label, "line", 1),
        ("S5", "throttle", 1),
    ]
    # Without a corner map: the detector's sections.
    plain = mistake_hotspots(mistakes)
    assert {s["trackSection"] for s in plain} == {"S10", "S1", "S5"}
