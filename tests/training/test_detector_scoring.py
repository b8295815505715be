"""Detector scoring: independent of the simulator's internals, Wilson intervals, and iRacing's own counter in real files."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest

from pitbox_appliance.detectors.base import Emission
from tests.conftest import REAL_DATA, real_file
from training.detector_scoring import (
    SCORING_SEEDS,
    TUNING_SEEDS,
    Counts,
    RaceScore,
    _score_incidents,
    score_real_file,
    survey_session_updates,
    wilson,
)
from training.offline_detectors import OfflineRun

ROOT = Path(__file__).resolve().parents[2]
DETECTORS = ROOT / "pitbox_appliance" / "detectors"
SIMULATOR_MODULES = ("driver_pc.adapters", "training")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _module_path(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def test_detectors_import_nothing_of_the_simulator() -> None:
    """Nothing the detectors import, directly or through other appliance modules, is the simulator."""
    todo = [p for p in DETECTORS.glob("*.py")]
    seen: set[Path] = set()
    reached: set[str] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        text = path.read_text()
        assert "race_sim" not in text, f"{path} names the simulator"
        for module in _imports(path):
            reached.add(module)
            if module.startswith(("pitbox_appliance", "driver_pc")):
                target = _module_path(module)
                if target is not None:
                    todo.append(target)
    leaks = sorted(m for m in reached if m.startswith(SIMULATOR_MODULES))
    assert leaks == [], f"the detectors reach the simulator or the scorer: {leaks}"
    assert len(seen) > len(list(DETECTORS.glob("*.py")))  # the walk went somewhere


def test_simulator_reads_nothing_of_the_detectors() -> None:
    sim = ROOT / "driver_pc" / "adapters" / "race_sim"
    for path in sim.glob("*.py"):
        for module in _imports(path):
            assert not module.startswith("pitbox_appliance"), f"{path}: {module}"


def test_scoring_and_tuning_seeds_are_apart() -> None:
    assert not set(SCORING_SEEDS) & set(TUNING_SEEDS)


def test_wilson_interval() -> None:
    lo, hi = wilson(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4)
    assert hi == pytest.approx(0.7634, abs=1e-4)
    lo, hi = wilson(0, 5)
    assert lo == 0.0
    assert hi == pytest.approx(0.4345, abs=1e-4)
    assert wilson(10, 10)[1] == 1.0
    assert wilson(10, 10)[0] < 1.0
    assert all(math.isnan(x) for x in wilson(0, 0))
    c = Counts(hits=3, found=4, reference=6, reference_hits=3)
    assert c.precision_ci == wilson(3, 4)
    assert c.recall_ci == wilson(3, 6)


class _Stage:
    def __init__(self, t: float, kind: str, points: int, counted: int, seq: int):
        self.session_time = t
        self.data = {
            "type": kind,
            "points": points,
            "counted": counted,
            "sequence": seq,
        }


def _found(*times_kinds: tuple[float, str, int]) -> OfflineRun:
    run = OfflineRun()
    for t, kind, points in times_kinds:
        payload = {"incident": kind, "points": points}
        run.emissions.append(Emission("incident_detected", t, payload))
    return run


def test_incident_scoring_counts_against_the_counter_and_can_fail() -> None:
    truth = [
        _Stage(100.0, "off_track", 1, 1, 1),
        _Stage(100.8, "spin", 2, 1, 1),  # escalation: the sequence is a 2x spin
        _Stage(300.0, "save", 0, 0, 2),  # a save: iRacing counts nothing
        _Stage(500.0, "contact", 4, 4, 3),
    ]
    perfect = RaceScore("x", 10, 600.0)
    _score_incidents(perfect, _found((100.5, "spin", 2), (500.2, "contact", 4)), truth)  # type: ignore[arg-type]
    assert perfect.incidents.precision == 1.0
    assert perfect.incidents.recall == 1.0
    assert perfect.incident_type_right == 2
    assert perfect.incident_points_right == 2
    assert perfect.uncounted == 1
    poor = RaceScore("y", 10, 600.0)
    # One found late (> 3 s), one on the save (a false alarm against the counter),
    # one named wrongly.
    _score_incidents(
        poor,
        _found((104.0, "spin", 2), (300.5, "spin", None), (500.1, "spin", 4)),  # type: ignore[arg-type]
        truth,  # type: ignore[arg-type]
    )
    assert poor.incidents.found == 3
    assert poor.incidents.hits == 1
    assert poor.incidents.reference == 2
    assert poor.incidents.reference_hits == 1
    assert poor.uncounted_found == 1
    assert poor.incident_type_right == 0
    assert poor.by_type["spin"].recall == 0.0
    assert poor.by_type["contact"].recall == 1.0


def test_real_file_with_a_still_counter_has_no_events() -> None:
    path = real_file("iracing", "ibt", "teamjorge_valid_test_file.ibt")
    score = score_real_file(path)
    assert score.counter == "PlayerCarTeamIncidentCount"
    assert score.counter_range == (12, 12)
    assert score.events == 0
    assert score.full.found == 0
    assert math.isnan(score.full.recall)


def test_real_file_without_counter_is_not_scored() -> None:
    path = real_file(
        "iracing", "ibt", "skmodified_martinsville_2015-05-30_20-32-44.ibt"
    )
    score = score_real_file(path)
    assert score.counter is None
    assert score.full.reference == 0
    # The wall hit and spin at 4148.8 s is found from motion alone.
    assert any(abs(d["t"] - 4148.8) < 1.0 for d in score.detections)


def test_corrupt_real_file_is_reported_not_raised() -> None:
    path = real_file("iracing", "ibt", "teamjorge_invalid_test_file.ibt")
    assert score_real_file(path).note.startswith("unreadable")


def test_f4_session_updates_hold_no_timed_race_incidents() -> None:
    folder = REAL_DATA / "iracing" / "session_yaml" / "vrkit_f4_tsukuba_race"
    if not folder.is_dir():
        pytest.skip(f"real recorded data not present: {folder}")
    survey = survey_session_updates(folder)
    assert survey.updates == 316
    race = survey.sessions["2 Race"]
    assert race["cars"] == 22
    assert race["laps"] == 23
    assert race["points"] == 0
    assert race["increments"] == 0
    qualifying = survey.sessions["1 Lone Qualify"]
    assert qualifying["points"] == 23
