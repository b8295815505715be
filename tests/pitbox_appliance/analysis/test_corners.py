"""Corners from an outline and speed: found on real and made-up tracks, numbered, named, zones."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest

from driver_pc.adapters.ibt_file import IbtReader
from pitbox_appliance.analysis import corners as co
from pitbox_appliance.analysis import track_outline as to
from tests.conftest import real_file


def course(parts: list[tuple[str, float, float]], points: int = 1024) -> np.ndarray:
    """A closed track from ("S", length, 0) straights and ("A", radius, degrees) arcs."""
    x, y, heading = [0.0], [0.0], 0.0
    for kind, a, b in parts:
        if kind == "S":
            steps = max(2, int(a))
            for _ in range(steps):
                x.append(x[-1] + a / steps * math.cos(heading))
                y.append(y[-1] + a / steps * math.sin(heading))
        else:
            turn = math.radians(b)
            steps = max(4, int(abs(a * turn)))
            for _ in range(steps):
                heading += turn / steps
                x.append(x[-1] + abs(a * turn) / steps * math.cos(heading))
                y.append(y[-1] + abs(a * turn) / steps * math.sin(heading))
    px, py = np.array(x), np.array(y)
    s = np.concatenate(([0.0], np.cumsum(np.hypot(np.diff(px), np.diff(py)))))
    grid = np.linspace(0.0, s[-1], points)
    return np.column_stack((np.interp(grid, s, px), np.interp(grid, s, py)))


# A road course: hairpin (R 15), a fast right (R 120), a chicane (left then right,
# R 25), a long left (R 60) back to the line; the heading adds up to 360°.
ROAD = [
    ("S", 400, 0),
    ("A", 15, 180),
    ("S", 300, 0),
    ("A", 120, -90),
    ("S", 200, 0),
    ("A", 25, 60),
    ("S", 20, 0),
    ("A", 25, -60),
    ("S", 250, 0),
    ("A", 60, 270),
]


def test_a_road_course_has_its_five_corners_in_order() -> None:
    pts = course(ROAD)
    # The made-up course does not end where it started: spread the gap along it (as
    # the outline's loop closure does), which bends its straights a little.
    grid = np.linspace(0.0, 1.0, len(pts))
    gap = pts[-1] - pts[0]
    pts = pts - np.outer(grid, gap)
    found = co.find_corners(grid, pts[:, 0], pts[:, 1])
    dirs = [c.direction for c in found.corners]
    assert dirs == ["left", "right", "left", "right", "left"], found.corners
    radii = [c.radius_m for c in found.corners]
    assert radii[0] == min(radii)  # the hairpin is the tightest
    assert radii[1] > max(
        radii[2], radii[3]
    )  # the fast right opens wider than the chicane
    assert [c.number for c in found.corners] == [1, 2, 3, 4, 5]
    assert [c.label for c in found.corners][:2] == ["T1", "T2"]


def test_zones_cover_the_lap_and_the_approach_belongs_to_the_next_corner() -> None:
    pts = course([("S", 300, 0), ("A", 50, 180), ("S", 300, 0), ("A", 50, 180)])
    grid = np.linspace(0.0, 1.0, len(pts))
    found = co.find_corners(grid, pts[:, 0], pts[:, 1])
    assert len(found.corners) == 2
    first, second = found.corners
    assert found.corner_at(first.apex) is first
    assert found.corner_at((first.end + second.start) / 2) is None  # a straight
    # Just before the second corner's turn-in (braking) is its zone, just after the
    # first corner's exit is still the first's.
    assert found.zone_at(second.start - 0.02) is second
    assert found.zone_at(first.end + 0.02) is first
    every = {found.zone_id(p) for p in np.linspace(0, 1, 200)}
    assert every == {1, 2}


def test_a_straight_line_and_a_circle_have_no_corners_to_number() -> None:
    angle = np.linspace(0, 2 * math.pi, 513)
    circle = co.find_corners(
        np.linspace(0, 1, 513), 300 * np.cos(angle), 300 * np.sin(angle)
    )
    assert circle.corners == ()
    assert circle.zone_at(0.4) is None


def test_martinsville_from_live_channels_has_two_named_hairpins() -> None:
    path = real_file(
        "iracing", "ibt", "skmodified_martinsville_2015-05-30_20-32-44.ibt"
    )
    with IbtReader(path) as reader:
        frames = {
            n: reader.column(n).astype(np.float64) for n in (*to.CHANNELS, "OnPitRoad")
        }
    outline = to.outline_from_laps(to.lap_paths(frames))
    assert outline is not None
    assert outline.speed is not None
    names = co.corner_names(to.track_key({"TrackID": 33}))
    found = co.find_corners(outline.pct, outline.x, outline.y, outline.speed, names)
    assert [c.label for c in found.corners] == ["T1 Turns 1-2", "T2 Turns 3-4"]
    for corner in found.corners:
        assert corner.direction == "left"  # an oval, anticlockwise
        assert 30 < corner.radius_m < 60
        # The apex is the slowest point, well below the straights' speed.
        assert corner.min_speed is not None
        assert corner.min_speed < 0.75 * float(outline.speed.max())


def test_corners_of_a_cached_track_for_other_parts(tmp_path: Path) -> None:
    # A short oval whose turns' apexes are at 25 % and 75 % of the lap, as Langley's.
    parts = [
        ("S", 150, 0),
        ("A", 50, 180),
        ("S", 300, 0),
        ("A", 50, 180),
        ("S", 150, 0),
    ]
    pts = course(parts)
    grid = np.linspace(0.0, 1.0, len(pts))
    path = to.LapPath(grid, pts[:, 0], pts[:, 1], 0.0, 1.0)
    store = to.OutlineStore(tmp_path)
    store.refine("id201", {"s:1": path})
    corners = co.track_corners(store, "id201")
    assert [c.label for c in corners.corners] == ["T1 Turns 1-2", "T2 Turns 3-4"]
    assert corners.zone_id(corners.corners[1].apex) == 2
    assert co.track_corners(store, "id999").corners == ()


def test_the_cores_corner_cache_follows_the_file_and_survives_a_bad_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pts = course([("S", 300, 0), ("A", 50, 180), ("S", 300, 0), ("A", 50, 180)])
    grid = np.linspace(0.0, 1.0, len(pts))
    store = to.OutlineStore(tmp_path)
    cache = co.CornerCache(store)
    assert cache.get("id201") is None  # no outline yet: laps go by equal slices
    assert co.CornerCache(None).get("id201") is None
    store.refine("id201", {"s:1": to.LapPath(grid, pts[:, 0], pts[:, 1], 0.0, 1.0)})
    first = cache.get("id201")
    assert first is not None
    assert len(first.corners) == 2
    assert cache.get("id201") is first  # unchanged file: not found again
    # The dashboard refines the outline: the next lap gets the new map.
    store.refine("id201", {"s:2": to.LapPath(grid, pts[:, 0], pts[:, 1], 0.0, 1.0)})
    os.utime(store.path("id201"), ns=(1, 1))
    second = cache.get("id201")
    assert second is not None
    assert second is not first

    def broken(*_args: object) -> co.CornerMap:
        raise ValueError("a corrupt outline")

    monkeypatch.setattr(co, "track_corners", broken)
    os.utime(store.path("id201"), ns=(2, 2))
    assert cache.get("id201") is None  # logged; the lap goes on by equal slices


def test_unknown_tracks_have_no_names() -> None:
    assert co.corner_names("id999999") == ()
    assert co.corner_names(None) == ()
    assert co.corner_names("id201")[0] == (pytest.approx(0.27), "Turns 1-2")
