"""Live training mode on the real core: goals from stored sessions, progress and badges measured on every simulated lap.

Two earlier sessions of the same car and track (one per driver) are ingested into a
real SQLite file through the real ``Ingestor``; a third session starts, is marked as
training for Bea, and its remaining laps run through the core with the ``training``
detector. Everything below is measured, nothing is mocked.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from pydantic import BaseModel
from sqlalchemy import inspect

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from driver_pc.pipeline import ShimPipeline
from driver_pc.protocol.codec import Codec
from driver_pc.protocol.events import BadgeEarned, EventKind, TrainingGoalProgress
from driver_pc.protocol.messages import Message
from pitbox_appliance.cli.importer import local_codec
from pitbox_appliance.coaching.corner_metrics import corner_id
from pitbox_appliance.coaching.goals import REFERENCE_LAPS, TrainingGoalGenerator
from pitbox_appliance.coaching.live import BOARD, Notice
from pitbox_appliance.coaching.profile import MEASURES, DriverSettings
from pitbox_appliance.coaching.service import CoachingService
from pitbox_appliance.core.ingest import Ingestor
from pitbox_appliance.storage.database import open_database
from pitbox_appliance.storage.reader import SessionReader
from pitbox_appliance.storage.writer import SessionWriter

pytestmark = pytest.mark.timeout(900)

SOURCE = "car42-pc1"


@dataclass
class Run:
    coaching: CoachingService
    made: dict[str, object]
    events: list[tuple[EventKind, BaseModel]]
    notices: list[Notice]
    training_session: int


def _feed(ingestor: Ingestor, codec: Codec, messages: list[Message], seq0: int) -> int:
    for i, message in enumerate(messages):
        assert ingestor.handle(codec.encode(SOURCE, seq0 + i, message), SOURCE)
    ingestor.flush()
    return seq0 + len(messages)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    BOARD.reset()
    db = tmp_path_factory.mktemp("coaching") / "p.sqlite3"
    engine = open_database(f"sqlite:///{db}")
    codec = local_codec()
    ingestor = Ingestor(codec, SessionWriter(engine))
    seq = 1
    for driver, seed in (("Alex Sim", 3), ("Bea Sim", 4)):
        sim = RaceSimulatorAdapter(
            laps=10, speed=0, seed=seed, drivers=(driver,), session_key=f"s-{seed}"
        )
        seq = _feed(ingestor, codec, list(ShimPipeline(sim).messages()), seq)
    ingestor.end_of_streams()
    coaching = CoachingService(engine)
    # Bea's settings: every kind of notice reaches her shim.
    coaching.save_settings("Bea Sim", DriverSettings())
    live = list(
        ShimPipeline(
            RaceSimulatorAdapter(
                laps=12, speed=0, seed=5, drivers=("Bea Sim",), session_key="s-live"
            )
        ).messages()
    )
    seq = _feed(ingestor, codec, live[:40], seq)  # the session is open
    session = SessionReader(engine).session_by_key("s-live")
    assert session is not None
    made = coaching.mark_training(session.id, "Bea Sim")
    ingestor.publisher.take_events()
    _feed(ingestor, codec, live[40:], seq)
    ingestor.end_of_streams()
    ingestor.flush()
    events = [(e.kind, e.payload) for e in ingestor.publisher.take_events()]
    notices = coaching.pump()
    yield Run(coaching, made, events, notices, session.id)
    BOARD.reset()
    engine.dispose()


def test_migration_0007_creates_the_coaching_tables(run: Run) -> None:
    tables = set(inspect(run.coaching.engine).get_table_names())
    assert {
        "driver_profiles",
        "training_goals",
        "badges",
        "training_sessions",
        "skill_points",
    } <= tables


def test_goals_target_the_teammates_measured_numbers(run: Run) -> None:
    made = run.made
    reference = made["reference"]
    assert isinstance(reference, dict)
    assert reference["driver"] == "Alex Sim"  # the team's other driver at this track
    assert made["corners"], "corners come from the track outline"
    goals = made["goals"]
    assert isinstance(goals, list)
    assert goals, f"no goals: {made['comparison']}"
    # Targets: the medians over Alex's fastest laps, measured independently here.
    generator = TrainingGoalGenerator(run.coaching.engine)
    session = generator.reader.session(run.training_session)
    assert session is not None
    siblings = [s for s in generator.reader.sessions() if s.track == session.track]
    corners, length_m = generator.corners(session, siblings)
    alex = generator.measure(siblings, corners, length_m)["Alex Sim"]
    fastest = alex.fastest(REFERENCE_LAPS)
    for goal in goals:
        [corner] = goal["cornerIds"]
        number = int(corner.lstrip("T"))
        assert goal["measure"] == MEASURES[goal["metricType"]][0]
        if goal["measure"] == "corner_time_sd_s":
            times = [m[number].time_s for _r, m in fastest.laps if number in m]
            expected = statistics.stdev(times)
        else:
            values = [
                v
                for _r, m in fastest.laps
                if number in m and (v := m[number].value(goal["measure"])) is not None
            ]
            expected = statistics.median(values)
        assert goal["targetValue"] == pytest.approx(expected)
        assert goal["trackId"]
        assert corner == corner_id(number)
        assert goal["createdAt"] > 0
        assert goal["completedAt"] is None


def test_progress_goes_out_live_on_every_lap(run: Run) -> None:
    progress = [p for _k, p in run.events if isinstance(p, TrainingGoalProgress)]
    goals = run.made["goals"]
    assert isinstance(goals, list)
    ids = {g["id"] for g in goals}
    assert progress, "no training_goal_progress events"
    assert all(isinstance(p, TrainingGoalProgress) for p in progress)
    assert {p.goal_id for p in progress} <= ids
    per_goal = {i: [p for p in progress if p.goal_id == i] for i in ids}
    # One update per measured lap and goal: the rest of a 12-lap session gives several.
    assert all(len(v) >= 4 for v in per_goal.values()), {
        k: len(v) for k, v in per_goal.items()
    }
    # Stored as events of the training session too.
    stored = SessionReader(run.coaching.engine).events(
        run.training_session, "training_goal_progress"
    )
    assert len(stored) == len(progress)
    # And in the profile: current values and the laps measured.
    profile = run.coaching.profile("Bea Sim")
    by_id = {g.id: g for g in profile.training_goals}
    for goal_id, updates in per_goal.items():
        assert by_id[goal_id].laps_measured == len(updates)
        assert by_id[goal_id].progress == pytest.approx(updates[-1].progress, abs=1e-3)


def test_badges_are_earned_from_measured_laps_with_evidence(run: Run) -> None:
    earned = [p for k, p in run.events if k is EventKind.BADGE_EARNED]
    profile = run.coaching.profile("Bea Sim")
    assert len(profile.badges) == len(earned)
    assert earned, "a 12-lap clean practice earns at least one badge"
    for badge in profile.badges:
        assert isinstance(earned[0], BadgeEarned)
        ev = badge.evidence
        assert len(ev.laps) == len(ev.values) >= 2
        assert ev.session_id == run.training_session
        # The value is the rule's metric over exactly those lap values.
        if ev.metric == "lap_time_sd_s":
            assert ev.value == pytest.approx(statistics.stdev(ev.values), abs=1e-3)
    stored = SessionReader(run.coaching.engine).events(
        run.training_session, "badge_evidence"
    )
    assert len(stored) == len(earned)


def test_notices_for_the_shim_are_short(run: Run) -> None:
    assert run.notices
    limit = DriverSettings().message_max_chars
    assert all(n.car == "car42" and len(n.text) <= limit for n in run.notices)
    kinds = {n.alert.value for n in run.notices}
    assert "training_goal_progress" in kinds


def test_plan_and_fatigue_model_in_the_profile(run: Run) -> None:
    plan = run.coaching.plan_of("Bea Sim")
    assert plan is not None
    goals = run.made["goals"]
    assert isinstance(goals, list)
    assert [e["goalId"] for e in plan["exercises"]]
    assert {e["goalId"] for e in plan["exercises"]} <= {g["id"] for g in goals}
    assert plan["referenceLap"]["driver"] == "Alex Sim"
    assert 0 < plan["stopWhen"]["fatigueAbove"] <= 1
    fatigue = run.coaching.profile("Bea Sim").fatigue_model
    # Learned when the session was marked: Bea's stored stint of the earlier session.
    assert fatigue.stints >= 1
    assert "baseline from" in fatigue.basis
    assert fatigue.baseline is not None
    assert 0 < fatigue.baseline < 1
